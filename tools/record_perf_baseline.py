"""Records this CPU's perf smoke figures in benchmarks/perf_baseline.json (run on an idle machine).

    python tools/record_perf_baseline.py [--rounds N]

Takes the median of five runs of `qkern.tools.smoke.smoke_figures` per figure, so that one lucky or
unlucky run does not set the floor; other CPUs' entries are kept.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from qkern.tools.smoke import cpu_signature, smoke_figures

BASELINE = Path(__file__).resolve().parents[1] / "benchmarks" / "perf_baseline.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    runs = [smoke_figures(args.rounds) for _ in range(5)]
    figures = {key: round(statistics.median(r[key] for r in runs), 1) for key in runs[0]}
    table = json.loads(BASELINE.read_text()) if BASELINE.exists() else {}
    table[cpu_signature()] = figures
    BASELINE.write_text(json.dumps(table, indent=2, sort_keys=True) + "\n")
    print(f"{cpu_signature()}: {figures}")


if __name__ == "__main__":
    main()
