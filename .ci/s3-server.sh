#!/usr/bin/env bash
# The local S3-compatible server the sonic-storage tests run against: s3s-fs, which checks SigV4
# signatures (so tampered and expired presigned URLs are refused) and serves both path-style and
# virtual-hosted-style requests.
#
#   .ci/s3-server.sh install   install s3s-fs 0.14.1 with cargo unless that version is on PATH
#   .ci/s3-server.sh start     start it on 127.0.0.1; prints `export SONIC_TEST_S3_ENDPOINT=...`
#                              (use: eval "$(.ci/s3-server.sh start)")
#   .ci/s3-server.sh stop      stop the server this script started and delete its data
#   .ci/s3-server.sh status    say whether it runs
#
# Conventions shared with sonic-storage/tests/common/mod.rs: access key `sonic-test-key`, secret
# `sonic-test-secret`, buckets `sonic-inputs` and `sonic-outputs`, virtual-hosted base domain
# `s3.sonic.test:<port>` (the tests resolve it to 127.0.0.1 in their HTTP clients, never in
# /etc/hosts). Without SONIC_TEST_S3_ENDPOINT the tests start their own s3s-fs from PATH.
#
# Environment: SONIC_S3_PORT (default: the first free port from 19014), SONIC_S3_STATE (default:
# ${TMPDIR:-/tmp}/sonic-s3-server; holds the pid, log and data).
set -euo pipefail

VERSION=0.14.1
STATE=${SONIC_S3_STATE:-${TMPDIR:-/tmp}/sonic-s3-server}
ACCESS_KEY=sonic-test-key
SECRET_KEY=sonic-test-secret
BUCKETS=(sonic-inputs sonic-outputs)
VHOST_BASE=s3.sonic.test

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

running_pid() {
    [ -f "$STATE/pid" ] || return 1
    local pid
    pid=$(cat "$STATE/pid")
    kill -0 "$pid" 2>/dev/null && echo "$pid"
}

install() {
    if command -v s3s-fs >/dev/null && s3s-fs --version 2>/dev/null | grep -q " $VERSION\$"; then
        echo "s3s-fs $VERSION is installed: $(command -v s3s-fs)" >&2
        return
    fi
    local start=$SECONDS
    cargo install s3s-fs --version "$VERSION" --features binary --locked >&2
    echo "installed s3s-fs $VERSION in $((SECONDS - start)) s" >&2
}

start() {
    if pid=$(running_pid); then
        echo "s3s-fs already runs (pid $pid)" >&2
        cat "$STATE/env"
        return
    fi
    command -v s3s-fs >/dev/null || {
        echo "s3s-fs is not on PATH; run: $0 install" >&2
        exit 1
    }
    local port=${SONIC_S3_PORT:-19014}
    if [ -z "${SONIC_S3_PORT:-}" ]; then
        while listening "$port"; do port=$((port + 1)); done
    elif listening "$port"; then
        echo "port $port is taken" >&2
        exit 1
    fi
    rm -rf "$STATE"
    mkdir -p "$STATE/data"
    for bucket in "${BUCKETS[@]}"; do mkdir -p "$STATE/data/$bucket"; done
    nohup s3s-fs --host 127.0.0.1 --port "$port" \
        --access-key "$ACCESS_KEY" --secret-key "$SECRET_KEY" \
        --domain "$VHOST_BASE:$port" "$STATE/data" >"$STATE/log" 2>&1 </dev/null &
    echo $! >"$STATE/pid"
    for _ in $(seq 200); do
        listening "$port" && break
        kill -0 "$(cat "$STATE/pid")" 2>/dev/null || {
            echo "s3s-fs exited; its log:" >&2
            cat "$STATE/log" >&2
            exit 1
        }
        sleep 0.1
    done
    listening "$port" || {
        echo "s3s-fs did not listen on port $port within 20 s" >&2
        exit 1
    }
    echo "export SONIC_TEST_S3_ENDPOINT=http://127.0.0.1:$port" >"$STATE/env"
    echo "s3s-fs runs on http://127.0.0.1:$port (pid $(cat "$STATE/pid"), data $STATE/data)" >&2
    cat "$STATE/env"
}

stop() {
    if pid=$(running_pid); then
        kill "$pid"
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        echo "stopped s3s-fs (pid $pid)" >&2
    fi
    rm -rf "$STATE"
}

status() {
    if pid=$(running_pid); then
        echo "s3s-fs runs (pid $pid): $(cat "$STATE/env")"
    else
        echo "s3s-fs is not running"
        return 1
    fi
}

case "${1:-}" in
    install) install ;;
    start) start ;;
    stop) stop ;;
    status) status ;;
    *)
        echo "usage: $0 install|start|stop|status" >&2
        exit 2
        ;;
esac
