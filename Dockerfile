# Understudy in a container: one binary, Debian's Chromium, data on a volume.
#
#   docker build -t understudy .                               # with Chromium (browser workflows)
#   docker build -t understudy:slim --build-arg WITH_CHROMIUM=0 .   # without (no ctx.page)
#
# Written for the classic builder as well as BuildKit: no RUN --mount, no
# heredocs, no COPY --chmod.

# ---- build: compile dist/understudy with Bun ---------------------------------
FROM oven/bun:1 AS build
WORKDIR /opt/understudy

# Bun reads package-lock.json itself (it migrates it in memory, writes no
# bun.lock) and --frozen-lockfile fails the build if package.json and the lock
# disagree. Only the runtime dependencies are needed to compile: devDependencies
# (tsc, the bun npm package, autocannon) and the optional better-sqlite3 (a
# native addon for the Node bundle; the binary uses bun:sqlite) are left out,
# and no install scripts run, so this stage needs no C compiler.
#
# Behind a proxy that intercepts TLS, give its CA (PEM text) for this stage only;
# it is not copied into the runtime image:
#   docker build --build-arg BUILD_CA_CERT="$(cat proxy-ca.crt)" .
ARG BUILD_CA_CERT=""
COPY package.json package-lock.json ./
RUN if [ -n "$BUILD_CA_CERT" ]; then \
      printf '%s\n' "$BUILD_CA_CERT" > /tmp/build-ca.crt; \
      export NODE_EXTRA_CA_CERTS=/tmp/build-ca.crt; \
    fi; \
    bun install --frozen-lockfile --production --omit=optional --ignore-scripts

COPY tsconfig.json ./
COPY scripts ./scripts
COPY src ./src

# The commit for `understudy version`, with no git in this stage: read from
# .git's HEAD and refs, the only part of .git the context has (.dockerignore).
# package.json is named too so that the COPY has a source where there is no
# .git directory (a tarball, or a git worktree, whose .git is a file); there,
# or to override it, pass the commit:
#   docker build --build-arg UNDERSTUDY_COMMIT=$(git rev-parse --short HEAD) .
COPY package.json .gi[t] ./.git/
ARG UNDERSTUDY_COMMIT=""
RUN UNDERSTUDY_COMMIT="$UNDERSTUDY_COMMIT" bun -e 'import { buildAll } from "./scripts/build.ts"; await buildAll("dist", { targets: ["binary"], commit: process.env.UNDERSTUDY_COMMIT || undefined });' \
 && ./dist/understudy version

# ---- runtime -----------------------------------------------------------------
FROM debian:bookworm-slim

# 1 (default): Debian's chromium, so workflows that use ctx.page run here.
# 0: no browser, a much smaller image; such workflows fail with a clear error.
ARG WITH_CHROMIUM=1

# bubblewrap sandboxes the worker processes that run tenant code. Docker's
# defaults stop it twice: its seccomp profile refuses user namespaces, and its
# masks over parts of /proc make the kernel refuse the sandbox its own /proc.
# Run with --security-opt seccomp=unconfined (or a profile that allows new
# namespaces) and --security-opt systempaths=unconfined to get it, else workers
# run with the process boundary only, and serve says so at start.
# Docs, man pages and translations are left out (debian:bookworm-slim does the
# same for its own packages). tini is PID 1: it passes SIGTERM on to understudy
# and reaps the orphaned processes a browser can leave behind (the binary
# itself does not wait for children it did not start); -s keeps that working
# under `docker run --init` too.
RUN set -eux; \
    case "$WITH_CHROMIUM" in \
      1) browser="chromium fonts-liberation" ;; \
      0) browser="" ;; \
      *) echo "WITH_CHROMIUM must be 0 or 1, not '$WITH_CHROMIUM'" >&2; exit 1 ;; \
    esac; \
    printf '%s\n' 'path-exclude=/usr/share/doc/*' 'path-include=/usr/share/doc/*/copyright' \
      'path-exclude=/usr/share/man/*' 'path-exclude=/usr/share/info/*' 'path-exclude=/usr/share/locale/*' \
      > /etc/dpkg/dpkg.cfg.d/understudy-nodoc; \
    apt-get update; \
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ca-certificates tini bubblewrap $browser; \
    apt-get clean; \
    rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin; \
    groupadd --gid 10001 understudy; \
    useradd --uid 10001 --gid understudy --home-dir /home/understudy --create-home --shell /usr/sbin/nologin understudy; \
    mkdir -p /data /workflows; \
    chown understudy:understudy /data /workflows

COPY --from=build /opt/understudy/dist/understudy /usr/local/bin/understudy
# Nothing else from the build: playwright-core's package.json and browsers.json
# are inlined into the binary at build time (scripts/build.ts), so browser
# jobs need no node_modules in the image.

# `docker stop` sends SIGTERM and kills the container 10 s later (exit 137).
# UNDERSTUDY_SHUTDOWN_GRACE_MS is the whole time jobs get, the job grace
# (UNDERSTUDY_JOB_GRACE_MS, 5 s) included: running jobs may finish for 2 s,
# are then told to stop, and are killed at 7 s; closing workers, webhook
# deliveries in flight (at most 2 s) and the database fit in the rest. Raise it
# together with `docker stop -t` / compose's stop_grace_period, 3 s apart.
ENV UNDERSTUDY_LISTEN=0.0.0.0:8787 \
    UNDERSTUDY_DB=/data/understudy.db \
    UNDERSTUDY_WORKFLOWS_DIR=/workflows \
    UNDERSTUDY_SHUTDOWN_GRACE_MS=7000 \
    HOME=/home/understudy

USER understudy:understudy
WORKDIR /home/understudy
VOLUME ["/data"]
EXPOSE 8787

HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
  CMD ["/usr/local/bin/understudy", "healthcheck"]

STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/bin/tini", "-s", "--", "/usr/local/bin/understudy"]
CMD ["serve"]
