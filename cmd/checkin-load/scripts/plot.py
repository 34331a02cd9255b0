#!/usr/bin/env python3
"""Plots the open-model rate sweep of bench-http.sh: achieved throughput and
p99 latency against offered load, one line per scenario, one row per
workload.

    plot.py RESULTS_DIR [OUT.png]   (reads RESULTS_DIR/open-<workload>-<scenario>-r<rate>.json;
                                     writes RESULTS_DIR/sweep.png by default)

Needs matplotlib; when it is missing, the script installs it with pip first.
"""
import importlib
import os
import subprocess
import sys

from reports import load_reports

ORDER = {"bare": 0, "naive": 1, "checkin": 2, "naive-scylla": 3, "scylla": 4}
LABELS = {"bare": "bare Fiber (ceiling)", "naive": "naive (sync write per request)",
          "checkin": "checkin, embedded store", "scylla": "checkin, Scylla store"}
WORKLOAD_NAMES = {"write": "checkin writes", "read": "current-location reads"}


def matplotlib_pyplot():
    try:
        importlib.import_module("matplotlib")
    except ImportError:
        print("plot.py: matplotlib is missing; installing it with pip", file=sys.stderr)
        subprocess.check_call([sys.executable, "-m", "pip", "install", "--quiet", "matplotlib"])
        importlib.invalidate_caches()
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def load(results):
    series = {}  # workload -> scenario -> [(offered, ok_rps, p99_ms, dropped)]
    for m, rep in load_reports(results, r"open-(\w+)-([\w-]+)-r(\d+)\.json"):
        w, s, rate = m.group(1), m.group(2), int(m.group(3))
        series.setdefault(w, {}).setdefault(s, []).append(
            (rate, rep["ok_rps"], rep["latency"]["p99_ms"], rep.get("dropped", 0)))
    for w in series:
        for s in series[w]:
            series[w][s].sort()
    return series


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    results = sys.argv[1]
    out = sys.argv[2] if len(sys.argv) == 3 else os.path.join(results, "sweep.png")
    series = load(results)
    if not series:
        sys.exit(f"no open-model reports in {results}")
    plt = matplotlib_pyplot()
    from matplotlib import ticker
    workloads = sorted(series, key=lambda w: (w != "write", w))
    fig, axes = plt.subplots(len(workloads), 2, figsize=(12, 4.5 * len(workloads)), squeeze=False)
    machine = ""
    mpath = os.path.join(results, "machine.txt")
    if os.path.exists(mpath):
        with open(mpath) as f:
            lines = dict(line.split(":", 1) for line in f if ":" in line)
        machine = f"{lines.get('cpu', '').strip()}; {lines.get('pinning', '').strip()}"
    for row, w in enumerate(workloads):
        tp, lat = axes[row]
        top = 0
        for s in sorted(series[w], key=lambda s: (ORDER.get(s, 9), s)):
            pts = series[w][s]
            offered = [p[0] for p in pts]
            top = max(top, max(offered))
            tp.plot(offered, [p[1] for p in pts], marker="o", label=LABELS.get(s, s))
            lat.plot(offered, [max(p[2], 0.001) for p in pts], marker="o", label=LABELS.get(s, s))
        low = min(p[0] for pts in series[w].values() for p in pts)
        tp.plot([low, top], [low, top], linestyle=":", color="grey", label="offered = achieved")
        if top >= 8 * low:  # a geometric sweep: log x, so every rate gets room
            for ax in (tp, lat):
                ax.set_xscale("log")
                # compact labels (64k, 80k): close rates stay readable
                ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v / 1000:g}k" if v >= 1000 else f"{v:g}"))
                ax.xaxis.set_minor_formatter(ticker.NullFormatter())
                ax.set_xticks(sorted({p[0] for pts in series[w].values() for p in pts}))
            tp.set_yscale("log")
            tp.yaxis.set_major_formatter(ticker.ScalarFormatter())
        tp.set_title(f"{WORKLOAD_NAMES.get(w, w)}: throughput")
        tp.set_xlabel("offered load (requests/s, open model)")
        tp.set_ylabel("achieved (2xx answers/s)")
        tp.grid(True, alpha=0.3)
        tp.legend(fontsize=8)
        lat.set_title(f"{WORKLOAD_NAMES.get(w, w)}: p99 latency (from intended start)")
        lat.set_xlabel("offered load (requests/s, open model)")
        lat.set_ylabel("p99 (ms, log scale)")
        lat.set_yscale("log")
        lat.grid(True, which="both", alpha=0.3)
        lat.legend(fontsize=8)
    if machine:
        fig.suptitle(machine, fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print(f"plot.py: wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
