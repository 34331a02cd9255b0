#!/usr/bin/env bash
# crash.sh: a node crash under load. Starts a cluster of three checkin
# nodes on the Scylla store (found through etcd), runs checkin-load over all
# three with --verify, kills one node with SIGKILL part way into the
# measured run (or, with CRASH_SIGNAL=STOP, freezes it for CRASH_PAUSE
# seconds and lets it go on, as a long pause or a cut-off machine that
# comes back; with CRASH_SIGNAL=ETCD, stops etcd for CRASH_PAUSE seconds
# and starts it again, and no node is touched; with CRASH_SIGNAL=ETCDSTOP,
# freezes etcd (SIGSTOP) for CRASH_PAUSE seconds and lets it go on, which
# expires every member's lease when the pause is longer than the lease;
# with CRASH_SIGNAL=ROLL,
# restarts every node in turn as a deploy does: SIGTERM, wait for it to
# exit, start it again on the same HTTP address, wait until it is ready
# and the cluster has three members again; with CRASH_SIGNAL=NONE, nothing
# happens to any node: a plain run, for overload with --rate or a CQL
# freeze alone), and prints the load
# generator's report. Exits with the load
# generator's status (3: an acknowledged checkin was lost), or with ROLL 4
# when the generator passed but a node did not stop with status 0.
#
#   cmd/checkin-load/scripts/crash.sh [extra checkin-load flags]
#   cmd/checkin-load/scripts/crash.sh --retries=3 --eject=2s   # clients behind a load balancer
#
# Needs a CQL node and etcd (.ci/cassandra-up, .ci/etcd-up). Settings, by
# environment:
#   CHECKIN_TEST_CQL_HOSTS       CQL node (default 127.0.0.1:9042)
#   CHECKIN_TEST_ETCD_ENDPOINTS  etcd (default 127.0.0.1:2379)
#   CRASH_DURATION               measured run (default 30s)
#   CRASH_KILL_AFTER             seconds into the measured run of the kill, 2 or more (default 10)
#   CRASH_SIGNAL                 KILL (default), STOP (freeze, then SIGCONT),
#                                ETCD (.ci/etcd-down, then .ci/etcd-up: needs the
#                                etcd those scripts start), ETCDSTOP (SIGSTOP to
#                                that etcd, then SIGCONT) or ROLL (a rolling
#                                restart of nodes 1, 2 and 3, starting at
#                                CRASH_KILL_AFTER; the run should last long
#                                enough for all three) or NONE (no event:
#                                every node runs throughout)
#   CRASH_ROLL_GAP               with ROLL, seconds between one node being back
#                                and the next one's SIGTERM (default 3)
#   CRASH_DRAIN_DELAY            every node's --http.drain-delay (default 0s; a
#                                load balancer that checks /readyz would want
#                                a few seconds)
#   CRASH_PAUSE                  seconds node 3 stays frozen with STOP, or etcd
#                                down with ETCD or frozen with ETCDSTOP (default 8)
#   CRASH_CQL_FREEZE_AT          also freeze the CQL node (SIGSTOP, then SIGCONT)
#                                this many seconds into the measured run, 2 or
#                                more (default: never): after the node 3 event,
#                                or before it when sooner than CRASH_KILL_AFTER
#                                (the node event then waits for the freeze to
#                                end); needs the node .ci/cassandra-up started
#                                (its pid file) or CRASH_CQL_PID
#   CRASH_CQL_PAUSE              seconds the CQL node stays frozen (default 7)
#   CRASH_CONCURRENCY            connections (default 64)
#   CRASH_USERS                  users (default 2000)
#   CRASH_RESULTS                where logs and the report go (default: a new temp dir)
#   CRASH_CHECKIN_BIN            a checkin binary to run as the nodes instead of
#                                one built from this tree (to compare builds under
#                                the same load generator)
# Every node binds 127.0.0.1; each run uses a keyspace and an etcd prefix of
# its own. The script stops the nodes it started, by PID, after saving each
# one's /metrics in CRASH_RESULTS (the report ends with the sums of the
# grains' background write and delete retries, hand-overs, writes passed
# on and calls failed fast, of the checkins the writers refused (the
# overload bound, a full queue) and of the members removed, over the nodes
# running at the end: a node restarted counts from its restart).
set -euo pipefail

cql=${CHECKIN_TEST_CQL_HOSTS:-127.0.0.1:9042}
etcd=${CHECKIN_TEST_ETCD_ENDPOINTS:-127.0.0.1:2379}
duration=${CRASH_DURATION:-30s}
kill_after=${CRASH_KILL_AFTER:-10}
signal=${CRASH_SIGNAL:-KILL}
pause=${CRASH_PAUSE:-8}
case "$signal" in KILL | STOP | ETCD | ETCDSTOP | ROLL | NONE) ;; *) echo "CRASH_SIGNAL must be KILL, STOP, ETCD, ETCDSTOP, ROLL or NONE" >&2; exit 2 ;; esac
roll_gap=${CRASH_ROLL_GAP:-3}
drain_delay=${CRASH_DRAIN_DELAY:-0s}
[ "$kill_after" -ge 2 ] || { echo "CRASH_KILL_AFTER must be 2 or more" >&2; exit 2; }
cql_freeze_at=${CRASH_CQL_FREEZE_AT:-}
cql_pause=${CRASH_CQL_PAUSE:-7}
cql_pid=${CRASH_CQL_PID:-}
if [ -n "$cql_freeze_at" ]; then
  [ "$cql_freeze_at" -ge 2 ] || { echo "CRASH_CQL_FREEZE_AT must be 2 or more" >&2; exit 2; }
  if [ -z "$cql_pid" ]; then
    pidfile=$(cd "$(dirname "$0")/../../.." && pwd)/.cache/cassandra/run/cassandra.pid
    cql_pid=$(cat "$pidfile" 2>/dev/null) || { echo "CRASH_CQL_FREEZE_AT: no $pidfile; set CRASH_CQL_PID" >&2; exit 2; }
  fi
  kill -0 "$cql_pid" 2>/dev/null || { echo "CRASH_CQL_FREEZE_AT: no CQL node process $cql_pid" >&2; exit 2; }
fi
concurrency=${CRASH_CONCURRENCY:-64}
users=${CRASH_USERS:-2000}
results=${CRASH_RESULTS:-$(mktemp -d -t checkin-crash.XXXXXX)}
mkdir -p "$results"

log() { echo "$(date +%T) $*" >&2; }

root=$(cd "$(dirname "$0")/../../.." && pwd)
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
bin="$results/bin"
log "building checkin and checkin-load into $bin"
(cd "$root" && go build -o "$bin/" ./cmd/checkin ./cmd/checkin-load)
if [ -n "${CRASH_CHECKIN_BIN:-}" ]; then
  cp "$CRASH_CHECKIN_BIN" "$bin/checkin"
  log "nodes run $CRASH_CHECKIN_BIN"
fi

run_id=crash$(date +%s)
pids=()
stop_nodes() {
  for pid in "${pids[@]}"; do [ -z "$pid" ] || kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do [ -z "$pid" ] || wait "$pid" 2>/dev/null || true; done
}
cql_frozen=""
load=""
roll_failed=""
cleanup() {
  # A CQL node left frozen would hang everything after this script.
  if [ -n "$cql_frozen" ]; then kill -CONT "$cql_pid" 2>/dev/null || true; fi
  # The load generator outlives the script only when a node failed to start.
  if [ -n "$load" ]; then kill "$load" 2>/dev/null || true; fi
  stop_nodes
}
trap cleanup EXIT

# start_node I HTTP_ADDR: starts node I (logging to node<I>.log, appended
# to across restarts), records its pid, waits until it listens and is
# ready, and sets addrs[I].
start_node() {
  local i=$1 http=$2 pid
  "$bin/checkin" --store=scylla --scylla.hosts="$cql" --scylla.keyspace="$run_id" \
    --cluster.provider=etcd --cluster.etcd-endpoints="$etcd" --cluster.etcd-prefix="/$run_id" \
    --cluster.addr=127.0.0.1:0 --http.addr="$http" --http.access-log=false \
    --http.drain-delay="$drain_delay" 2>> "$results/node$i.log" &
  pid=$!
  pids[$((i - 1))]=$pid
  # A restarted node keeps its address (the load generator's targets are
  # fixed); its log already holds the old process's listening line.
  if [ "$http" = 127.0.0.1:0 ]; then
    addrs[$i]=$(listening_addr "$results/node$i.log" "$pid") || { log "node $i did not start; see $results/node$i.log"; exit 1; }
  else
    addrs[$i]=$http
  fi
  for _ in $(seq 1 600); do
    curl -sf -o /dev/null "http://${addrs[$i]}/readyz" && break
    kill -0 "$pid" 2>/dev/null || { log "node $i exited at start; see $results/node$i.log"; exit 1; }
    sleep 0.1
  done
  log "node $i (pid $pid) on ${addrs[$i]}"
}

# wait_members N: waits up to 30 s until node 1 counts N members.
wait_members() {
  for _ in $(seq 1 300); do
    members=$(curl -s "http://${addrs[1]}/metrics" | awk '/^checkin_cluster_members / {print $2}') || true
    [ "${members:-0}" = "$1" ] && break
    sleep 0.1
  done
  log "cluster members: ${members:-?}"
}

for i in 1 2 3; do
  start_node "$i" 127.0.0.1:0
done
targets="http://${addrs[1]},http://${addrs[2]},http://${addrs[3]}"
wait_members 3

"$bin/checkin-load" --targets="$targets" --concurrency="$concurrency" --duration="$duration" \
  --users="$users" --verify --progress.interval=1s "$@" > "$results/report.txt" 2> "$results/load.log" &
load=$!
# The first progress line of the measured run comes 1 s after it started.
for _ in $(seq 1 6000); do
  grep -q '^run ' "$results/load.log" 2>/dev/null && break
  kill -0 "$load" 2>/dev/null || break
  sleep 0.05
done
if [ "$signal" = ETCD ] || [ "$signal" = ETCDSTOP ]; then
  log "measured run 1s old; etcd stops $((kill_after - 1))s from now"
elif [ "$signal" = ROLL ]; then
  log "measured run 1s old; the rolling restart begins $((kill_after - 1))s from now"
elif [ "$signal" = NONE ]; then
  log "measured run 1s old; no node is touched"
else
  log "measured run 1s old; SIG$signal to node 3 $((kill_after - 1))s from now"
fi
started=$SECONDS # the measured run is 1 s old
# cql_freeze freezes the CQL node at CRASH_CQL_FREEZE_AT for CRASH_CQL_PAUSE.
cql_freeze() {
  local wait_s=$((cql_freeze_at - 1 - (SECONDS - started)))
  [ "$wait_s" -gt 0 ] && sleep "$wait_s"
  cql_frozen=1
  kill -STOP "$cql_pid"
  log "froze the CQL node (pid $cql_pid, SIGSTOP) for ${cql_pause}s"
  sleep "$cql_pause"
  kill -CONT "$cql_pid"
  cql_frozen=""
  log "the CQL node goes on (SIGCONT)"
}
freeze_first=""
if [ -n "$cql_freeze_at" ] && [ "$cql_freeze_at" -lt "$kill_after" ]; then
  freeze_first=1
  cql_freeze
fi
wait_s=$((kill_after - 1 - (SECONDS - started)))
[ "$wait_s" -gt 0 ] && [ "$signal" != NONE ] && sleep "$wait_s"
if [ "$signal" = NONE ]; then
  :
elif [ "$signal" = KILL ]; then
  kill -9 "${pids[2]}"
  wait "${pids[2]}" 2>/dev/null || true
  pids[2]="" # reaped: its pid may be another process's by the end
  log "killed node 3 (SIGKILL)"
elif [ "$signal" = ROLL ]; then
  for i in 1 2 3; do
    pid=${pids[$((i - 1))]}
    kill -TERM "$pid"
    log "node $i (pid $pid): SIGTERM"
    node_status=0
    wait "$pid" || node_status=$?
    log "node $i exited $node_status after $((SECONDS - started))s of the run"
    [ "$node_status" = 0 ] || { roll_failed=1; log "node $i did not stop cleanly; see $results/node$i.log"; }
    start_node "$i" "${addrs[$i]}"
    wait_members 3
    log "node $i is back, $((SECONDS - started))s into the run"
    [ "$i" = 3 ] || sleep "$roll_gap"
  done
elif [ "$signal" = ETCD ]; then
  "$root/.ci/etcd-down" >&2
  log "stopped etcd for ${pause}s"
  sleep "$pause"
  "$root/.ci/etcd-up" > /dev/null
  log "etcd is up again"
elif [ "$signal" = ETCDSTOP ]; then
  etcd_pid=$(cat "${ETCD_RUN_DIR:-$root/.cache/etcd}/etcd.pid")
  kill -STOP "$etcd_pid"
  log "froze etcd (pid $etcd_pid, SIGSTOP) for ${pause}s"
  sleep "$pause"
  kill -CONT "$etcd_pid"
  log "etcd goes on (SIGCONT)"
else
  kill -STOP "${pids[2]}"
  log "froze node 3 (SIGSTOP) for ${pause}s"
  sleep "$pause"
  kill -CONT "${pids[2]}"
  log "node 3 goes on (SIGCONT)"
fi
if [ -n "$cql_freeze_at" ] && [ -z "$freeze_first" ]; then
  cql_freeze
fi
status=0
wait "$load" || status=$?
load="" # reaped
# What the nodes counted, for the grains' work behind the report (background
# writes and deletes, hand-overs, write passed on, calls failed fast), the
# checkins the writers refused, the store calls refused and the members
# removed; a node killed and not restarted has none.
for i in 1 2 3; do
  curl -s --max-time 5 "http://${addrs[$i]}/metrics" > "$results/metrics-node$i.txt" 2>/dev/null || true
done
grep -h -E '^checkin_(grain_(write_retries|delete_retries|handovers|writes_passed_on|calls_failed_fast)|cluster_members_removed|writer_rejected|store_refused)_total' "$results"/metrics-node*.txt 2>/dev/null |
  awk '{sum[$1] += $2} END {for (k in sum) printf "nodes: %s %d\n", k, sum[k]}' | sort >> "$results/report.txt" || true
# Nodes that found the cluster had removed them (they exit to be started
# again), and nodes that registered again after etcd lost every lease.
printf 'nodes: exited as removed %d\n' "$(cat "$results"/node*.log 2>/dev/null | grep -c 'the cluster removed this node' || true)" >> "$results/report.txt"
printf 'nodes: registered again after etcd lost every lease %d\n' "$(cat "$results"/node*.log 2>/dev/null | grep -c 'registered again under the same identity' || true)" >> "$results/report.txt"
cat "$results/load.log" >&2
cat "$results/report.txt"
log "checkin-load exited $status; logs and report in $results"
if [ "$status" = 0 ] && [ -n "$roll_failed" ]; then
  log "a node did not stop with status 0 during the rolling restart"
  exit 4
fi
exit "$status"
