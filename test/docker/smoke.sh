#!/usr/bin/env bash
# Smoke test of the Docker image, run by hand (not by npm test):
#
#   test/docker/smoke.sh                      # builds understudy:smoke with Chromium and checks it
#   WITH_CHROMIUM=0 test/docker/smoke.sh      # the small image: the browser job must fail clearly
#   SMOKE_IMAGE=understudy:dev SMOKE_BUILD=0 test/docker/smoke.sh   # check an image built already
#   BUILD_CA_CERT_FILE=proxy-ca.crt test/docker/smoke.sh   # build behind a TLS-intercepting proxy
#
# Needs docker, curl and node on the host. What it does, one line per step
# (`ok - step` or `not ok - step: why`), stopping at the first failure with a
# non-zero exit:
#   - builds the image from the repository root (unless SMOKE_BUILD=0); from a
#     clone (.git a directory) without the UNDERSTUDY_COMMIT build arg, and
#     `understudy version` must name HEAD's commit either way;
#   - makes a master key with `understudy keygen` in a throwaway container;
#   - starts the image (docker run -d) with the key in UNDERSTUDY_MASTER_KEY, a
#     fresh named volume on /data, examples/workflows and
#     test/docker/workflows mounted read-only on /workflows,
#     test/docker/pages on /smoke-pages, and 8787 published on a random
#     127.0.0.1 port; the image's HEALTHCHECK runs every 2 s here;
#   - checks it runs as a non-root user and turns healthy;
#   - creates a tenant and an API key with `docker exec`;
#   - stores username and password over HTTP and reads the password back;
#   - signs in to the dashboard (/ui/) with the API key: the credentials page
#     lists the name, not the value, under a strict Content-Security-Policy;
#   - runs the hello workflow (no browser), then examples/workflows/login.ts
#     (portal-login) in the container's Chromium against file:///smoke-pages/login.html:
#     it fills in the stored credentials and submits; welcome.html puts the
#     username in the title, so the result must be
#     {"loggedIn":true,"title":"Welcome [REDACTED:username]"} (the value
#     reached the page, and the redactor kept it out of the result). Without
#     Chromium (WITH_CHROMIUM=0) the job must fail saying no Chromium was found;
#   - restarts the container and reads the password again;
#   - starts ignores-signal, a job whose handler ignores its stop signal, and
#     stops the container with docker stop (SIGTERM, default 10 s): it must
#     exit 0 (or 143), not 137, in under 10 s (the time is printed);
#   - starts a second container on the same volume with the key as a mounted
#     file (UNDERSTUDY_MASTER_KEY_FILE=/run/secrets/understudy_master_key, as
#     Docker secrets do), reads the password again, finds the ignores-signal
#     job failed as interrupted ("shut down"), and stops it the same way;
#   - runs the image with --read-only --tmpfs /tmp: the browser job (or, without
#     Chromium, hello) completes; with --read-only alone it must stop at start
#     saying to add --tmpfs /tmp;
#   - runs it with a bind mount on /data that uid 10001 cannot write: it must
#     stop at start naming uid 10001 and the chown that fixes it.
# Containers, the volume and temporary files it made are removed on exit.
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WITH_CHROMIUM=${WITH_CHROMIUM:-1}
IMAGE=${SMOKE_IMAGE:-understudy:smoke}
BUILD=${SMOKE_BUILD:-1}
RUN_ID="understudy-smoke-$$"
VOLUME="$RUN_ID-data"
WORK=$(mktemp -d)
CONTAINERS=()

cleanup() {
  for c in "${CONTAINERS[@]}"; do docker rm -f "$c" >/dev/null 2>&1; done
  docker volume rm -f "$VOLUME" >/dev/null 2>&1
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ok() { echo "ok - $1"; }
fail() {
  echo "not ok - $1: $2"
  if [ -n "${3:-}" ]; then docker logs --tail 30 "$3" 2>&1 | sed 's/^/# /'; fi
  exit 1
}

# json FILE-OR-TEXT EXPR: evaluates a JS expression over the parsed JSON `j`.
json() { node -e 'const j = JSON.parse(process.argv[1]); const v = (0, eval)("(j) => " + process.argv[2])(j); process.stdout.write(typeof v === "string" ? v : JSON.stringify(v ?? null));' "$1" "$2" 2>/dev/null; }

port_of() { docker port "$1" 8787/tcp 2>/dev/null | grep -m1 '^127\.0\.0\.1:' | cut -d: -f2; }

# api CONTAINER PATH BODY: POST /v1/PATH with the API key; prints the body.
api() {
  curl -sS --max-time 10 "http://127.0.0.1:$(port_of "$1")/v1/$2" \
    -H "x-api-key: $API_KEY" -H 'content-type: application/json' -d "$3"
}

wait_healthy() {
  local status=""
  for _ in $(seq 1 60); do
    status=$(docker inspect -f '{{.State.Health.Status}}' "$1" 2>/dev/null)
    [ "$status" = healthy ] && return 0
    [ "$(docker inspect -f '{{.State.Running}}' "$1" 2>/dev/null)" = true ] || { echo "exited"; return 1; }
    sleep 1
  done
  echo "health status is '$status' after 60 s"
  return 1
}

# stop_gracefully CONTAINER STEP: docker stop (its default 10 s) must end it
# with exit code 0 (143: killed by the SIGTERM itself) before Docker's kill
# (137). Prints how long it took.
stop_gracefully() {
  local started elapsed_ms code
  started=$(date +%s%N)
  docker stop "$1" >/dev/null || fail "$2" "docker stop failed" "$1"
  elapsed_ms=$(( ($(date +%s%N) - started) / 1000000 ))
  code=$(docker inspect -f '{{.State.ExitCode}}' "$1")
  [ "$code" = 0 ] || [ "$code" = 143 ] || fail "$2" "exit code $code after ${elapsed_ms} ms (137 means Docker killed it)" "$1"
  [ "$elapsed_ms" -lt 10000 ] || fail "$2" "took ${elapsed_ms} ms" "$1"
  docker logs "$1" 2>&1 | grep -q 'received SIGTERM' || fail "$2" "no 'received SIGTERM' in the log" "$1"
  ok "$2 (exit code $code in $(awk -v ms="$elapsed_ms" 'BEGIN { printf "%.1f", ms / 1000 }') s)"
}

# wait_exit CONTAINER: waits (bounded) until it has stopped; prints its exit code.
wait_exit() {
  for _ in $(seq 1 60); do
    [ "$(docker inspect -f '{{.State.Running}}' "$1" 2>/dev/null)" = false ] && { docker inspect -f '{{.State.ExitCode}}' "$1"; return 0; }
    sleep 1
  done
  echo "still running after 60 s"
  return 1
}

# wait_job CONTAINER JOB_ID: prints the final job JSON.
wait_job() {
  local job status
  for _ in $(seq 1 90); do
    job=$(api "$1" jobs/get "{\"id\":\"$2\"}")
    status=$(json "$job" 'j.status')
    case "$status" in completed | failed | cancelled | timed_out) echo "$job"; return 0 ;; esac
    sleep 1
  done
  echo "$job"
  return 1
}

command -v docker >/dev/null || fail "prerequisites" "docker is not on PATH"
command -v curl >/dev/null || fail "prerequisites" "curl is not on PATH"
command -v node >/dev/null || fail "prerequisites" "node is not on PATH"
docker info >/dev/null 2>&1 || fail "prerequisites" "no Docker daemon answers"

if [ "$BUILD" = 1 ]; then
  build_args=(--build-arg "WITH_CHROMIUM=$WITH_CHROMIUM")
  # A clone's .git gives the build the commit (.dockerignore lets HEAD and refs
  # in); a worktree's .git is a file pointing elsewhere, so pass it there.
  [ -d "$ROOT/.git" ] || build_args+=(--build-arg "UNDERSTUDY_COMMIT=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)")
  if [ -n "${BUILD_CA_CERT_FILE:-}" ]; then build_args+=(--build-arg "BUILD_CA_CERT=$(cat "$BUILD_CA_CERT_FILE")"); fi
  if docker build -t "$IMAGE" "${build_args[@]}" "$ROOT" >"$WORK/build.log" 2>&1; then
    ok "docker build -t $IMAGE --build-arg WITH_CHROMIUM=$WITH_CHROMIUM ($(docker image inspect -f '{{.Size}}' "$IMAGE" | awk '{printf "%.0f MB", $1/1000000}'), $(docker run --rm "$IMAGE" version))"
  else
    tail -n 30 "$WORK/build.log" | sed 's/^/# /'
    fail "docker build" "see the lines above"
  fi
fi

stamped=$(docker run --rm "$IMAGE" version | sed -n 's/.*(\(.*\))$/\1/p')
head=$(git -C "$ROOT" rev-parse HEAD 2>/dev/null || true)
if [ "$BUILD" = 1 ] && [ -n "$head" ]; then
  [[ -n "$stamped" && "$head" == "$stamped"* ]] || fail "understudy version names the commit" "got '$stamped', HEAD is $head"
  ok "understudy version names the commit ($stamped)"
fi

# The workflows directory an operator would mount: the examples and the smoke test's own.
chmod 0755 "$WORK"
mkdir -p "$WORK/workflows"
cp "$ROOT"/examples/workflows/*.ts "$ROOT"/test/docker/workflows/*.ts "$WORK/workflows/"
chmod -R a+rX "$WORK/workflows"

MASTER_KEY=$(docker run --rm "$IMAGE" keygen 2>/dev/null)
[ -n "$MASTER_KEY" ] || fail "keygen" "understudy keygen printed nothing"
ok "keygen in a throwaway container"

docker volume create "$VOLUME" >/dev/null || fail "volume" "docker volume create failed"
C1="$RUN_ID-1"
CONTAINERS+=("$C1")
# The app container: the key, the volume, the workflows and pages, a random
# 127.0.0.1 port, a 2 s healthcheck; extra docker run options first.
run_app() {
  local name=$1
  shift
  docker run -d --name "$name" "$@" \
    -e "UNDERSTUDY_MASTER_KEY=$MASTER_KEY" \
    -v "$VOLUME:/data" \
    -v "$WORK/workflows:/workflows:ro" \
    -v "$ROOT/test/docker/pages:/smoke-pages:ro" \
    -p 127.0.0.1::8787 \
    --health-interval 2s --health-start-period 30s \
    "$IMAGE" >/dev/null
}
run_app "$C1" || fail "docker run" "could not start the container"
why=$(wait_healthy "$C1") || fail "container turns healthy (HEALTHCHECK: understudy healthcheck)" "$why" "$C1"
ok "container turns healthy (HEALTHCHECK: understudy healthcheck)"

uid=$(docker exec "$C1" id -u)
[ -n "$uid" ] && [ "$uid" != 0 ] || fail "runs as a non-root user" "id -u is '$uid'"
[ "$(docker exec "$C1" cat /proc/1/comm)" = tini ] || fail "tini is PID 1" "PID 1 is $(docker exec "$C1" cat /proc/1/comm)"
ok "runs as uid $uid (non-root), tini as PID 1"

health=$(curl -sS --max-time 5 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$(port_of "$C1")/healthz")
[ "$health" = 200 ] || fail "GET /healthz on the published 127.0.0.1 port" "status $health"
ok "GET /healthz on the published port 127.0.0.1:$(port_of "$C1")"

docker exec "$C1" understudy tenants create smoke >/dev/null 2>"$WORK/err" || fail "docker exec understudy tenants create" "$(cat "$WORK/err")"
API_KEY=$(docker exec "$C1" understudy keys create --tenant smoke 2>"$WORK/err")
[[ "$API_KEY" == usk_* ]] || fail "docker exec understudy keys create" "got '$API_KEY': $(cat "$WORK/err")"
ok "tenant and API key made with docker exec"

PASSWORD="pw-$RANDOM-$RANDOM-$RANDOM"
for pair in "username:smoke-user" "password:$PASSWORD"; do
  out=$(api "$C1" credentials/upsert "{\"name\":\"${pair%%:*}\",\"value\":\"${pair#*:}\"}")
  [ "$(json "$out" 'j.success')" = true ] || fail "credentials/upsert" "$out" "$C1"
done
out=$(api "$C1" credentials/get '{"name":"password"}')
[ "$(json "$out" 'j.value')" = "$PASSWORD" ] || fail "credentials/get returns the stored value" "$out" "$C1"
ok "credentials stored and read back over HTTP"

# The dashboard: signed in with the API key, it lists the credential's name (never its value) under its CSP.
BASE="http://127.0.0.1:$(port_of "$C1")"
cookie=$(curl -sS --max-time 5 -D - -o /dev/null --data-urlencode "api_key=$API_KEY" "$BASE/ui/sign-in" | tr -d '\r' | sed -n 's/^set-cookie: \(understudy_session=[^;]*\).*/\1/ip')
[ -n "$cookie" ] || fail "dashboard sign-in" "no session cookie" "$C1"
curl -sS --max-time 5 -D "$WORK/ui-headers" -H "cookie: $cookie" "$BASE/ui/credentials" >"$WORK/ui-page" || fail "dashboard credentials page" "curl failed" "$C1"
grep -q 'data-credential="password"' "$WORK/ui-page" || fail "dashboard credentials page" "the credential is not listed" "$C1"
! grep -q "$PASSWORD" "$WORK/ui-page" || fail "dashboard credentials page" "the value is on the page" "$C1"
grep -qi "^content-security-policy: default-src 'none'; script-src 'self'" "$WORK/ui-headers" || fail "dashboard credentials page" "no strict CSP" "$C1"
ok "dashboard: signed in with the API key, the credentials page lists the name, not the value, under a strict CSP"

out=$(api "$C1" workflows/list '{}')
ready=$(json "$out" 'j.deployed_workflows.filter((w) => w.deployment_status === "ready").map((w) => w.name).sort().join(",")')
[[ ",$ready," == *,hello,* && ",$ready," == *,portal-login,* && ",$ready," == *,ignores-signal,* ]] || fail "workflows loaded from /workflows" "$out" "$C1"
ok "workflows loaded from the mounted /workflows ($ready)"

out=$(api "$C1" jobs/create '{"workflow":"hello","params":{"name":"docker"}}')
job=$(wait_job "$C1" "$(json "$out" 'j.job_id')") || fail "hello job" "did not end: $job" "$C1"
[ "$(json "$job" 'j.result && j.result.greeting')" = "Hello, docker!" ] || fail "hello job" "$job" "$C1"
ok "hello job completed: $(json "$job" 'j.result')"

out=$(api "$C1" jobs/create '{"workflow":"portal-login","params":{"loginUrl":"file:///smoke-pages/login.html"}}')
job=$(wait_job "$C1" "$(json "$out" 'j.job_id')") || fail "browser job" "did not end: $job" "$C1"
if [ "$WITH_CHROMIUM" = 1 ]; then
  result=$(json "$job" 'j.result')
  [ "$result" = '{"loggedIn":true,"title":"Welcome [REDACTED:username]"}' ] || fail "portal-login in the container's Chromium" "$(json "$job" '({status: j.status, result: j.result, error: j.error})')" "$C1"
  ok "portal-login ran in the container's Chromium: $result"
else
  error=$(json "$job" 'j.error')
  [ "$(json "$job" 'j.status')" = failed ] && [[ "$error" == *"No Chromium found"* ]] || fail "portal-login without Chromium fails clearly" "$job" "$C1"
  ok "portal-login without Chromium failed clearly: ${error%%.*}."
fi

docker restart -t 10 "$C1" >/dev/null || fail "docker restart" "failed" "$C1"
why=$(wait_healthy "$C1") || fail "healthy again after docker restart" "$why" "$C1"
out=$(api "$C1" credentials/get '{"name":"password"}')
[ "$(json "$out" 'j.value')" = "$PASSWORD" ] || fail "value survives a restart" "$out" "$C1"
ok "after docker restart the value reads back"

out=$(api "$C1" jobs/create '{"workflow":"ignores-signal"}')
STUCK_JOB=$(json "$out" 'j.job_id')
[ -n "$STUCK_JOB" ] || fail "ignores-signal job" "$out" "$C1"
for _ in $(seq 1 30); do
  lines=$(api "$C1" logs/list "{\"jobId\":\"$STUCK_JOB\"}")
  [[ "$lines" == *"ignoring the stop signal"* ]] && break
  sleep 1
done
[[ "$lines" == *"ignoring the stop signal"* ]] || fail "ignores-signal job runs" "$lines" "$C1"
ok "a job whose handler ignores its stop signal is running"

stop_gracefully "$C1" "docker stop with that job running is graceful"

# The key as a file, as `docker secret` / compose secrets mount it. The file
# must be readable by the container's user (uid 10001).
mkdir -p "$WORK/secrets"
printf '%s\n' "$MASTER_KEY" >"$WORK/secrets/understudy_master_key"
chmod 0755 "$WORK" "$WORK/secrets"
chmod 0444 "$WORK/secrets/understudy_master_key"
C2="$RUN_ID-2"
CONTAINERS+=("$C2")
docker run -d --name "$C2" \
  -e UNDERSTUDY_MASTER_KEY_FILE=/run/secrets/understudy_master_key \
  -v "$WORK/secrets/understudy_master_key:/run/secrets/understudy_master_key:ro" \
  -v "$VOLUME:/data" \
  -p 127.0.0.1::8787 \
  --health-interval 2s --health-start-period 30s \
  "$IMAGE" >/dev/null || fail "docker run with UNDERSTUDY_MASTER_KEY_FILE" "could not start the container"
why=$(wait_healthy "$C2") || fail "healthy with the key from UNDERSTUDY_MASTER_KEY_FILE" "$why" "$C2"
out=$(api "$C2" credentials/get '{"name":"password"}')
[ "$(json "$out" 'j.value')" = "$PASSWORD" ] || fail "value reads back with the key from a file" "$out" "$C2"
ok "a new container on the same volume, key from UNDERSTUDY_MASTER_KEY_FILE, reads the value"

job=$(wait_job "$C2" "$STUCK_JOB") || fail "the ignores-signal job ended" "$job" "$C2"
[ "$(json "$job" 'j.status')" = failed ] && [ "$(json "$job" 'j.failure_class')" = interrupted ] && [[ "$(json "$job" 'j.error')" == *"shut down"* ]] \
  || fail "the ignores-signal job ended failed, interrupted" "$(json "$job" '({status: j.status, failure_class: j.failure_class, error: j.error})')" "$C2"
ok "the ignores-signal job ended failed (interrupted): $(json "$job" 'j.error')"

stop_gracefully "$C2" "docker stop of the second container is graceful"

# A read-only root filesystem: /data is the volume, /tmp a tmpfs.
C3="$RUN_ID-3"
CONTAINERS+=("$C3")
run_app "$C3" --read-only --tmpfs /tmp || fail "docker run --read-only --tmpfs /tmp" "could not start the container"
why=$(wait_healthy "$C3") || fail "healthy with --read-only --tmpfs /tmp" "$why" "$C3"
if [ "$WITH_CHROMIUM" = 1 ]; then
  out=$(api "$C3" jobs/create '{"workflow":"portal-login","params":{"loginUrl":"file:///smoke-pages/login.html"}}')
  job=$(wait_job "$C3" "$(json "$out" 'j.job_id')") || fail "browser job with --read-only" "did not end: $job" "$C3"
  [ "$(json "$job" 'j.status')" = completed ] || fail "browser job with --read-only --tmpfs /tmp" "$(json "$job" '({status: j.status, error: j.error})')" "$C3"
  ok "--read-only --tmpfs /tmp: the browser job completed: $(json "$job" 'j.result')"
else
  out=$(api "$C3" jobs/create '{"workflow":"hello","params":{"name":"read-only"}}')
  job=$(wait_job "$C3" "$(json "$out" 'j.job_id')") || fail "hello job with --read-only" "did not end: $job" "$C3"
  [ "$(json "$job" 'j.status')" = completed ] || fail "hello job with --read-only --tmpfs /tmp" "$job" "$C3"
  ok "--read-only --tmpfs /tmp: the hello job completed"
fi
stop_gracefully "$C3" "docker stop of the read-only container is graceful"

C4="$RUN_ID-4"
CONTAINERS+=("$C4")
docker run -d --name "$C4" --read-only -e "UNDERSTUDY_MASTER_KEY=$MASTER_KEY" -v "$VOLUME:/data" "$IMAGE" >/dev/null \
  || fail "docker run --read-only (no tmpfs)" "could not create the container"
code=$(wait_exit "$C4") || fail "--read-only without a tmpfs stops at start" "$code" "$C4"
[ "$code" = 1 ] && docker logs "$C4" 2>&1 | grep -q -- '--tmpfs /tmp' || fail "--read-only without a tmpfs stops at start saying --tmpfs /tmp" "exit code $code" "$C4"
ok "--read-only without a tmpfs stops at start: $(docker logs "$C4" 2>&1 | grep -m1 -o 'The temporary directory [^:]*')"

# A bind mount on /data that uid 10001 cannot write (here: root's, 0755).
mkdir -p "$WORK/rootdata"
chmod 0755 "$WORK/rootdata"
C5="$RUN_ID-5"
CONTAINERS+=("$C5")
docker run -d --name "$C5" -e "UNDERSTUDY_MASTER_KEY=$MASTER_KEY" -v "$WORK/rootdata:/data" "$IMAGE" >/dev/null \
  || fail "docker run with a root-owned /data" "could not create the container"
code=$(wait_exit "$C5") || fail "a root-owned /data stops at start" "$code" "$C5"
[ "$code" = 1 ] && docker logs "$C5" 2>&1 | grep -q 'uid 10001' && docker logs "$C5" 2>&1 | grep -q 'chown -R 10001:10001' \
  || fail "a root-owned /data stops at start naming uid 10001 and the chown" "exit code $code" "$C5"
ok "a /data bind mount uid 10001 cannot write stops at start: $(docker logs "$C5" 2>&1 | grep -m1 -o 'is not writable by this process (uid [0-9]*)')"

echo "# all steps passed ($IMAGE, WITH_CHROMIUM=$WITH_CHROMIUM)"
