#!/usr/bin/env python3
"""Prints the table of ab.sh: for each build, the median over the rounds of
its throughput and of the server's user and system CPU per answer, the
ratio of its median throughput to the first build's, and every round's
throughput and CPU.

    ab.py RESULTS_DIR              (reads RESULTS_DIR/ab-<index>-<label>-<round>.json)
    ab.py --markdown RESULTS_DIR

Each report is checkin-load's JSON report with the field "server_cpu":
{"user_s": ..., "sys_s": ..., "window_s": ...}, the server's CPU over a
window of the measured run; CPU per answer is that CPU divided by the
answers the window held at the run's throughput.
"""
import statistics
import sys

from reports import load_rounds, print_table, table_args


def cpu_us(rep):
    """(user, system) CPU of the server per answer, in µs."""
    cpu = rep["server_cpu"]
    answers = rep["ok_rps"] * cpu["window_s"]
    if answers <= 0:
        return float("nan"), float("nan")
    return cpu["user_s"] / answers * 1e6, cpu["sys_s"] / answers * 1e6


def main():
    markdown, results = table_args(__doc__)
    runs = load_rounds(results, r"ab-(\d+)-(.+)-(?P<round>\d+)\.json", lambda m: (int(m.group(1)), m.group(2)))
    if not runs:
        sys.exit(f"no ab.sh reports in {results}")
    head = ["build", "rounds", "ok/s (median)", "vs first", "user µs", "sys µs", "ok/s of each round", "CPU µs of each round"]
    rows, first = [], None
    for key in sorted(runs):
        reps = runs[key]
        ok = statistics.median(r["ok_rps"] for r in reps)
        cpus = [cpu_us(r) for r in reps]
        user = statistics.median(u for u, _ in cpus)
        system = statistics.median(s for _, s in cpus)
        if first is None:
            first = ok
        rows.append([key[1], str(len(reps)), f"{ok:.0f}", f"{ok / first:.2f}x" if first else "-",
                     f"{user:.1f}", f"{system:.1f}",
                     " / ".join(f"{r['ok_rps']:.0f}" for r in reps),
                     " / ".join(f"{u + s:.1f}" for u, s in cpus)])
    print_table(head, rows, markdown, left=1)


if __name__ == "__main__":
    main()
