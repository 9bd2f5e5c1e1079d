#!/usr/bin/env bash
# Install what the benchmark needs (idempotently), then run bench/run_bench.py.
#
#   bash bench/run.sh                      # everything: 3 rounds, 5 s per wrk run
#   BENCH_ROUNDS=1 BENCH_DURATION=2 bash bench/run.sh   # quick look
#   BENCH_GROUPS=asgi bash bench/run.sh    # only the ASGI hello-world group
#   BENCH_SERVER_CPU_PERCENT=40 bash bench/run.sh   # every server held to 40% of one CPU (root)
#   BENCH_CONNECTIONS=256 bash bench/run.sh         # 256 connections where a scenario sets none
#   FASTSERVE_PYTHON=/tmp/dev/bin/python UVICORN_PYTHON=/tmp/dev/bin/python bash bench/run.sh
#   BENCH_BASELINE_PYTHON=/tmp/old/bin/python bash bench/run.sh   # another fastserve build alongside
#
# See bench/README.md for the environment variables and how to read the output.
set -euo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(dirname "$BENCH_DIR")"
BASE_PYTHON="${BENCH_BASE_PYTHON:-python3}"
FASTSERVE_VENV="$BENCH_DIR/.venv-fastserve"
UVICORN_VENV="$BENCH_DIR/.venv-uvicorn"
GRANIAN_VENV="$BENCH_DIR/.venv-granian"

log() { printf '[bench] %s\n' "$*" >&2; }

# Run a command with its output hidden unless it fails (pip is chatty in this setup).
run_quietly() {
    local out rc=0
    out="$(mktemp)"
    "$@" >"$out" 2>&1 || rc=$?
    if [ "$rc" -ne 0 ]; then
        log "failed with exit code $rc: $*"
        tail -n 30 "$out" >&2
    fi
    rm -f "$out"
    return "$rc"
}

ensure_system_packages() {
    local missing=()
    command -v wrk >/dev/null || missing+=(wrk)
    command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
    command -v h2o >/dev/null || missing+=(h2o)
    command -v taskset >/dev/null || missing+=(util-linux)
    if [ "${#missing[@]}" -ne 0 ]; then
        log "installing ${missing[*]} with apt-get"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o DPkg::Lock::Timeout=300 "${missing[@]}"
    fi
    # Caddy (the js-br workload) is optional: without it its row is reported as failed.
    if ! command -v caddy >/dev/null; then
        log "installing caddy with apt-get"
        DEBIAN_FRONTEND=noninteractive run_quietly apt-get install -y -q -o DPkg::Lock::Timeout=300 caddy \
            || log "continuing without caddy"
    fi
}

ensure_venv() {  # $1 = venv dir
    if [ ! -x "$1/bin/python" ]; then
        log "creating $1"
        "$BASE_PYTHON" -m venv "$1"
    fi
}

ensure_uvicorn_venv() {
    ensure_venv "$UVICORN_VENV"
    if ! "$UVICORN_VENV/bin/python" -c "import uvicorn, uvloop, httptools, starlette" 2>/dev/null; then
        log "installing uvicorn[standard] and starlette into $UVICORN_VENV"
        run_quietly "$UVICORN_VENV/bin/pip" install "uvicorn[standard]" starlette \
            || log "continuing: the uvicorn servers will be reported as failed"
    fi
}

# granian gets a venv of its own, so its pinned dependencies never move uvicorn's.
ensure_granian_venv() {
    ensure_venv "$GRANIAN_VENV"
    if ! "$GRANIAN_VENV/bin/python" -c "import granian, uvloop" 2>/dev/null; then
        log "installing granian[uvloop] into $GRANIAN_VENV"
        run_quietly "$GRANIAN_VENV/bin/pip" install "granian[uvloop]" \
            || log "continuing: granian will be reported as failed"
    fi
}

# Is group $1 among BENCH_GROUPS (unset or empty: every group)?
group_selected() {
    local groups=",${BENCH_GROUPS:-static,asgi},"
    groups="${groups// /}"
    [[ "$groups" == *",$1,"* ]]
}

# Build fastserve from a copy of the checkout: pip would otherwise write build/, *.egg-info and
# generated .c files into a tree other people are editing. The copy leaves out everything that
# does not go into the package (in-place builds, caches, tests, this directory), so the wheel is
# built from scratch exactly as `pip install <repo root>` builds it for a user, and the digest
# of the copy changes only when the package's source does.
SOURCE_COPY=""
cleanup() { if [ -n "$SOURCE_COPY" ]; then rm -rf "$SOURCE_COPY" "$SOURCE_COPY.wheel"; fi; }
trap cleanup EXIT

copy_source() {
    SOURCE_COPY="$(mktemp -d -t fastserve-src-XXXXXX)"
    tar -C "$REPO_ROOT" \
        --exclude=./.git --exclude=./.ci --exclude=./bench --exclude=./tests --exclude=./docs \
        --exclude=./build --exclude=./dist --exclude='*.egg-info' --exclude=__pycache__ \
        --exclude=.pytest_cache --exclude=.benchmarks --exclude='.venv*' \
        --exclude='*.so' --exclude='./fastserve/_speedups/*.html' \
        -cf - . | tar -C "$SOURCE_COPY/" -xf -
    # Cython output lying next to its .pyx is a leftover of an in-place build, not source.
    find "$SOURCE_COPY" -name '*.pyx' | while read -r pyx; do rm -f "${pyx%.pyx}.c"; done
}

source_digest() {
    (cd "$SOURCE_COPY" && find . -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)
}

WHEEL=""
WHEEL_FAILED=0
build_wheel_once() {
    if [ -n "$WHEEL" ] || [ "$WHEEL_FAILED" -eq 1 ]; then
        return
    fi
    local wheel_dir="$SOURCE_COPY.wheel"
    mkdir -p "$wheel_dir"
    log "building fastserve (pip wheel, Cython extensions compiled from scratch)"
    if "$1/bin/pip" wheel --no-deps -w "$wheel_dir" "$SOURCE_COPY" >"$wheel_dir/build.log" 2>&1; then
        WHEEL="$(ls "$wheel_dir"/fastserve-*.whl)"
    else
        WHEEL_FAILED=1
        log "fastserve failed to build; its servers will be reported as failed. Build log tail:"
        tail -n 20 "$wheel_dir/build.log" >&2
    fi
}

# Install the current fastserve source into a venv unless it already holds exactly this source.
ensure_fastserve_in() {  # $1 = venv dir
    local stamp="$1/.fastserve-source-digest" digest
    digest="$(source_digest)"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$digest" ] \
        && "$1/bin/python" -c "import fastserve" 2>/dev/null; then
        return
    fi
    rm -f "$stamp"
    build_wheel_once "$1"
    if [ -z "$WHEEL" ]; then
        # Never benchmark a stale build in place of the current source.
        "$1/bin/pip" uninstall -q -y fastserve >/dev/null 2>&1 || true
        return
    fi
    log "installing fastserve into $1"
    if run_quietly "$1/bin/pip" install "$WHEEL[compress]" \
        && run_quietly "$1/bin/pip" install --force-reinstall --no-deps "$WHEEL"; then
        echo "$digest" >"$stamp"  # (the second install forces the fresh build over a same-version one)
    else
        "$1/bin/pip" uninstall -q -y fastserve >/dev/null 2>&1 || true
    fi
}

ensure_system_packages

if [ -z "${FASTSERVE_PYTHON:-}" ] || [ -z "${UVICORN_PYTHON:-}" ]; then
    copy_source
fi
if [ -z "${UVICORN_PYTHON:-}" ]; then
    ensure_uvicorn_venv
    ensure_fastserve_in "$UVICORN_VENV"  # for the drop-in StaticFiles app
    export UVICORN_PYTHON="$UVICORN_VENV/bin/python"
fi
if [ -z "${FASTSERVE_PYTHON:-}" ]; then
    ensure_venv "$FASTSERVE_VENV"
    ensure_fastserve_in "$FASTSERVE_VENV"
    export FASTSERVE_PYTHON="$FASTSERVE_VENV/bin/python"
fi

if [ -z "${GRANIAN_PYTHON:-}" ] && group_selected asgi; then
    ensure_granian_venv
    export GRANIAN_PYTHON="$GRANIAN_VENV/bin/python"
fi

cleanup
SOURCE_COPY=""
"$BASE_PYTHON" "$BENCH_DIR/run_bench.py" "$@"
