#!/usr/bin/env bash
# Air-gapped development, checked with the network cut. Run by hand, as root
# (it needs `unshare -n`), from anywhere:
#
#   test/airgap/offline.sh                       # uses dist/release/understudy-linux-x64
#   UNDERSTUDY_BIN=dist/understudy test/airgap/offline.sh
#
# It re-executes itself in a new network namespace that has only loopback,
# then, for the compiled binary and for `bun src/main.ts`:
#   - `run examples/workflows/hello.ts --params '{"name":"offline"}'`
#   - `run` of a workflow that imports a package that is not there (Bun must
#     not try to auto-install it from a registry)
#   - `dev`: start, /healthz, a credentials upsert/get over 127.0.0.1, the
#     dashboard signed in by the banner's one-time link, SIGTERM
#   - `run` of a workflow that drives Chromium (ctx.page) on a data: URL
# every one under `strace -f -e trace=connect`, and reports any connect() to
# an address that is not loopback (there must be none).
# Prints one ok / not ok line per check; exits 1 if any failed.
# Needs: unshare, ip (iproute2), strace, curl; chromium for the browser check
# (skipped, not failed, when there is none: set UNDERSTUDY_CHROMIUM_PATH).
set -u

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

if [ "${UNDERSTUDY_OFFLINE_INNER:-}" != 1 ]; then
  if [ "$(id -u)" != 0 ]; then echo "not ok - needs root for unshare -n"; exit 1; fi
  for tool in unshare ip strace curl; do
    command -v "$tool" >/dev/null || { echo "not ok - $tool is missing (apt-get install util-linux iproute2 strace curl)"; exit 1; }
  done
  exec unshare -n env UNDERSTUDY_OFFLINE_INNER=1 "$0" "$@"
fi

ip link set lo up

BIN="${UNDERSTUDY_BIN:-$ROOT/dist/release/understudy-linux-x64}"
case "$BIN" in /*) ;; *) BIN="$ROOT/$BIN" ;; esac
BUN="$ROOT/node_modules/.bin/bun" # not npx: npx itself may go to the registry
WORK="$(mktemp -d /tmp/understudy-offline-XXXXXX)"
[ -n "${UNDERSTUDY_OFFLINE_KEEP:-}" ] && echo "# keeping $WORK" || trap 'rm -rf "$WORK"' EXIT
FAILED=0
N=0

ok() { N=$((N + 1)); echo "ok $N - $*"; }
notok() { N=$((N + 1)); FAILED=1; echo "not ok $N - $*"; }
check() { local what="$1"; shift; if "$@"; then ok "$what"; else notok "$what"; fi; }

# connect() calls in an strace log (strace -f -e trace=connect,execve,clone,
# clone3,fork,vfork) to anything but loopback, each prefixed with the program
# that made it: the thread's own execve, else its nearest ancestor's. AF_UNIX
# and netlink are local; 127.0.0.0/8, ::1 and ::ffff:127.* are loopback.
outbound() {
  awk '
    function prog_of(t) { while (!(t in prog) && (t in parent)) t = parent[t]; return (t in prog) ? prog[t] : "?" }
    / execve\("/ && !/= -1 / { p = $0; sub(/.*execve\("/, "", p); sub(/".*/, "", p); if (p == "/proc/self/exe") p = prog_of($1) " (/proc/self/exe)"; prog[$1] = p }
    /(clone3?|v?fork)(\(| resumed>)/ && / = [0-9]+$/ { parent[$NF] = $1 }
    /connect\(/ && /AF_INET/ && !/inet_addr\("127\./ && !/inet_pton\(AF_INET6, "(::1|::ffff:127\.)/ {
      port = $0; sub(/.*htons\(/, "", port); sub(/\).*/, "", port)
      addr = $0; if (addr ~ /inet_addr\("/) sub(/.*inet_addr\("/, "", addr); else sub(/.*inet_pton\(AF_INET6, "/, "", addr); sub(/".*/, "", addr)
      result = $0; if (result ~ / = /) sub(/.* = /, "", result); else result = "(unfinished)"
      print prog_of($1) ": connect to " addr " port " port " -> " result
    }' "$1"
}
TRACE=(strace -f -qq -e trace=connect,execve,clone,clone3,fork,vfork)
# Chromium's one known attempt: its network service connect()s a UDP socket to
# 2001:4860:4860::8888 port 443 to learn whether IPv6 is routed here (the
# IPv6 reachability probe of its host resolver). A UDP connect() sends no
# packet, and no switch turns it off. README "Air-gapped use".
IPV6_PROBE='connect to 2001:4860:4860::8888 port 443 '
# Understudy itself (bun, the binary) must make no outbound connect(), and
# Chromium none but the IPv6 probe: its update checks, DNS prefetch and
# other lookups of its own are turned off (src/browser/browser.ts LAUNCH_ARGS).
no_outbound() {
  local found own browser probe
  found="$(outbound "$1")"
  own="$(echo "$found" | grep -v '^$' | grep -vE '^[^:]*(chromium|chrome)[^:]*:' || true)"
  browser="$(echo "$found" | grep -E '^[^:]*(chromium|chrome)[^:]*:' | grep -vF "$IPV6_PROBE" || true)"
  probe="$(echo "$found" | grep -E '^[^:]*(chromium|chrome)[^:]*:' | grep -cF "$IPV6_PROBE" || true)"
  if [ -z "$own" ]; then
    ok "$2: Understudy made no connect() to a non-loopback address ($(grep -c 'connect(' "$1") connect() calls in all, all local or Chromium's)"
  else
    notok "$2: Understudy's process made connect() calls to non-loopback addresses:"
    echo "$own" | sort | uniq -c | sed 's/^/#   /' | head -20
  fi
  if grep -qE 'execve\("[^"]*(chromium|chrome)' "$1"; then
    if [ -z "$browser" ]; then
      ok "$2: Chromium made no non-loopback connect() but the IPv6 probe ($probe, a UDP connect that sends nothing)"
    else
      notok "$2: Chromium attempted $(echo "$browser" | wc -l) non-loopback connect() calls besides the IPv6 probe (src/browser/browser.ts LAUNCH_ARGS):"
      echo "$browser" | sort | uniq -c | sed 's/^/#   /'
    fi
  fi
}

# --- the namespace really is offline --------------------------------------
if [ -z "$(ip -o link show | grep -v ': lo:')" ]; then ok "network namespace has only loopback"; else notok "network namespace has interfaces besides lo"; fi
if curl -s -m 5 -o /dev/null https://registry.npmjs.org/ 2>/dev/null; then notok "registry.npmjs.org is reachable (not offline)"; else ok "registry.npmjs.org is unreachable"; fi

if [ ! -x "$BIN" ]; then notok "no executable at $BIN (npm run build:release, or set UNDERSTUDY_BIN)"; exit 1; fi
ok "binary: $("$BIN" version)"

# --- fixtures ---------------------------------------------------------------
mkdir -p "$WORK/wf"
cat >"$WORK/wf/missing.ts" <<'EOF'
import { workflow } from "libretto";
import leftPad from "left-pad-understudy-offline-check";
export default workflow("missing", { async handler() { return leftPad("x", 3); } });
EOF
cat >"$WORK/wf/page.ts" <<'EOF'
import { workflow } from "libretto";
export default workflow("offline-page", {
  startUrl: "data:text/html,<title>offline page</title><h1 id=h>no network needed</h1>",
  async handler(ctx) {
    ctx.log.info("reading the page");
    return { title: await ctx.page.title(), h1: await ctx.page.textContent("#h") };
  },
});
EOF

free_port() { "$BUN" -e 'const s = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response() }); console.log(s.port); s.stop(true)'; }

for mode in binary source; do
  if [ "$mode" = binary ]; then
    # Alone in an empty directory: nothing to lean on but the binary.
    DIR="$WORK/binary"; mkdir -p "$DIR"; cp "$BIN" "$DIR/understudy"; CMD=("$DIR/understudy")
  else
    # As `npm start` runs it (bun --no-install); UNDERSTUDY_BUN_FLAGS overrides the flags.
    DIR="$WORK/source"; mkdir -p "$DIR"; CMD=("$BUN" ${UNDERSTUDY_BUN_FLAGS:---no-install} "$ROOT/src/main.ts")
  fi
  ENVV=(env -i PATH="$PATH" HOME="$DIR")

  # run hello.ts
  out="$(cd "$DIR" && "${ENVV[@]}" "${TRACE[@]}" -o "$WORK/$mode-run.strace" \
    "${CMD[@]}" run "$ROOT/examples/workflows/hello.ts" --params '{"name":"offline"}' 2>"$WORK/$mode-run.err")"
  code=$?
  if [ $code = 0 ] && [ "$(echo "$out" | tr -d ' \n')" = '{"greeting":"Hello,offline!"}' ]; then
    ok "$mode: run hello.ts --params {\"name\":\"offline\"} -> $(echo "$out" | tr -d '\n')"
  else
    notok "$mode: run hello.ts exited $code: $out $(cat "$WORK/$mode-run.err")"
  fi
  no_outbound "$WORK/$mode-run.strace" "$mode: run hello.ts"

  # a missing import fails fast, without trying to auto-install it
  start=$(date +%s)
  (cd "$DIR" && "${ENVV[@]}" timeout 60 "${TRACE[@]}" -o "$WORK/$mode-missing.strace" \
    "${CMD[@]}" run "$WORK/wf/missing.ts" >/dev/null 2>"$WORK/$mode-missing.err")
  code=$?
  secs=$(($(date +%s) - start))
  if [ $code != 0 ] && [ $code != 124 ] && [ $secs -lt 30 ]; then
    ok "$mode: run of a workflow importing a missing package fails in ${secs}s: $(grep -m1 -io 'cannot find[^.]*\|not found[^.]*\|could not resolve[^.]*' "$WORK/$mode-missing.err" | head -1)"
  else
    notok "$mode: missing import: exit $code after ${secs}s: $(head -c 400 "$WORK/$mode-missing.err")"
  fi
  no_outbound "$WORK/$mode-missing.strace" "$mode: missing import (no auto-install)"

  # dev: start, healthz, upsert/get, SIGTERM
  port="$(free_port)"
  (cd "$DIR" && exec "${ENVV[@]}" UNDERSTUDY_LISTEN="127.0.0.1:$port" "${TRACE[@]}" -o "$WORK/$mode-dev.strace" \
    "${CMD[@]}" dev >"$WORK/$mode-dev.out" 2>"$WORK/$mode-dev.err") &
  pid=$!
  healthy=""
  for _ in $(seq 1 200); do
    if [ "$(curl -s -m 1 "http://127.0.0.1:$port/healthz")" = '{"status":"ok"}' ]; then healthy=1; break; fi
    kill -0 $pid 2>/dev/null || break
    sleep 0.05
  done
  check "$mode: dev answers /healthz on 127.0.0.1:$port" test -n "$healthy"
  key="$(cat "$DIR/.understudy/dev-api-key" 2>/dev/null)"
  up="$(curl -s -m 5 "http://127.0.0.1:$port/v1/credentials/upsert" -H "x-api-key: $key" -H 'content-type: application/json' -d '{"name":"offline_pw","value":"airgap-s3cret"}')"
  got="$(curl -s -m 5 "http://127.0.0.1:$port/v1/credentials/get" -H "x-api-key: $key" -H 'content-type: application/json' -d '{"name":"offline_pw"}')"
  id="$(echo "$up" | sed -n 's/.*"credential_id":"\([^"]*\)".*/\1/p')"
  if [ -n "$id" ] && [ "$got" = "{\"id\":\"$id\",\"value\":\"airgap-s3cret\"}" ]; then
    ok "$mode: dev credentials upsert/get round trip"
  else
    notok "$mode: dev upsert/get: $up / $got"
  fi
  # The dashboard: its one-time link (from the banner) signs in, and the page and its assets come from the server.
  link="$(grep -o "http://127.0.0.1:$port/ui/sign-in/link?token=[A-Za-z0-9_-]*" "$WORK/$mode-dev.err" | head -1)"
  token="${link#*token=}"
  cookie="$(curl -s -m 5 -D - -o /dev/null -d "token=$token" "http://127.0.0.1:$port/ui/sign-in/link" | tr -d '\r' | sed -n 's/^set-cookie: \(understudy_session=[^;]*\).*/\1/ip')"
  page="$(curl -s -m 5 -H "cookie: $cookie" "http://127.0.0.1:$port/ui/credentials")"
  script="$(echo "$page" | grep -o '/ui/assets/app\.[0-9a-f]*\.js' | head -1)"
  if [ -n "$cookie" ] && echo "$page" | grep -q "offline_pw" && [ -n "$script" ] && curl -s -m 5 "http://127.0.0.1:$port$script" | grep -q EventSource; then
    ok "$mode: dashboard: the banner's one-time link signs in; the page and its script are served by the binary"
  else
    notok "$mode: dashboard: link=${link:+yes} cookie=${cookie:+yes} script=$script"
  fi
  # strace is the child of the subshell; signal the server itself.
  server="$(pgrep -P "$(pgrep -P $pid -x strace || echo $pid)" | head -1)"
  kill -TERM "${server:-$pid}" 2>/dev/null
  wait $pid
  code=$?
  if [ $code = 0 ] && grep -q "shutting down" "$WORK/$mode-dev.err"; then ok "$mode: dev exits 0 on SIGTERM"; else notok "$mode: dev exit $code: $(tail -c 400 "$WORK/$mode-dev.err")"; fi
  no_outbound "$WORK/$mode-dev.strace" "$mode: dev"

  # the browser path: ctx.page on a data: URL
  if [ -n "${UNDERSTUDY_CHROMIUM_PATH:-}" ] || command -v chromium chromium-browser google-chrome >/dev/null 2>&1; then
    out="$(cd "$DIR" && "${ENVV[@]}" ${UNDERSTUDY_CHROMIUM_PATH:+UNDERSTUDY_CHROMIUM_PATH="$UNDERSTUDY_CHROMIUM_PATH"} timeout 120 \
      "${TRACE[@]}" -o "$WORK/$mode-page.strace" \
      "${CMD[@]}" run "$WORK/wf/page.ts" 2>"$WORK/$mode-page.err")"
    code=$?
    if [ $code = 0 ] && [ "$(echo "$out" | tr -d ' \n')" = '{"title":"offlinepage","h1":"nonetworkneeded"}' ]; then
      ok "$mode: run of a ctx.page workflow on a data: URL -> $(echo "$out" | tr -d '\n')"
    else
      notok "$mode: ctx.page workflow exited $code: $out $(head -c 600 "$WORK/$mode-page.err")"
    fi
    no_outbound "$WORK/$mode-page.strace" "$mode: ctx.page workflow (Understudy and Chromium)"
  else
    ok "# SKIP $mode: no chromium on PATH; browser path not checked"
  fi
done

if [ $FAILED = 0 ]; then echo "# all $N checks passed offline"; else echo "# some checks FAILED"; fi
exit $FAILED
