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
# In the table, the scenarios of one workload and connection count run back
# to back, so a machine (or CQL node) that drifts over minutes moves them
# together; rounds alternate their order, and table.py prints medians.
#
# Settings (environment):
#   BENCH_DURATION=10s        measured time of each run
#   BENCH_WARMUP=2s           unmeasured warmup before it
#   BENCH_CONNS="16 64 256"   connection counts of the table
#   BENCH_ROUNDS=1            table rounds; even rounds run the scenarios in
#                             reverse order (table.py: medians, every round's ok/s)
#   BENCH_CQL_WARMUP=30s      with a CQL node: unmeasured writes by the naive
#                             design, then by checkin, for this long each before
#                             the first measured run, so neither scenario meets
#                             a JVM that is still compiling (0s: none)
#   BENCH_WORKLOADS="write read"
#   BENCH_SCENARIOS="bare naive checkin"   (scylla is added when available)
#   BENCH_USERS=10000 BENCH_LOCATIONS=1000
#   BENCH_PHASES="table sweep"
#   BENCH_SWEEP_RATES="2000 4000 8000 16000 32000 64000"  offered requests/s
#   BENCH_SWEEP_CONNS=256     connections of the sweep runs
#   BENCH_SWEEP_DURATION=5s
#   BENCH_SWEEP_WORKLOADS=write
#   BENCH_SERVER_CPUS=0 BENCH_LOAD_CPUS=1
#   CHECKIN_RUNTIME_GOMAXPROCS, CHECKIN_RUNTIME_GC_PERCENT, ...: every server
#                             (checkin and both baselines) reads the same
#                             runtime.* settings from them; unset: the defaults
#                             (Go's GOMAXPROCS: 1 on one pinned CPU). See the
#                             README for CHECKIN_RUNTIME_GOMAXPROCS=2.
#   CHECKIN_PEBBLE_IO_URING=true: checkin and the naive design on the embedded
#                             store sync through io_uring (default: blocking syncs)
#   BENCH_RESULTS=<dir>       default: ${TMPDIR:-/tmp}/checkin-bench/<date>; must hold no
#                             reports yet (the report scripts read all of them)
#   BENCH_DATA_DIR=<dir>      where the servers' fresh data dirs are made (default: a temp dir;
#                             put it on the disk you want to measure fsync on)
#   BENCH_PLOT=1              run plot.py on the sweep (installs matplotlib with pip if missing)
#   tail phase (not in the default BENCH_PHASES): current-location reads,
#   open model, long enough that garbage collections land in the window at
#   their natural rate, on checkin and on the bare baseline at the same
#   offered rates (what the machine's HTTP path alone gives at that rate),
#   repeated in interleaved rounds; tail.py prints medians:
#   BENCH_TAIL_RATES="13000 21000 29000"   offered reads/s (about 30/50/70 %
#                                          of checkin's open-model read peak here)
#   BENCH_TAIL_SCENARIOS="bare checkin" BENCH_TAIL_REPEAT=3
#   BENCH_TAIL_DURATION=60s
#   rss phase (not in the default BENCH_PHASES): the Gowalla replay file,
#   BENCH_RSS_PASSES times with new user and location ids each pass, against
#   one checkin node; RSS, Go heap (in use, and live after the last GC) and
#   active grains sampled into rss.tsv:
#   BENCH_RSS_PASSES=10 BENCH_RSS_IDLE=10s (grain.idle-timeout, in seconds) BENCH_RSS_SAMPLE=2 (seconds)
#   BENCH_RSS_SERVER_FLAGS="--grain.view-size-mb=16 --cache.size-mb=16"  smaller
#   caps than the defaults (64 each), so the capped caches fill early in the run
#   and what remains is what passivation gives back
#   BENCH_RSS_REST=150 seconds of no load at the end (past Go's 2-minute
#   forced GC, so the live heap of the idle node is measured)
#   BENCH_REPLAY=<root>/../shared/data/gowalla_nyc_checkins.tsv
#   cluster phase (not in the default BENCH_PHASES; needs CHECKIN_TEST_CQL_HOSTS
#   and CHECKIN_TEST_ETCD_ENDPOINTS): checkin clusters of each size on the CQL
#   node, members found through etcd, every member pinned like the server;
#   the load goes round-robin over all members, so a request reaches the
#   user's owner directly about 1/N of the time and is forwarded otherwise;
#   rounds interleave the sizes; cluster.py prints medians:
#   BENCH_CLUSTER_NODES="1 3" BENCH_CLUSTER_WORKLOADS="write read"
#   BENCH_CLUSTER_CONNS=64 BENCH_CLUSTER_REPEAT=2
#
# Example (a short smoke run):
#   BENCH_DURATION=2s BENCH_WARMUP=0s BENCH_CONNS=16 BENCH_PHASES=table \
#     cmd/checkin-load/scripts/bench-http.sh
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../../.." && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"
# The tables measure plain HTTP without API keys (the servers read the rest
# of CHECKIN_*).
plain_http_env

duration=${BENCH_DURATION:-10s}
warmup=${BENCH_WARMUP:-2s}
conns_list=${BENCH_CONNS:-"16 64 256"}
rounds=${BENCH_ROUNDS:-1}
cql_warmup=${BENCH_CQL_WARMUP:-30s}
[[ "$rounds" =~ ^[1-9][0-9]*$ ]] || { echo "BENCH_ROUNDS must be a whole number of at least 1, not '$rounds'" >&2; exit 2; }
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
tail_rates=${BENCH_TAIL_RATES:-"13000 21000 29000"}
tail_scenarios=${BENCH_TAIL_SCENARIOS:-"bare checkin"}
tail_repeat=${BENCH_TAIL_REPEAT:-3}
tail_duration=${BENCH_TAIL_DURATION:-60s}
rss_passes=${BENCH_RSS_PASSES:-10}
rss_idle=${BENCH_RSS_IDLE:-10s}
rss_rest=${BENCH_RSS_REST:-150}
rss_server_flags=${BENCH_RSS_SERVER_FLAGS:-"--grain.view-size-mb=16 --cache.size-mb=16"}
rss_sample=${BENCH_RSS_SAMPLE:-2}
replay_file=${BENCH_REPLAY:-$root/../shared/data/gowalla_nyc_checkins.tsv}
cluster_nodes=${BENCH_CLUSTER_NODES:-"1 3"}
cluster_workloads=${BENCH_CLUSTER_WORKLOADS:-"write read"}
cluster_conns=${BENCH_CLUSTER_CONNS:-64}
cluster_repeat=${BENCH_CLUSTER_REPEAT:-2}
server_extra=() # more flags for the next checkin server

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
# The report scripts read every report in the directory: reports of an
# earlier run left there would be mixed into this one's tables.
if compgen -G "$results/*.json" >/dev/null || [ -e "$results/rss.tsv" ]; then
  die "$results already holds reports of an earlier run: choose another BENCH_RESULTS or empty it"
fi
mkdir -p "$results" "$data_root"
server_pid="" server_addr="" # of the server started last
server_pids=() server_dirs=()  # of every server running

# stop_server: stops every server started (SIGTERM, SIGKILL after 30 s) and
# deletes their data dirs.
stop_server() {
  local pid dir
  for pid in "${server_pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${server_pids[@]}"; do
    for _ in $(seq 1 300); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      log "server $pid did not stop within 30s of SIGTERM: killing it"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
  done
  for dir in "${server_dirs[@]}"; do rm -rf "$dir"; done
  server_pids=() server_dirs=() server_pid="" server_addr=""
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
  echo "runtime:   $(env | grep -E '^(CHECKIN_RUNTIME_|CHECKIN_PEBBLE_IO_URING=|GOMAXPROCS=|GOGC=|GOMEMLIMIT=)' | sort | tr '\n' ' ')(else every server's runtime.* defaults)"
} > "$results/machine.txt"
cat "$results/machine.txt" >&2

# start_server SCENARIO: starts it on a fresh data dir and a free port
# (beside any server already running); sets server_pid and server_addr.
# Returns 1 (after showing the log and stopping every server) when the
# server does not come up.
start_server() {
  local scenario=$1 cmd server_dir
  server_dir=$(mktemp -d "$data_root/checkin-bench-data.XXXXXX")
  server_dirs+=("$server_dir")
  case $scenario in
    bare) cmd=("$bin/checkin-baseline" --mode=bare --http.addr=127.0.0.1:0) ;;
    naive) cmd=("$bin/checkin-baseline" --mode=naive --http.addr=127.0.0.1:0 --data.dir="$server_dir/data") ;;
    checkin) cmd=("$bin/checkin" --http.addr=127.0.0.1:0 --data.dir="$server_dir/data" --http.access-log=false "${server_extra[@]}") ;;
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
    member)
      # a member of an etcd-provided cluster; server_extra names the
      # cluster's keyspace and etcd prefix
      cmd=("$bin/checkin" --store=scylla --http.addr=127.0.0.1:0 --http.access-log=false --cluster.addr=127.0.0.1:0
        --scylla.hosts="${CHECKIN_TEST_CQL_HOSTS:-127.0.0.1:9042}" --cluster.provider=etcd
        --cluster.etcd-endpoints="${CHECKIN_TEST_ETCD_ENDPOINTS:-127.0.0.1:2379}" "${server_extra[@]}")
      ;;
    *) die "unknown scenario $scenario" ;;
  esac
  echo "${pin_server[*]} ${cmd[*]}" >> "$results/commands.txt"
  "${pin_server[@]}" "${cmd[@]}" 2> "$server_dir/server.log" &
  server_pid=$!
  server_pids+=("$server_pid")
  if server_addr=$(listening_addr "$server_dir/server.log" "$server_pid"); then
    return 0
  fi
  log "  $scenario server did not start (above)"
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
  load_run "$name" "http://$server_addr" "$workload" "$@"
}

# load_run NAME TARGETS WORKLOAD FLAGS...: one load run against the servers
# running (TARGETS: comma-separated base URLs), then stops them.
load_run() {
  local name=$1 targets=$2 workload=$3
  shift 3
  local cmd=("$bin/checkin-load" --targets="$targets" --users="$users" --locations="$locations"
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

# words LIST...: how many words the lists hold (run counts for progress).
words() { echo $#; }
# reversed LIST...: the list in reverse order.
reversed() {
  local out=() x
  for x in "$@"; do out=("$x" "${out[@]}"); done
  echo "${out[@]}"
}
# shellcheck disable=SC2086 # word splitting intended
runs_table=$((rounds * $(words $workloads) * $(words $scenarios) * $(words $conns_list)))
# shellcheck disable=SC2086
runs_sweep=$(($(words $sweep_workloads) * $(words $scenarios) * $(words $sweep_rates)))

# A CQL node's JVM compiles and its compactions start during its first
# minutes: warm it with both designs' writes before anything is measured.
if [[ " $scenarios " == *" scylla "* && "$cql_warmup" != 0* ]] &&
  [[ " $phases " == *" table "* || " $phases " == *" sweep "* ]]; then
  for s in naive-scylla scylla; do
    log "warming the CQL node: $s writes for $cql_warmup (not measured)"
    one_run "warmup-write-$s" "$s" write --concurrency=64 --duration="$cql_warmup" --warmup=0s
  done
fi

n=0
if [[ " $phases " == *" table "* ]]; then
  log "table: $runs_table runs of $duration (+ $warmup warmup) each, $rounds round(s)"
  for i in $(seq 1 "$rounds"); do
    order=$scenarios
    # shellcheck disable=SC2086
    if [ $((i % 2)) = 0 ]; then order=$(reversed $scenarios); fi
    # the first round keeps the names of single-round results
    suffix=""
    if [ "$i" -gt 1 ]; then suffix="-$i"; fi
    for w in $workloads; do
      for c in $conns_list; do
        for s in $order; do
          n=$((n + 1))
          log "[$n/$runs_table] $w $s, $c connections (round $i)"
          one_run "closed-$w-$s-c$c$suffix" "$s" "$w" --concurrency="$c" --duration="$duration" --warmup="$warmup"
        done
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
n=0
if [[ " $phases " == *" tail "* ]]; then
  # shellcheck disable=SC2086
  tail_runs=$((tail_repeat * $(words $tail_rates) * $(words $tail_scenarios)))
  log "tail: $tail_runs open-model read runs of $tail_duration ($tail_scenarios; $tail_repeat rounds), $sweep_conns connections"
  for i in $(seq 1 "$tail_repeat"); do
    for r in $tail_rates; do
      for s in $tail_scenarios; do
        n=$((n + 1))
        log "[$n/$tail_runs] read $s, offered $r/s for $tail_duration (round $i)"
        one_run "tail-read-$s-r$r-$i" "$s" read --concurrency="$sweep_conns" --rate="$r" --duration="$tail_duration" --warmup="$warmup"
      done
    done
  done
  python3 "$here/tail.py" "$results" | tee "$results/tail.txt"
fi

n=0
if [[ " $phases " == *" cluster "* ]]; then
  [ -n "${CHECKIN_TEST_CQL_HOSTS:-}" ] && [ -n "${CHECKIN_TEST_ETCD_ENDPOINTS:-}" ] ||
    die "the cluster phase needs CHECKIN_TEST_CQL_HOSTS and CHECKIN_TEST_ETCD_ENDPOINTS (.ci/cassandra-up, .ci/etcd-up)"
  # shellcheck disable=SC2086
  cluster_runs=$((cluster_repeat * $(words $cluster_nodes) * $(words $cluster_workloads)))
  log "cluster: $cluster_runs runs of $duration, $cluster_conns connections round-robin over every node; nodes: $cluster_nodes"
  for i in $(seq 1 "$cluster_repeat"); do
    for w in $cluster_workloads; do
      for k in $cluster_nodes; do
        n=$((n + 1))
        log "[$n/$cluster_runs] $w, $k node(s) (round $i)"
        ks="bench_cluster_$(date +%s)_$$"
        # The first node creates the keyspace; the others start once it is up.
        server_extra=(--scylla.keyspace="$ks" --cluster.name="$ks" --cluster.etcd-prefix="/checkin-bench/$ks")
        targets=""
        for _ in $(seq 1 "$k"); do
          start_server member || die "a cluster member did not start"
          targets="${targets:+$targets,}http://$server_addr"
        done
        server_extra=()
        for u in ${targets//,/ }; do # every member sees all k
          for _ in $(seq 1 300); do
            m=$(curl -s --max-time 1 "$u/metrics" | awk '/^checkin_cluster_members / {print $2}' || true)
            [ "$m" = "$k" ] && break
            sleep 0.1
          done
          [ "$m" = "$k" ] || die "$u sees ${m:-no} members, want $k"
        done
        load_run "cluster-$w-n$k-$i" "$targets" "$w" --concurrency="$cluster_conns" --duration="$duration" --warmup="$warmup"
      done
    done
  done
  python3 "$here/cluster.py" "$results" | tee "$results/cluster.txt"
fi

# rss_sampler PID ADDR: every $rss_sample s, a line of rss.tsv until killed.
rss_sampler() {
  local pid=$1 addr=$2 t0
  t0=$(date +%s.%N)
  echo -e "seconds\trss_mib\theap_inuse_mib\theap_live_mib\tgrains_active\tpass" > "$results/rss.tsv"
  while kill -0 "$pid" 2>/dev/null; do
    local rss m
    rss=$(awk '/^VmRSS:/ {printf "%.1f", $2/1024}' "/proc/$pid/status" 2>/dev/null || echo "")
    m=$(curl -s --max-time 1 "http://$addr/metrics" 2>/dev/null |
      awk '/^go_memstats_heap_inuse_bytes / {h=$2/1048576} /^go_gc_heap_live_bytes / {l=$2/1048576}
        /^checkin_grains_active / {g=$2} END {printf "%.1f\t%.1f\t%d", h, l, g}')
    printf '%s\t%s\t%s\t%s\n' "$(awk -v a="$(date +%s.%N)" -v b="$t0" 'BEGIN {printf "%.1f", a - b}')" "$rss" "$m" "$(cat "$results/rss.pass" 2>/dev/null || echo 0)" >> "$results/rss.tsv"
    sleep "$rss_sample"
  done
}

if [[ " $phases " == *" rss "* ]]; then
  [ -r "$replay_file" ] || die "replay file $replay_file not readable (set BENCH_REPLAY)"
  log "rss: $rss_passes replay passes of $(wc -l < "$replay_file") checkins, grain.idle-timeout=$rss_idle $rss_server_flags"
  # shellcheck disable=SC2206 # word splitting intended
  server_extra=(--grain.idle-timeout="$rss_idle" $rss_server_flags)
  start_server checkin || die "checkin did not start"
  server_extra=()
  echo 0 > "$results/rss.pass"
  rss_sampler "$server_pid" "$server_addr" &
  sampler_pid=$!
  for p in $(seq 1 "$rss_passes"); do
    echo "$p" > "$results/rss.pass"
    log "[$p/$rss_passes] replay pass with ids p$p-*"
    cmd=("$bin/checkin-load" --targets="http://$server_addr" --replay="$replay_file" --replay.id-prefix="p$p-"
      --concurrency=64 --setup.concurrency=64 --verify --json --progress.interval=5s)
    echo "${pin_load[*]} ${cmd[*]}" >> "$results/commands.txt"
    "${pin_load[@]}" "${cmd[@]}" > "$results/rss-pass$p.json" 2> "$results/rss-pass$p.log" ||
      log "  pass $p: checkin-load failed (see $results/rss-pass$p.log)"
  done
  echo idle > "$results/rss.pass"
  log "no load for ${rss_rest}s: grains passivate, Go's periodic GC runs"
  sleep "$rss_rest"
  kill "$sampler_pid" 2>/dev/null || true
  wait "$sampler_pid" 2>/dev/null || true
  stop_server
  rm -f "$results/rss.pass"
  python3 "$here/rss.py" "$results" | tee "$results/rss.txt"
fi
log "results: $results"
