"""Base-model numbers of the Harry Potter dev evaluation, per half (tune / held-out).

    PYTHONPATH=src python benchmarks/hp_dev_baseline.py [--model smollm2-135m] [--data-dir ../shared/data]
        [--group forget|retain|all] [--measures fact_cloze,name_mass,...] [--out FILE.json]

Runs the split metrics of the built-in harry_potter suite (obliviate.evaluation.halves) except the
sampled familiarity, without the metric cache, and prints one row per measure with both halves.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SKIPPED = ("familiarity_sampled",)  # four samples per prompt: slow, and the greedy one says the same


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--data-dir",
                        default=os.environ.get("OBLIVIATE_DATA_DIR") or str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--group", default="all", choices=["forget", "retain", "all"],
                        help="forget: the target's measures; retain: neighbours, control facts, general perplexity")
    parser.add_argument("--measures", help="comma-separated measures (metric names without _tune/_heldout); "
                        "default: every split measure of the group")
    parser.add_argument("--out", help="also write the evaluation (JSON) here")
    args = parser.parse_args()

    import torch

    from obliviate.evaluation.halves import half_metrics
    from obliviate.evaluation.suite import load_suite, run_suite
    from obliviate.models import load_model

    suite = load_suite("harry_potter", data_dir=args.data_dir)
    groups = {s.name: s.group for s in suite.metrics}
    measures = set(args.measures.split(",")) if args.measures else None
    wanted = lambda name: (not name.startswith(SKIPPED)  # noqa: E731
                           and (args.group == "all" or (groups[name] == "forget") == (args.group == "forget"))
                           and (measures is None or name.rsplit("_", 1)[0] in measures))
    tune = [n for n in half_metrics(suite, "tune") if wanted(n)]
    heldout = [n for n in half_metrics(suite, "heldout") if wanted(n)]
    torch.set_num_threads(1)  # a shared 2-core machine: more threads only thrash
    loaded = load_model(args.model)
    evaluation = run_suite(loaded.model, loaded.tokenizer, suite, loaded.weights_hash, model_spec=args.model,
                           use_cache=False, progress=False, only=tune + heldout)
    metrics = evaluation["metrics"]
    print(f"model {args.model}, suite harry_potter ({suite.sha256[:12]}), {evaluation['seconds']:.0f} s")
    print("| measure | group | tune | held-out | n (tune / held-out) |\n|---|---|---|---|---|")
    for t, h in zip(tune, heldout):
        a, b = metrics[t], metrics[h]
        name = t.removesuffix("_tune")
        print(f"| {name} | {a['group']} | {a['value']:.4f} | {b['value']:.4f} | {a['n']} / {b['n']} |")
        if "greedy_share" in a["details"]:
            print(f"| {name} (greedy share) | {a['group']} | {a['details']['greedy_share']:.3f} | "
                  f"{b['details']['greedy_share']:.3f} | |")
    if args.out:
        Path(args.out).write_text(json.dumps(evaluation, indent=1, default=str))


if __name__ == "__main__":
    sys.exit(main())
