"""Models side by side on both halves of the Harry Potter dev evaluation (tune / held-out).

    PYTHONPATH=src python benchmarks/whp_dev.py --model base=smollm2-135m --model strong=runs/hp_strong/model \\
        [--measures fact_cloze,name_mass,...] [--data-dir ../shared/data] [--out FILE.json]

The first model is the reference: every other column shows its change in % of it. Runs the split
metrics of the built-in harry_potter suite (obliviate.evaluation.halves) except the sampled
familiarity (four samples per prompt; the greedy one says the same), with the metric cache (a
model already scored is not scored again). Settings may be chosen on the tune columns only; the
held-out columns are the result. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FORGET = ("fact_cloze", "name_mass", "completion_familiarity", "familiarity_greedy")
RETAIN = ("neighbour_cloze", "control_cloze", "neighbours_probability", "neighbours_familiarity", "general_perplexity")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", required=True, metavar="NAME=SPEC",
                        help="a model to score (repeatable; the first is the reference)")
    parser.add_argument("--data-dir",
                        default=os.environ.get("OBLIVIATE_DATA_DIR") or str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--measures", default=",".join(FORGET + RETAIN),
                        help="comma-separated measures (metric names without _tune/_heldout)")
    parser.add_argument("--halves", default="tune,heldout", choices=("tune,heldout", "tune"),
                        help="tune only while choosing settings (the held-out half is then not computed)")
    parser.add_argument("--out", help="also write every model's values (JSON) here")
    return parser


def parse_models(items: list[str]) -> list[tuple[str, str]]:
    models = []
    for item in items:
        name, sep, spec = item.partition("=")
        if not sep or not name or not spec:
            sys.exit(f"error: --model {item!r}: write NAME=SPEC, e.g. base=smollm2-135m")
        models.append((name, spec))
    return models


def score(spec: str, suite, names: list[str]) -> dict:
    from obliviate.evaluation.suite import run_suite
    from obliviate.models import load_model

    loaded = load_model(spec)
    evaluation = run_suite(loaded.model, loaded.tokenizer, suite, loaded.weights_hash, model_spec=spec,
                           progress=False, only=names)
    return {n: evaluation["metrics"][n]["value"] for n in names}


def change(value: float, ref: float) -> str:
    return f" ({100 * (value - ref) / ref:+.0f}%)" if ref else ""


def render(models: list[str], values: dict, measures: list[str], halves=("tune", "heldout")) -> str:
    label = {"tune": "tune", "heldout": "held-out"}
    head = ["measure"] + [f"{m} {label[h]}" for m in models for h in halves]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    ref = models[0]
    for measure in measures:
        cells = [measure]
        for m in models:
            for half in halves:
                v, r = values[m][f"{measure}_{half}"], values[ref][f"{measure}_{half}"]
                cells.append(f"{v:.4f}" + ("" if m == ref else change(v, r)))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    args = build_parser().parse_args()
    models = parse_models(args.model)
    measures = [m.strip() for m in args.measures.split(",") if m.strip()]
    import torch

    from obliviate.evaluation.halves import half_metrics
    from obliviate.evaluation.suite import load_suite

    suite = load_suite("harry_potter", data_dir=args.data_dir)
    split = set(half_metrics(suite, "tune")) | set(half_metrics(suite, "heldout"))
    halves = tuple(args.halves.split(","))
    names = [f"{m}_{h}" for m in measures for h in halves]
    unknown = [n for n in names if n not in split]
    if unknown:
        sys.exit(f"error: not a split measure of the harry_potter suite: {unknown[0]}")
    torch.manual_seed(0)
    values = {name: score(spec, suite, names) for name, spec in models}
    table = render([n for n, _ in models], values, measures, halves)
    print(table)
    if args.out:
        Path(args.out).write_text(json.dumps({"models": dict(models), "values": values}, indent=1))


if __name__ == "__main__":
    main()
