"""One table from several `obliviate attack` folders: each recipe's levels under each attack, the share of
the unlearning gap that survives, forget quality against the attacked gold model where there is one, and
the seconds the unlearned model's attacks took.

    python benchmarks/attack_table.py npo=runs/attack_tofu_npo grad_diff=runs/attack_tofu_gd \\
        grad_diff+SAM=runs/attack_tofu_gd_sam [--metric tofu_forget01]

Prints a markdown table (one row per recipe and attack).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def load(folder: Path) -> dict:
    path = folder / "attacks.json"
    if not path.is_file():
        sys.exit(f"error: {path} does not exist: run `obliviate attack ... --out {folder}` first")
    return json.loads(path.read_text())


def unit_seconds(data: dict) -> dict[str, float]:
    """Seconds of each attack unit on the unlearned model (``"none"``, ``"relearn:forget:2e-05"``, ...)."""
    return {key.split(" / ")[0]: value for key, value in data.get("seconds", {}).items()
            if key.endswith(" / unlearned")}


def unit_of(row: dict) -> str:
    if row["attack"] == "relearn":
        return f"relearn:{row['text']}:{row['learning_rate']:g}"
    return row["attack"] if row["attack"] in ("none", "probes", "prompts") else f"{row['attack']}:{row['variant']}"


def rows(name: str, data: dict, metric: str | None) -> list[str]:
    seconds = unit_seconds(data)
    out = []
    for row in data["gap"]:
        if metric and row["metric"] != metric:
            continue
        levels = row["levels"]
        level = " / ".join(f"{levels[m]:.3f}" for m in ("unlearned", "base", "gold") if m in levels)
        share = row.get("share_vs_base")
        fq = row.get("forget_quality_vs_attacked_gold")
        s = seconds.get(unit_of(row))
        out.append(f"| {name} | {row['variant'] if row['attack'] != 'none' else 'none'} | {row['metric']} | {level} | "
                   f"{'' if share is None else f'{share:.2f}'} | {'' if fq is None else f'{fq:.3g}'} | "
                   f"{'' if s is None else f'{s:.0f}'} |")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recipes", nargs="+", metavar="NAME=ATTACK_FOLDER")
    parser.add_argument("--metric", help="only this metric's rows")
    args = parser.parse_args()
    print("| recipe | attack | metric | level (unlearned / base / gold) | gap share vs base | "
          "forget quality vs attacked gold | s (unlearned) |")
    print("|---|---|---|---|---|---|---|")
    for spec in args.recipes:
        name, sep, folder = spec.partition("=")
        if not sep or not name or not folder:
            sys.exit(f"error: {spec!r} is not NAME=ATTACK_FOLDER")
        for line in rows(name, load(Path(folder)), args.metric):
            print(line)


if __name__ == "__main__":
    main()
