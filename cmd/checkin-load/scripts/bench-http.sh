#!/usr/bin/env bash
# bench-http.sh: the same HTTP load against
#   bare     checkin-baseline --mode=bare   (Fiber answering at once: the HTTP ceiling)
#   naive    checkin-baseline --mode=naive  (one synced store write per checkin)
#   checkin  checkin on the embedded store (pebble)
#   scylla   checkin --store=scylla, when CHECKIN_TEST_CQL_HOSTS is set and the
#            binary knows that store, and beside it
#   naive-scylla  the naive design on the same CQL node
# for checkin writes and current-location reads at several connection counts
# (closed model), then an open-model rate sweep for the plot. The server runs
# on CPU 0 and the load generator on CPU 1 (taskset), each server on a fresh
# data dir on 127.0.0.1 and a free port; it is stopped by PID after each run.
#
# Settings (environment):
#   BENCH_DURATION=10s        measured time of each run
#   BENCH_WARMUP=2s           unmeasured warmup before it
#   BENCH_CONNS="16 64 256"   connection counts of the table
#   BENCH_WORKLOADS="write read"
#   BENCH_SCENARIOS="bare naive checkin"   (scylla is added when available)
#   BENCH_USERS=10000 BENCH_LOCATIONS=1000
#   BENCH_PHASES="table sweep"
#   BENCH_SWEEP_RATES="2000 4000 8000 16000 32000 64000"  offered requests/s
#   BENCH_SWEEP_CONNS=256     connections of the sweep runs
#   BENCH_SWEEP_DURATION=5s
#   BENCH_SWEEP_WORKLOADS=write
#   BENCH_SERVER_CPUS=0 BENCH_LOAD_CPUS=1
#   BENCH_RESULTS=<dir>       default: ${TMPDIR:-/tmp}/checkin-bench/<date>
#   BENCH_DATA_DIR=<dir>      where the servers' fresh data dirs are made (default: a temp dir;
#                             put it on the disk you want to measure fsync on)
#   BENCH_PLOT=1              run plot.py on the sweep (installs matplotlib with pip if missing)
#
# Example (a short smoke run):
#   BENCH_DURATION=2s BENCH_WARMUP=0s BENCH_CONNS=16 BENCH_PHASES=table \
#     cmd/checkin-load/scripts/bench-http.sh
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../../.." && pwd)

duration=${BENCH_DURATION:-10s}
warmup=${BENCH_WARMUP:-2s}
conns_list=${BENCH_CONNS:-"16 64 256"}
workloads=${BENCH_WORKLOADS:-"write read"}
scenarios=${BENCH_SCENARIOS:-"bare naive checkin"}
users=${BENCH_USERS:-10000}
locations=${BENCH_LOCATIONS:-1000}
phases=${BENCH_PHASES:-"table sweep"}
sweep_rates=${BENCH_SWEEP_RATES:-"2000 4000 8000 16000 32000 64000"}
sweep_conns=${BENCH_SWEEP_CONNS:-256}
sweep_duration=${BENCH_SWEEP_DURATION:-5s}
sweep_workloads=${BENCH_SWEEP_WORKLOADS:-write}
server_cpus=${BENCH_SERVER_CPUS:-0}
load_cpus=${BENCH_LOAD_CPUS:-1}
results=${BENCH_RESULTS:-${TMPDIR:-/tmp}/checkin-bench/$(date +%Y%m%d-%H%M%S)}
plot=${BENCH_PLOT:-1}

log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# Pinning: server and load generator on separate cores where possible.
pin_server=() pin_load=()
if ! command -v taskset >/dev/null; then
  die "taskset not found: install util-linux (apt-get install util-linux)"
fi
if [ "$(nproc)" -ge 2 ]; then
  pin_server=(taskset -c "$server_cpus")
  pin_load=(taskset -c "$load_cpus")
else
  log "only $(nproc) CPU: server and load generator share it (no pinning)"
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/checkin-bench-work.XXXXXX")
data_root=${BENCH_DATA_DIR:-$work}
mkdir -p "$results" "$data_root"
server_pid=""
server_dir=""

stop_server() {
  if [ -n "$server_pid" ]; then
    kill -TERM "$server_pid" 2>/dev/null || true
    for _ in $(seq 1 300); do
      kill -0 "$server_pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$server_pid" 2>/dev/null; then
      log "server $server_pid did not stop within 30s of SIGTERM: killing it"
      kill -KILL "$server_pid" 2>/dev/null || true
    fi
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
  fi
  if [ -n "$server_dir" ]; then
    rm -rf "$server_dir"
    server_dir=""
  fi
}
cleanup() { stop_server; rm -rf "$work"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

log "building binaries"
(cd "$root" && go build -o "$work/bin/" ./cmd/checkin ./cmd/checkin-baseline ./cmd/checkin-load)
bin=$work/bin

# The scylla scenario needs a CQL node and a binary that has the store.
help=$("$bin/checkin" --help 2>&1 || true)
if [ -n "${CHECKIN_TEST_CQL_HOSTS:-}" ]; then
  if grep -A1 -- '--store ' <<<"$help" | grep -q scylla; then
    scenarios="$scenarios naive-scylla scylla"
  else
    log "CHECKIN_TEST_CQL_HOSTS is set but this checkin has no --store=scylla: skipping the scylla scenario"
  fi
fi

{
  echo "date:      $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "commit:    $(cd "$root" && git rev-parse --short HEAD 2>/dev/null || echo unknown)$(cd "$root" && git diff --quiet 2>/dev/null || echo ' (with local changes)')"
  echo "cpu:       $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //') x $(nproc)"
  echo "memory:    $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
  echo "kernel:    $(uname -sr)"
  echo "go:        $(go version | cut -d' ' -f3-)"
  echo "pinning:   server ${pin_server[*]:-none}, load generator ${pin_load[*]:-none}"
  echo "runs:      duration $duration, warmup $warmup, users $users, locations $locations"
  echo "data:      $(df -hT "$data_root" | awk 'NR==2 {print $2 " on " $1}')"
} > "$results/machine.txt"
cat "$results/machine.txt" >&2

# start_server SCENARIO: starts it on a fresh data dir and a free port; sets
# server_pid and server_addr. Returns 1 (after showing the log) when the
# server does not come up.
start_server() {
  local scenario=$1 cmd
  server_dir=$(mktemp -d "$data_root/checkin-bench-data.XXXXXX")
  case $scenario in
    bare) cmd=("$bin/checkin-baseline" --mode=bare --http.addr=127.0.0.1:0) ;;
    naive) cmd=("$bin/checkin-baseline" --mode=naive --http.addr=127.0.0.1:0 --data.dir="$server_dir/data") ;;
    checkin) cmd=("$bin/checkin" --http.addr=127.0.0.1:0 --data.dir="$server_dir/data" --http.access-log=false) ;;
    naive-scylla)
      cmd=("$bin/checkin-baseline" --mode=naive --store=scylla --http.addr=127.0.0.1:0
        --scylla.hosts="${CHECKIN_TEST_CQL_HOSTS:-127.0.0.1:9042}" --scylla.keyspace="bench_naive_$(date +%s)_$$")
      ;;
    scylla)
      # a fresh keyspace per run, like a fresh data dir (drop them when done:
      # DROP KEYSPACE bench_...)
      cmd=("$bin/checkin" --store=scylla --http.addr=127.0.0.1:0 --http.access-log=false)
      if grep -q -- '--scylla.hosts ' <<<"$help"; then cmd+=(--scylla.hosts="${CHECKIN_TEST_CQL_HOSTS:-127.0.0.1:9042}"); fi
      if grep -q -- '--scylla.keyspace ' <<<"$help"; then cmd+=(--scylla.keyspace="bench_$(date +%s)_$$"); fi
      ;;
    *) die "unknown scenario $scenario" ;;
  esac
  echo "${pin_server[*]} ${cmd[*]}" >> "$results/commands.txt"
  "${pin_server[@]}" "${cmd[@]}" 2> "$server_dir/server.log" &
  server_pid=$!
  server_addr=""
  for _ in $(seq 1 600); do
    server_addr=$(grep -m1 '"msg":"http server listening"' "$server_dir/server.log" 2>/dev/null |
      sed -n 's/.*"addr":"\([^"]*\)".*/\1/p' || true)
    [ -n "$server_addr" ] && return 0
    if ! kill -0 "$server_pid" 2>/dev/null; then
      log "  $scenario server exited at start:"
      tail -5 "$server_dir/server.log" >&2
      server_pid=""
      stop_server
      return 1
    fi
    sleep 0.1
  done
  log "  $scenario server did not listen within 60s:"
  tail -5 "$server_dir/server.log" >&2
  stop_server
  return 1
}

# workload_flags WORKLOAD: the load generator's mix for it.
workload_flags() {
  case $1 in
    write) echo "--mix.checkin=1 --mix.location=0 --setup.checkins=0" ;;
    read) echo "--mix.checkin=0 --mix.location=1 --setup.checkins=1" ;;
    *) die "unknown workload $1" ;;
  esac
}

# one_run NAME SCENARIO WORKLOAD FLAGS...: a fresh server, one load run, the
# JSON report in $results/NAME.json.
one_run() {
  local name=$1 scenario=$2 workload=$3
  shift 3
  start_server "$scenario" || { log "  $name: skipped"; return 0; }
  local cmd=("$bin/checkin-load" --targets="http://$server_addr" --users="$users" --locations="$locations"
    --setup.concurrency=64 --timeout=10s $(workload_flags "$workload") --json --progress.interval=5s "$@")
  echo "${pin_load[*]} ${cmd[*]}" >> "$results/commands.txt"
  if ! "${pin_load[@]}" "${cmd[@]}" > "$results/$name.json" 2> "$results/$name.log"; then
    log "  $name: checkin-load failed (see $results/$name.log)"
    tail -3 "$results/$name.log" >&2 || true
  fi
  stop_server
  [ -s "$results/$name.log" ] || rm -f "$results/$name.log"
  python3 - "$results/$name.json" <<'PY' >&2 || true
import json, sys
r = json.load(open(sys.argv[1]))
extra = f", dropped {r['dropped']}" if r.get("open") else ""
print(f"  -> {r['ok_rps']:.0f} ok/s, p99 {r['latency']['p99_ms']:.2f} ms, errors {r['errors']}{extra}")
PY
}

runs_table=0 runs_sweep=0
for w in $workloads; do for _ in $scenarios; do for _ in $conns_list; do runs_table=$((runs_table + 1)); done; done; done
for w in $sweep_workloads; do for _ in $scenarios; do for _ in $sweep_rates; do runs_sweep=$((runs_sweep + 1)); done; done; done
n=0
if [[ " $phases " == *" table "* ]]; then
  log "table: $runs_table runs of $duration (+ $warmup warmup) each"
  for w in $workloads; do
    for s in $scenarios; do
      for c in $conns_list; do
        n=$((n + 1))
        log "[$n/$runs_table] $w $s, $c connections"
        one_run "closed-$w-$s-c$c" "$s" "$w" --concurrency="$c" --duration="$duration" --warmup="$warmup"
      done
    done
  done
  python3 "$here/table.py" "$results" | tee "$results/table.txt"
fi

n=0
if [[ " $phases " == *" sweep "* ]]; then
  log "sweep: $runs_sweep open-model runs of $sweep_duration, $sweep_conns connections"
  for w in $sweep_workloads; do
    for s in $scenarios; do
      for r in $sweep_rates; do
        n=$((n + 1))
        log "[$n/$runs_sweep] $w $s, offered $r/s"
        one_run "open-$w-$s-r$r" "$s" "$w" --concurrency="$sweep_conns" --rate="$r" --duration="$sweep_duration" --warmup="$warmup"
      done
    done
  done
  if [ "$plot" = 1 ]; then
    python3 "$here/plot.py" "$results" || log "plot failed (the JSON reports are in $results)"
  fi
fi
log "results: $results"
