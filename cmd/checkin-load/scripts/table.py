#!/usr/bin/env python3
"""Prints the benchmark table from the closed-model JSON reports of
bench-http.sh: scenario, connections, throughput, p99 and the ratios to the
bare and naive baselines at the same workload and connection count.

    table.py RESULTS_DIR            (reads RESULTS_DIR/closed-<workload>-<scenario>-c<conns>.json)
    table.py --markdown RESULTS_DIR
"""
import sys

from reports import load_reports, print_table, table_args

ORDER = {"bare": 0, "naive": 1, "checkin": 2, "naive-scylla": 3, "scylla": 4}
# the naive run on the same store as the scenario
NAIVE_OF = {"scylla": "naive-scylla", "naive-scylla": "naive-scylla"}
WORKLOAD_NAMES = {"write": "checkin writes", "read": "current-location reads"}


def load(results):
    return {(m.group(1), m.group(2), int(m.group(3))): rep
            for m, rep in load_reports(results, r"closed-(\w+)-([\w-]+)-c(\d+)\.json")}


def ratio(x, base):
    return f"{x / base:.2f}x" if base else "-"


def main():
    markdown, results = table_args(__doc__)
    runs = load(results)
    if not runs:
        sys.exit(f"no closed-model reports in {results}")
    head = ["workload", "scenario", "conns", "ok/s", "p99 ms", "p99.9 ms", "errors", "vs bare", "vs naive (same store)"]
    rows = []
    for (w, s, c) in sorted(runs, key=lambda k: (k[0] != "write", k[0], k[2], ORDER.get(k[1], 9), k[1])):
        r = runs[(w, s, c)]
        bare = runs.get((w, "bare", c), {}).get("ok_rps", 0)
        naive = runs.get((w, NAIVE_OF.get(s, "naive"), c), {}).get("ok_rps", 0)
        rows.append([WORKLOAD_NAMES.get(w, w), s, str(c), f"{r['ok_rps']:.0f}", f"{r['latency']['p99_ms']:.2f}",
                     f"{r['latency']['p99_9_ms']:.2f}", str(r["errors"]), ratio(r["ok_rps"], bare), ratio(r["ok_rps"], naive)])
    print_table(head, rows, markdown, left=2)


if __name__ == "__main__":
    main()
