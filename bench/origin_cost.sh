#!/usr/bin/env bash
# What the static-origin features (cache policy, dotfile checks, on-the-fly compression) cost a
# request, as CPU instructions: callgrind counts the instructions spent inside
# HttpProtocol.data_received for the 1 KiB, 304 and 404 requests of bench/inprocess.py, with
# the server's defaults (--origin on) and with those features off (--origin off), in one run
# of the same build. Instruction counts do not depend on the machine's load.
#
#   bash bench/origin_cost.sh            # with the python on PATH (fastserve importable)
#   REQUESTS=20000 bash bench/origin_cost.sh
set -euo pipefail
BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PYTHON="${PYTHON:-python}"
REQUESTS="${REQUESTS:-10000}"
OUT="$(mktemp -d -t fastserve-origin-cost-XXXXXX)"
trap 'rm -rf "$OUT"' EXIT
TOGGLE='__pyx_pw_9fastserve_9_speedups_8protocol_12HttpProtocol_13data_received'

instructions() {  # $1 = scenario, $2 = on|off -> instructions per request
    local file="$OUT/callgrind.$1.$2"
    valgrind --tool=callgrind --callgrind-out-file="$file" --toggle-collect="$TOGGLE" \
        "$PYTHON" "$BENCH_DIR/inprocess.py" --static-only --browser --origin "$2" --only "$1" \
        --batches 1 --batch "$REQUESTS" >/dev/null 2>"$OUT/log.$1.$2"
    local total
    total="$(grep -E '^(summary|totals):' "$file" | head -n1 | awk '{print $2}')"
    echo $(( total / REQUESTS ))
}

printf '%-5s %12s %12s %8s\n' scenario "off (Ir/req)" "on (Ir/req)" change
for scenario in 1k 304 404; do
    off="$(instructions "$scenario" off)"
    on="$(instructions "$scenario" on)"
    awk -v s="$scenario" -v off="$off" -v on="$on" \
        'BEGIN { printf "%-8s %12d %12d %+7.1f%%\n", s, off, on, (on - off) * 100.0 / off }'
done
