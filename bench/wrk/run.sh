#!/usr/bin/env bash
# A quick A/B harness for `serve`: the server pinned to core 0, wrk to core 1,
# a 1 s warm-up, then a measured run. Besides wrk's figures it prints the
# server's CPU time per delivery (all its threads, from /proc), the mean
# group commit and the state conflicts (from /metrics). The warm-up sends
# deliveries of its own, so the measured run's are all new to the server
# (but for the redeliveries asked for).
#
# usage: bench/wrk/run.sh BINARY [normal|full] [SECONDS] [CONNECTIONS] [small|stripe] [DUPLICATES]
#   small|stripe: the bodies (see sign.py); DUPLICATES: the fraction of
#   redeliveries, 0 to 1 (default 0).
# needs: wrk (apt-get install wrk), python3, curl, taskset
set -euo pipefail
binary=$1 sync=${2:-full} seconds=${3:-4} connections=${4:-16} payload=${5:-small} duplicates=${6:-0}
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
run=run$RANDOM
python3 "$here/sign.py" 20000 "warm$run" "$work/warm-up.txt" --payload "$payload"
python3 "$here/sign.py" 100000 "$run" "$work/deliveries.txt" --payload "$payload" --duplicates "$duplicates"
PSA_BILLING_DATABASE_URL="sqlite://$work/serve.db?synchronous=$sync" \
  PSA_BILLING_COMPONENT_CACHE=$work/cache STRIPE_WEBHOOK_SECRET=whsec_test \
  taskset -c 0 "$binary" serve --listen "127.0.0.1:$port" >/dev/null 2>&1 &
pid=$!
for _ in $(seq 300); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
url=http://127.0.0.1:$port
DELIVERIES=$work/warm-up.txt taskset -c 1 wrk -t1 -c"$connections" -d1s -s "$here/deliveries.lua" "$url" >/dev/null
export DELIVERIES=$work/deliveries.txt
metric() { curl -s "$url/metrics" | awk -v n="$1" '$1 == n { print $2 }'; }
cpu() { awk '{ print $14 + $15 }' "/proc/$pid/stat"; }
read -r c0 g0 d0 x0 < <(echo "$(cpu) $(metric psa_billing_commit_groups_total) $(metric psa_billing_committed_deliveries_total) $(metric psa_billing_state_conflicts_total)")
taskset -c 1 wrk -t1 -c"$connections" -d"${seconds}s" -s "$here/deliveries.lua" "$url" | grep '^deliveries/s'
read -r c1 g1 d1 x1 < <(echo "$(cpu) $(metric psa_billing_commit_groups_total) $(metric psa_billing_committed_deliveries_total) $(metric psa_billing_state_conflicts_total)")
ticks=$(getconf CLK_TCK)
python3 - "$c0" "$c1" "$g0" "$g1" "$d0" "$d1" "$x0" "$x1" "$ticks" <<'PY'
import sys
c0, c1, g0, g1, d0, d1, x0, x1, ticks = map(float, sys.argv[1:])
deliveries = max(d1 - d0, 1)
print(f"server CPU {(c1 - c0) / ticks * 1e6 / deliveries:.0f} µs/delivery  "
      f"group commit {deliveries / max(g1 - g0, 1):.1f}  conflicts {x1 - x0:.0f} of {deliveries:.0f}")
PY
