#!/usr/bin/env python3
"""Summarises the rss phase of bench-http.sh: one line per replay pass
(acknowledged, lost, throughput, p99, RSS and active grains at its end) and
the node once idle, and plots rss.tsv.

    rss.py RESULTS_DIR   (reads rss.tsv and rss-pass<N>.json; writes rss.png
                          when matplotlib is available or installable)
"""
import csv
import json
import os
import sys


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    results = sys.argv[1]
    with open(os.path.join(results, "rss.tsv")) as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    samples = [r for r in rows if r["rss_mib"]]
    if not samples:
        sys.exit("rss.py: no samples in rss.tsv")

    def last_of(pass_name):
        xs = [r for r in samples if r["pass"] == pass_name]
        return xs[-1] if xs else None

    print("| pass | users seen | acknowledged | lost | checkins/s | p99 ms | RSS MiB at end | live heap MiB at end | active grains (max in pass) |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    p, users = 1, 0
    while os.path.exists(os.path.join(results, f"rss-pass{p}.json")):
        with open(os.path.join(results, f"rss-pass{p}.json")) as f:
            rep = json.load(f)
        v = rep.get("verify") or {}
        users += (rep.get("setup") or {}).get("users", 0)
        end = last_of(str(p))
        peak = max((int(r["grains_active"]) for r in samples if r["pass"] == str(p)), default=0)
        print(f"| {p} | {users} | {v.get('acknowledged', rep.get('ok', 0))} | {v.get('lost', 'n/a')} | "
              f"{rep['ok_rps']:.0f} | {rep['latency']['p99_ms']:.1f} | "
              f"{end['rss_mib'] if end else 'n/a'} | {end['heap_live_mib'] if end else 'n/a'} | {peak} |")
        p += 1
    idle = last_of("idle")
    if idle:
        print(f"| idle | {users} | | | | | {idle['rss_mib']} | {idle['heap_live_mib']} | {idle['grains_active']} |")

    try:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from plot import matplotlib_pyplot
        plt = matplotlib_pyplot()
    except Exception as e:  # the table above is the result; the plot is a bonus
        print(f"rss.py: no plot ({e})", file=sys.stderr)
        return
    t = [float(r["seconds"]) for r in samples]
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.plot(t, [float(r["rss_mib"]) for r in samples], label="RSS (MiB)")
    ax.plot(t, [float(r["heap_inuse_mib"]) for r in samples], label="Go heap in use (MiB)")
    ax.plot(t, [float(r["heap_live_mib"]) for r in samples], label="Go heap live after last GC (MiB)")
    ax.set_xlabel("seconds")
    ax.set_ylabel("MiB")
    ax2 = ax.twinx()
    ax2.plot(t, [int(r["grains_active"]) for r in samples], color="gray", linestyle=":", label="active grains")
    ax2.set_ylabel("active grains")
    lines = ax.get_lines() + ax2.get_lines()
    ax.legend(lines, [l.get_label() for l in lines], loc="upper left", fontsize=8)
    ax.set_title("Replay passes with new users each pass: memory follows the active set")
    fig.tight_layout()
    out = os.path.join(results, "rss.png")
    fig.savefig(out, dpi=100)
    print(f"rss.py: wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
