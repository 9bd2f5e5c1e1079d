#!/usr/bin/env bash
# What access logging and --metrics cost the static path under wrk: four fastserve servers
# (plain, --metrics, --access-log, --access-log --access-log-format json) on CPU 0, wrk on CPU 1,
# a 1 KiB file and its 304, in interleaved rounds. Compare each line with the plain server of
# the same round; the plain server is close to wrk's own limit here.
#
#   bash bench/observability_cost.sh            # 3 rounds of 3 s
#   ROUNDS=5 DURATION=5 bash bench/observability_cost.sh
# Needs wrk (apt-get install wrk) and fastserve installed in FASTSERVE_PYTHON (default: python3).
set -euo pipefail
python="${FASTSERVE_PYTHON:-python3}"
rounds="${ROUNDS:-3}"
duration="${DURATION:-3}"
root="$(mktemp -d)"
head -c 1024 /dev/urandom >"$root/small.txt"
logs="$(mktemp -d)"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true' EXIT
declare -A flags=(
    [8101]="" [8102]="--metrics" [8103]="--access-log" [8104]="--access-log --access-log-format json"
)
for port in 8101 8102 8103 8104; do
    # shellcheck disable=SC2086  # the flags are words
    (cd "$logs" && exec taskset -c 0 "$python" -m fastserve "$root" --port "$port" ${flags[$port]} >"$logs/$port.log" 2>&1) &
    pids+=($!)
done
sleep 3
etag="$(curl -sI "http://127.0.0.1:8101/small.txt" | tr -d '\r' | awk -F': ' 'tolower($1)=="etag"{print $2}')"
rps() { taskset -c 1 wrk -t1 -c64 -d"${duration}s" "$@" | awk '/Requests\/sec/{print $2}'; }
for round in $(seq 1 "$rounds"); do
    for port in 8101 8102 8103 8104; do
        printf 'round %s  %-40s 1k %10s req/s  304 %10s req/s\n' "$round" "${flags[$port]:-plain}" \
            "$(rps "http://127.0.0.1:$port/small.txt")" \
            "$(rps -H "If-None-Match: $etag" "http://127.0.0.1:$port/small.txt")"
    done
done
