"""Shared by the bench-http.sh scripts: reading checkin-load's JSON reports
from a results directory."""
import json
import os
import re
import sys


def load_reports(results, pattern):
    """Yields (match, report) for every file in results whose name fully
    matches the regular expression pattern and holds a JSON report; files of
    failed runs (unreadable, or not JSON) are skipped, each named on stderr,
    since the medians then stand on fewer rounds."""
    for name in sorted(os.listdir(results)):
        m = re.fullmatch(pattern, name)
        if not m:
            continue
        try:
            with open(os.path.join(results, name)) as f:
                yield m, json.load(f)
        except (OSError, ValueError) as e:
            print(f"skipped {name}: no report ({e}); the medians stand on the other rounds", file=sys.stderr)


def load_rounds(results, pattern, key):
    """Groups the reports of load_reports by key(match), each group's reports
    in round order: {key: [report, ...]}. The pattern's group named "round"
    holds the round; a report whose name has none is round 1."""
    runs = {}
    for m, rep in load_reports(results, pattern):
        runs.setdefault(key(m), []).append((int(m.group("round") or 1), rep))
    return {k: [rep for _, rep in sorted(v, key=lambda x: x[0])] for k, v in runs.items()}


def print_table(head, rows, markdown, left=1):
    """Prints rows under head: as a Markdown table, or as aligned text. The
    first `left` columns are labels (left-aligned), the rest numbers."""
    if markdown:
        print("| " + " | ".join(head) + " |")
        print("|" + "|".join("---" if i < left else "---:" for i in range(len(head))) + "|")
        for row in rows:
            print("| " + " | ".join(row) + " |")
        return
    widths = [max(len(x) for x in col) for col in zip(head, *rows)]
    for row in [head] + rows:
        print("  ".join(x.ljust(w) if i < left else x.rjust(w) for i, (x, w) in enumerate(zip(row, widths))))


def table_args(doc):
    """Parses the command line of a table script, `[--markdown] RESULTS_DIR`:
    returns (markdown, results dir); exits with doc when it is not that."""
    args = sys.argv[1:]
    rest = [a for a in args if a != "--markdown"]
    if len(rest) != 1:
        sys.exit(doc)
    return "--markdown" in args, rest[0]
