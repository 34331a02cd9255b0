"""Shared by the bench-http.sh scripts: reading checkin-load's JSON reports
from a results directory."""
import json
import os
import re


def load_reports(results, pattern):
    """Yields (match, report) for every file in results whose name fully
    matches the regular expression pattern and holds a JSON report; files of
    failed runs (missing or unreadable) are skipped."""
    for name in sorted(os.listdir(results)):
        m = re.fullmatch(pattern, name)
        if not m:
            continue
        try:
            with open(os.path.join(results, name)) as f:
                yield m, json.load(f)
        except (OSError, ValueError):
            continue  # a failed run: no report
