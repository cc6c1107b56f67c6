"""Turns `qkern bench ... --json` output into the Markdown tables of docs/benchmarks.md.

    qkern bench conv3x3 --shapes benchmarks/shapes/conv3x3.txt --json > conv.json
    python tools/bench_tables.py conv.json

Each cell is "median (best round)" in GOP/s; WRONG marks a peer whose output failed its check, "float"
a baseline that is never the best peer; the last columns are qkern over the best correct peer (medians)
and qkern's share of the VNNI peak of the threads used.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

VNNI_PEAK_GOPS_PER_CORE = 458.0


def shape_label(row: dict) -> str:
    if "m" in row:
        return f"{row['m']} x {row['n']} x {row['k']}"
    s = row["shape"]
    if row["op"] == "conv3x3":
        n, h, w, c, o, stride, _ = s
        return f"{n} {h}x{w} {c}->{o} s{stride}"
    n, h, w, c, o = s
    return f"{n} {h}x{w} {c}->{o}"


def cell(row: dict, name: str) -> str:
    if name not in row["gops"]:
        return "-"
    text = f"{row['gops'][name]:.0f} ({row['best_gops'][name]:.0f})"
    if not row["correct"].get(name, True):
        text += " WRONG"
    elif name in row.get("baselines", []):
        text += " float"
    return text


def table(rows: list[dict]) -> str:
    peers = sorted({p for r in rows for p in r["gops"] if p != "qkern"})
    live = any(r.get("live_peak_gops_per_core") for r in rows)
    header = ["shape", "qkern", *peers, "qkern / best correct peer", "% of VNNI peak"]
    header += ["% of live peak (probe GOP/s/core)"] if live else []
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        ratio = r.get("ratio_to_best_peer")
        peak = 100.0 * r["gops"]["qkern"] / (VNNI_PEAK_GOPS_PER_CORE * r["threads"])
        cells = [shape_label(r), cell(r, "qkern"), *(cell(r, p) for p in peers)]
        cells += [f"{ratio:.2f}x" if ratio else "n/a", f"{peak:.0f}%"]
        if live:
            probe = r.get("live_peak_gops_per_core")
            cells.append(f"{r['pct_of_live_peak']:.0f}% ({probe:.0f})" if probe else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path)
    args = parser.parse_args()
    for f in args.files:
        text = f.read_text()
        # An editable install rebuilds on import and may print build lines first: start at the JSON.
        lines = text.splitlines()
        start = next((i for i, ln in enumerate(lines) if ln.strip() == "[" or ln.startswith("[{")), 0)
        rows = json.loads("\n".join(lines[start:]))
        print(f"{f.name}: threads={rows[0]['threads']} isa={rows[0]['isa']}\n")
        print(table(rows) + "\n")


if __name__ == "__main__":
    main()
