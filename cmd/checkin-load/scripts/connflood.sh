#!/usr/bin/env bash
# connflood.sh: one client address floods a node with connections beyond
# http.max-conns-per-ip while another client reads. Starts a checkin node
# on the embedded store (CPU 0 when there are two) with
# --http.max-conns-per-ip=FLOOD_LIMIT, runs checkin-load from 127.0.0.1
# (open model, current-location reads, CPU 1) and, a few seconds in,
# connflood.py from 127.0.0.2: it holds FLOOD_LIMIT connections and opens
# more as fast as it can for FLOOD_SECONDS. Prints the flood's counts and
# the reader's report; FLOOD_OFF=1 runs the reader alone, for the baseline.
#
#   cmd/checkin-load/scripts/connflood.sh
#   FLOOD_OFF=1 cmd/checkin-load/scripts/connflood.sh
#
# Settings (environment): FLOOD_LIMIT=100, FLOOD_SECONDS=15,
# FLOOD_RATE=15000 (reads/s offered by the other client, over 64
# connections), FLOOD_OFF=0, FLOOD_RESULTS (default: a new temp dir).
# The node binds 127.0.0.1 and is stopped by PID at the end.
set -euo pipefail

limit=${FLOOD_LIMIT:-100}
secs=${FLOOD_SECONDS:-15}
rate=${FLOOD_RATE:-15000}
off=${FLOOD_OFF:-0}
results=${FLOOD_RESULTS:-$(mktemp -d -t checkin-flood.XXXXXX)}
mkdir -p "$results"
log() { echo "$(date +%T) $*" >&2; }

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"
plain_http_env
[ "$limit" -gt 64 ] || { log "FLOOD_LIMIT must be above the reader's 64 connections"; exit 2; }
server_cpu=() load_cpu=()
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
  server_cpu=(taskset -c 0) load_cpu=(taskset -c 1)
fi

bin="$results/bin"
log "building checkin and checkin-load into $bin"
(cd "$root" && go build -o "$bin/" ./cmd/checkin ./cmd/checkin-load)

"${server_cpu[@]}" "$bin/checkin" --http.addr=127.0.0.1:0 --data.dir="$results/data" --http.access-log=false \
  --http.max-conns-per-ip="$limit" 2> "$results/node.log" &
node=$!
trap 'kill "$node" 2>/dev/null || true; wait "$node" 2>/dev/null || true' EXIT
addr=$(listening_addr "$results/node.log" "$node") || { log "the node did not start; see $results/node.log"; exit 1; }
log "node (pid $node) on $addr, http.max-conns-per-ip=$limit"

duration=$((secs + 8))
"${load_cpu[@]}" "$bin/checkin-load" --targets="http://$addr" --concurrency=64 --rate="$rate" --warmup=2s --duration="${duration}s" \
  --users=10000 --locations=1000 --setup.checkins=1 --mix.checkin=0 --mix.location=1 --progress.interval=1s \
  > "$results/report.txt" 2> "$results/load.log" &
load=$!
for _ in $(seq 1 6000); do # until the measured run began
  grep -q '^run ' "$results/load.log" 2>/dev/null && break
  kill -0 "$load" 2>/dev/null || break
  sleep 0.05
done
if [ "$off" != 1 ]; then
  sleep 3
  log "flood from 127.0.0.2 for ${secs}s"
  "${load_cpu[@]}" python3 "$here/connflood.py" "$addr" "$secs" "$limit" 127.0.0.2 | tee "$results/flood.txt"
fi
status=0
wait "$load" || status=$?
cat "$results/report.txt"
log "checkin-load exited $status; logs and report in $results"
exit "$status"
