#!/usr/bin/env python3
"""Prints the cluster table from the cluster phase of bench-http.sh: for each
workload and cluster size, the median over the rounds of throughput and
p99, every round's throughput, and the ratio of the median throughput to
the one-node cluster's.

    cluster.py [--markdown] RESULTS_DIR
               (reads RESULTS_DIR/cluster-<workload>-n<nodes>-<round>.json)
"""
import statistics
import sys

from reports import load_rounds, print_table, table_args

WORKLOAD_NAMES = {"write": "checkin writes", "read": "current-location reads"}


def main():
    markdown, results = table_args(__doc__)
    runs = load_rounds(results, r"cluster-(\w+)-n(\d+)-(?P<round>\d+)\.json", lambda m: (m.group(1), int(m.group(2))))
    if not runs:
        sys.exit(f"no cluster reports in {results}")
    head = ["workload", "nodes", "rounds", "ok/s", "p99 ms", "ok/s of each round", "errors", "x one node"]
    rows = []
    for (w, k) in sorted(runs, key=lambda x: (x[0] != "write", x[1])):
        reps = runs[(w, k)]
        ok = statistics.median(r["ok_rps"] for r in reps)
        one = runs.get((w, 1))
        base = statistics.median(r["ok_rps"] for r in one) if one else 0
        rows.append([WORKLOAD_NAMES.get(w, w), str(k), str(len(reps)), f"{ok:.0f}",
                     f"{statistics.median(r['latency']['p99_ms'] for r in reps):.2f}",
                     " / ".join(f"{r['ok_rps']:.0f}" for r in reps), str(sum(r["errors"] for r in reps)),
                     f"{ok / base:.2f}" if base else "-"])
    print_table(head, rows, markdown)


if __name__ == "__main__":
    main()
