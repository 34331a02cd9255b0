#!/usr/bin/env bash
# ab.sh BUILD [BUILD...]: checkin builds run against each other. Each build
# is a git revision (a commit, a tag, HEAD~3), "." for the working tree, or
# "bare" for bare Fiber (the ceiling of HTTP here), optionally followed by
# server flags in the same word ("HEAD --writer.linger=0": the same build with
# other settings; a revision is built once however often it is named).
# Round after round, every
# build runs once, in rotation (the order alternates from round to round, so
# that no build always follows the same one), each on a fresh server and
# data dir, under the same load; ab.py then prints, per build, the median
# throughput, the ratio to the first build's, and the server's user and
# system CPU per answer, read from /proc/<pid>/stat over a window of each
# run. Single runs on a shared VM swing by ±15 %: compare medians of rounds.
#
# Settings (environment):
#   AB_ROUNDS=3              rounds
#   AB_WORKLOAD=write        write (checkins) or read (current locations)
#   AB_CONNS=256             connections of the load generator
#   AB_DURATION=16s          measured time of each run (at least 12s)
#   AB_USERS=10000 AB_LOCATIONS=1000
#   AB_SERVER_FLAGS=""       more flags for every checkin server
#   AB_SERVER_CPUS=0 AB_LOAD_CPUS=1   taskset pinning (when there are two CPUs)
#   AB_RESULTS=<dir>         default: ${TMPDIR:-/tmp}/checkin-ab/<date>; must
#                            hold no reports of an earlier run
#
# Examples (five rounds of an older commit against HEAD; a setting):
#   AB_ROUNDS=5 cmd/checkin-load/scripts/ab.sh e2d49b8 HEAD
#   cmd/checkin-load/scripts/ab.sh HEAD "HEAD --pebble.io-uring=true"
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../../.." && pwd)
# shellcheck source=lib.sh
. "$here/lib.sh"
plain_http_env

rounds=${AB_ROUNDS:-3}
workload=${AB_WORKLOAD:-write}
conns=${AB_CONNS:-256}
duration=${AB_DURATION:-16s}
users=${AB_USERS:-10000}
locations=${AB_LOCATIONS:-1000}
read -r -a server_flags <<<"${AB_SERVER_FLAGS:-}"
server_cpus=${AB_SERVER_CPUS:-0}
load_cpus=${AB_LOAD_CPUS:-1}
results=${AB_RESULTS:-${TMPDIR:-/tmp}/checkin-ab/$(date +%Y%m%d-%H%M%S)}

log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

[ $# -ge 1 ] || die "usage: ab.sh BUILD [BUILD...] (a git revision, '.' for the working tree, or 'bare')"
[[ "$rounds" =~ ^[1-9][0-9]*$ ]] || die "AB_ROUNDS must be a whole number of at least 1, not '$rounds'"
[[ "$duration" =~ ^([0-9]+)s$ ]] && [ "${BASH_REMATCH[1]}" -ge 12 ] || die "AB_DURATION must be whole seconds, at least 12s, not '$duration'"
secs=${duration%s}
case $workload in
  write) mix=(--mix.checkin=1 --mix.location=0 --setup.checkins=0) ;;
  read) mix=(--mix.checkin=0 --mix.location=1 --setup.checkins=1) ;;
  *) die "AB_WORKLOAD must be write or read, not '$workload'" ;;
esac
command -v taskset >/dev/null || die "taskset not found: install util-linux (apt-get install util-linux)"
pin_server=() pin_load=()
if [ "$(nproc)" -ge 2 ]; then
  pin_server=(taskset -c "$server_cpus")
  pin_load=(taskset -c "$load_cpus")
else
  log "only $(nproc) CPU: server and load generator share it (no pinning)"
fi
if compgen -G "$results/ab-*.json" >/dev/null; then
  die "$results already holds reports of an earlier run: choose another AB_RESULTS or empty it"
fi
mkdir -p "$results"

work=$(mktemp -d "${TMPDIR:-/tmp}/checkin-ab-work.XXXXXX")
server_pid="" load_pid=""
cleanup() {
  if [ -n "$load_pid" ]; then kill "$load_pid" 2>/dev/null || true; wait "$load_pid" 2>/dev/null || true; fi
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  git -C "$root" worktree prune 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The builds: labels[i] is "<index>-<label>", binaries[i] the checkin
# binary (empty for bare), extra[i] its server flags.
labels=() binaries=() extra=()
declare -A built # revision (or "." ) -> binary
log "building checkin-load (working tree) and checkin-baseline (for bare)"
(cd "$root" && go build -o "$work/tools/" ./cmd/checkin-load ./cmd/checkin-baseline)
i=0
for build in "$@"; do
  i=$((i + 1))
  read -r -a words <<<"$build"
  [ ${#words[@]} -ge 1 ] || die "an empty build"
  what=${words[0]}
  label=$(printf '%s' "$build" | tr -c 'A-Za-z0-9._=-' '_')
  [ "$build" = "." ] && label=worktree
  labels+=("$i-$label")
  extra+=("${words[*]:1}")
  case $what in
    bare)
      [ ${#words[@]} -eq 1 ] || die "bare takes no flags: $build"
      binaries+=("")
      continue
      ;;
    .) key=. ;;
    *) key=$(git -C "$root" rev-parse --verify --quiet "$what^{commit}") || die "$what is not a git revision" ;;
  esac
  if [ -z "${built[$key]:-}" ]; then
    if [ "$key" = . ]; then
      log "building checkin from the working tree"
      (cd "$root" && go build -o "$work/bin/$i" ./cmd/checkin)
    else
      log "building checkin at $what (${key:0:7})"
      git -C "$root" worktree add --quiet --detach "$work/src-$i" "$key"
      (cd "$work/src-$i" && go build -o "$work/bin/$i" ./cmd/checkin)
      git -C "$root" worktree remove --force "$work/src-$i"
    fi
    built[$key]=$work/bin/$i
  fi
  binaries+=("${built[$key]}")
done

{
  echo "date:      $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "builds:    $*"
  echo "cpu:       $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //') x $(nproc)"
  echo "pinning:   server ${pin_server[*]:-none}, load generator ${pin_load[*]:-none}"
  echo "runs:      $workload, $conns connections, $duration, users $users, locations $locations, $rounds rounds"
} > "$results/machine.txt"
cat "$results/machine.txt" >&2

# cpu_ticks PID: the process's user and system CPU in clock ticks.
cpu_ticks() { awk '{print $14, $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)

# one_run INDEX ROUND: one server of build INDEX (0-based), one load run,
# its report with the server's CPU over the run's window added.
one_run() {
  local idx=$1 round=$2 key=${labels[$1]} dir addr flags
  dir=$(mktemp -d "$work/data.XXXXXX")
  if [ -z "${binaries[idx]}" ]; then
    "${pin_server[@]}" "$work/tools/checkin-baseline" --mode=bare --http.addr=127.0.0.1:0 2> "$dir/server.log" &
  else
    read -r -a flags <<<"${extra[idx]}"
    "${pin_server[@]}" "${binaries[idx]}" --http.addr=127.0.0.1:0 --data.dir="$dir/data" --http.access-log=false \
      "${server_flags[@]}" "${flags[@]}" 2> "$dir/server.log" &
  fi
  server_pid=$!
  addr=$(listening_addr "$dir/server.log" "$server_pid") || die "$key: the server did not start (above)"
  "${pin_load[@]}" "$work/tools/checkin-load" --targets="http://$addr" --users="$users" --locations="$locations" \
    --setup.concurrency=64 --timeout=10s "${mix[@]}" --concurrency="$conns" --warmup=2s --duration="$duration" --progress=false --json \
    > "$dir/report.json" 2> "$dir/load.log" &
  load_pid=$!
  local before after
  # The window: from 5 s after the load starts (its set-up and 2 s of
  # warmup, which activates the users' grains, are done by then; checked
  # below) to 5 s before the measured time would end without them.
  sleep 5
  before=$(cpu_ticks "$server_pid")
  sleep $((secs - 10))
  after=$(cpu_ticks "$server_pid")
  wait "$load_pid" || { load_pid=""; tail -3 "$dir/load.log" >&2; die "$key: checkin-load failed"; }
  load_pid=""
  kill "$server_pid"; wait "$server_pid" 2>/dev/null || true; server_pid=""
  python3 - "$dir/report.json" "$results/ab-$key-$round.json" "$before" "$after" "$hz" "$((secs - 10))" <<'PY' >&2
import json, sys
src, dst, before, after, hz, window = sys.argv[1:]
r = json.load(open(src))
(u0, s0), (u1, s1) = (map(int, before.split()), map(int, after.split()))
hz, window = int(hz), int(window)
r["server_cpu"] = {"user_s": (u1 - u0) / hz, "sys_s": (s1 - s0) / hz, "window_s": window}
json.dump(r, open(dst, "w"))
n = r["ok_rps"] * window
print(f"  -> {r['ok_rps']:.0f} ok/s, server CPU {(u1 - u0) / hz / n * 1e6:.1f} user + {(s1 - s0) / hz / n * 1e6:.1f} system µs per answer, errors {r['errors']}")
setup = (r.get("setup") or {}).get("elapsed_s", 0)
if setup + 2 > 5:
    print(f"  !! the set-up took {setup:.1f} s, and the warmup 2 s: the CPU window began inside them, so the µs per answer above count some of them")
PY
  rm -rf "$dir"
}

total=$((rounds * ${#labels[@]})) n=0
for round in $(seq 1 "$rounds"); do
  order=()
  for ((j = 0; j < ${#labels[@]}; j++)); do order+=("$j"); done
  if [ $((round % 2)) -eq 0 ]; then # every other round backwards
    order=()
    for ((j = ${#labels[@]} - 1; j >= 0; j--)); do order+=("$j"); done
  fi
  for idx in "${order[@]}"; do
    n=$((n + 1))
    log "[$n/$total] round $round: ${labels[idx]#*-}"
    one_run "$idx" "$round"
  done
done
python3 "$here/ab.py" "$results"
log "reports: $results"
