#!/usr/bin/env python3
"""Prints the benchmark table from the closed-model JSON reports of
bench-http.sh: scenario, connections, throughput, p99 and the ratios to the
bare and naive baselines at the same workload and connection count. With
several rounds (BENCH_ROUNDS), throughput and latencies are medians over the
rounds, the ratios are those of the medians, and one more column lists every
round's throughput.

    table.py RESULTS_DIR            (reads RESULTS_DIR/closed-<workload>-<scenario>-c<conns>[-<round>].json)
    table.py --markdown RESULTS_DIR
"""
import statistics
import sys

from reports import load_rounds, print_table, table_args

ORDER = {"bare": 0, "naive": 1, "checkin": 2, "naive-scylla": 3, "scylla": 4}
# the naive run on the same store as the scenario
NAIVE_OF = {"scylla": "naive-scylla", "naive-scylla": "naive-scylla"}
WORKLOAD_NAMES = {"write": "checkin writes", "read": "current-location reads"}


def load(results):
    """Returns {(workload, scenario, conns): [report of each round, in round order]}."""
    return load_rounds(results, r"closed-(\w+)-([\w-]+?)-c(\d+)(?:-(?P<round>\d+))?\.json",
                       lambda m: (m.group(1), m.group(2), int(m.group(3))))


def median(reps, field):
    return statistics.median(field(r) for r in reps)


def ratio(x, base):
    return f"{x / base:.2f}x" if base else "-"


def main():
    markdown, results = table_args(__doc__)
    runs = load(results)
    if not runs:
        sys.exit(f"no closed-model reports in {results}")
    rounds = max(len(v) for v in runs.values())
    head = ["workload", "scenario", "conns", "ok/s", "p99 ms", "p99.9 ms", "errors", "vs bare", "vs naive (same store)"]
    if rounds > 1:
        head[3] = f"ok/s (median of {rounds})"
        head.append("ok/s of each round")

    def ok(key):
        reps = runs.get(key)
        return median(reps, lambda r: r["ok_rps"]) if reps else 0

    rows = []
    for (w, s, c) in sorted(runs, key=lambda k: (k[0] != "write", k[0], k[2], ORDER.get(k[1], 9), k[1])):
        reps = runs[(w, s, c)]
        mine = ok((w, s, c))
        row = [WORKLOAD_NAMES.get(w, w), s, str(c), f"{mine:.0f}",
               f"{median(reps, lambda r: r['latency']['p99_ms']):.2f}",
               f"{median(reps, lambda r: r['latency']['p99_9_ms']):.2f}", str(sum(r["errors"] for r in reps)),
               ratio(mine, ok((w, "bare", c))), ratio(mine, ok((w, NAIVE_OF.get(s, "naive"), c)))]
        if rounds > 1:
            row.append(" / ".join(f"{r['ok_rps']:.0f}" for r in reps))
        rows.append(row)
    print_table(head, rows, markdown, left=2)


if __name__ == "__main__":
    main()
