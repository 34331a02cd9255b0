#!/usr/bin/env python3
"""Prints the read-tail table from the tail phase of bench-http.sh: for each
scenario and offered rate, the median over the rounds of throughput, p50,
p99 and p99.9, every round's p99, and how many rounds kept p99 within the
limit (5 ms unless --limit-ms says otherwise).

    tail.py [--markdown] [--limit-ms=5] RESULTS_DIR
            (reads RESULTS_DIR/tail-read-<scenario>-r<rate>-<round>.json)
"""
import statistics
import sys

from reports import load_rounds, print_table

ORDER = {"bare": 0, "checkin": 1}


def load(results):
    return load_rounds(results, r"tail-read-([\w-]+)-r(\d+)-(?P<round>\d+)\.json", lambda m: (m.group(1), int(m.group(2))))


def main():
    args = sys.argv[1:]
    markdown = "--markdown" in args
    limit = 5.0
    rest = []
    for a in args:
        if a.startswith("--limit-ms="):
            limit = float(a.split("=", 1)[1])
        elif a != "--markdown":
            rest.append(a)
    if len(rest) != 1:
        sys.exit(__doc__)
    runs = load(rest[0])
    if not runs:
        sys.exit(f"no tail reports in {rest[0]}")
    head = ["scenario", "offered/s", "rounds", "ok/s", "p50 ms", "p99 ms", "p99.9 ms", "p99 of each round",
            f"rounds p99 <= {limit:g} ms"]
    rows = []
    for (s, r) in sorted(runs, key=lambda k: (k[1], ORDER.get(k[0], 9), k[0])):
        reps = runs[(s, r)]
        med = lambda f: statistics.median(f(x) for x in reps)
        p99s = [x["latency"]["p99_ms"] for x in reps]
        rows.append([s, str(r), str(len(reps)), f"{med(lambda x: x['ok_rps']):.0f}",
                     f"{med(lambda x: x['latency']['p50_ms']):.2f}", f"{statistics.median(p99s):.2f}",
                     f"{med(lambda x: x['latency']['p99_9_ms']):.2f}", " / ".join(f"{p:.1f}" for p in p99s),
                     f"{sum(p <= limit for p in p99s)}/{len(p99s)}"])
    print_table(head, rows, markdown, left=1)


if __name__ == "__main__":
    main()
