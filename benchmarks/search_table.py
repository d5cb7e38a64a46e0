"""The trials of an `obliviate search` folder as a markdown table (for benchmarks/RESULTS.md).

    PYTHONPATH=src python benchmarks/search_table.py SEARCH_FOLDER [--metrics M1,M2,...]

One row per trial: state, searched settings, the tune-half objective, feasibility, each metric's
change in % of the base model (base.json), and the trial's seconds. Tune half only: a search
never computes the held-out half (final.json, written by --final, holds it for the best trial).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def fmt(value) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def render(trials: list[dict], base: dict, metrics: list[str]) -> str:
    settings = list(dict.fromkeys(k for t in trials for k in t["settings"]))
    head = ["trial", "state", *settings, "objective", "feasible", *metrics, "s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for t in trials:
        cells = [str(t["trial"]), t["state"], *(fmt(t["settings"].get(k, "-")) for k in settings),
                 f"{t['objective']:+.3f}" if t.get("objective") is not None else "-", fmt(t.get("feasible", "-"))]
        for m in metrics:
            value, ref = t.get("tune_metrics", {}).get(m), base.get(m, {}).get("value")
            cells.append(f"{100 * (value - ref) / ref:+.0f}%" if value is not None and ref else "-")
        cells.append(f"{t['seconds']:.0f}" if t.get("seconds") else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("search", type=Path)
    parser.add_argument("--metrics", help="comma-separated tune metrics (default: every one the trials hold)")
    args = parser.parse_args()
    path = args.search / "trials.jsonl"
    if not path.is_file():
        sys.exit(f"error: {path} not found: give an `obliviate search` folder")
    trials = [json.loads(line) for line in path.read_text().splitlines()]
    base = json.loads((args.search / "base.json").read_text())
    metrics = args.metrics.split(",") if args.metrics else list(dict.fromkeys(m for t in trials
                                                                              for m in t.get("tune_metrics", {})))
    print(render(trials, base, metrics))


if __name__ == "__main__":
    main()
