"""Toxicity unlearning on SmolLM2-135M: RMU, adaptive RMU, cosine RMU (meta-learned settings) and the
multi-layer probe-direction objective, at a matched number of optimizer steps.

Forget text: toxic texts of the shared toxicity sets (Wikipedia Talk, ToxiGen); retain text: their
non-toxic texts. Each model is evaluated on continuations of toxic and non-toxic RealToxicityPrompts
scored by obliviate's offline classifier (expected maximum toxicity, toxicity probability; its
held-out accuracy is reported), benign perplexity, WikiText-2 perplexity, and the held-out accuracy
of linear toxicity probes trained once on the base model (per layer, before and after).

    python benchmarks/toxicity_methods.py --data-dir ../shared/data --out runs/bench_toxicity

Appends its tables (with this command) to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from obliviate.config import from_dict
from obliviate.evaluation.suite import load_suite, run_suite
from obliviate.meta_search import MetaSearchConfig, run_meta_search
from obliviate.methods.probe_direction import spread_layers
from obliviate.models import load_model
from obliviate.toxicity.data import load_toxicity_texts, split
from obliviate.toxicity.probes import layer_features, probe_accuracy, save_probes, train_probes
from obliviate.unlearn import UnlearnConfig, UnlearnRun


def write_jsonl(texts, path: Path) -> str:
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
    return str(path)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--out", default="runs/bench_toxicity")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--per-class", type=int, default=300)
    parser.add_argument("--results", default=str(Path(__file__).parent / "RESULTS.md"))
    parser.add_argument("--model", default="smollm2-135m", help="base model (a tiny one for a dry run)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    return parser


def unlearn_settings(args, forget: str, retain: str, probes_dir, layers) -> dict[str, dict]:
    """Each method's label -> what its UnlearnConfig is built from (``from_dict(UnlearnConfig, ...)``)."""
    corpus = {"context_length": 128, "heldout_fraction": 0.1}
    train = {"max_steps": args.steps, "batch_size": 4, "learning_rate": 1e-3, "warmup_ratio": 0.1}
    common = {"model": args.model, "forget": {"sources": [forget], **corpus},
              "retain": {"sources": [retain], **corpus}, "train": train}
    runs = {
        "rmu": {"method": "rmu"},
        "adaptive_rmu": {"method": "adaptive_rmu"},
        "cosine_rmu (meta-learned)": {"method": "cosine_rmu"},
        "probe_direction": {"method": "probe_direction",
                            "method_settings": {"probes": str(probes_dir), "layers": layers, "alpha": 1.0}},
    }
    return {label: {**common, **settings} for label, settings in runs.items()}


def main() -> None:
    args = build_parser().parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    texts, labels = load_toxicity_texts(args.data_dir, max_per_class=args.per_class, seed=0)
    train_t, train_y, held_t, held_y = split(texts, labels, heldout_fraction=0.25, seed=0)
    forget = write_jsonl([t for t, y in zip(train_t, train_y) if y == 1], out / "forget_toxic.jsonl")
    retain = write_jsonl([t for t, y in zip(train_t, train_y) if y == 0], out / "retain_benign.jsonl")

    base = load_model(args.model)
    layers = spread_layers(base.model.config.num_hidden_layers)
    probes = train_probes(layer_features(base.model, base.tokenizer, train_t, layers), train_y)
    probes_dir = save_probes(probes, out / "probes", info={"layers": layers})
    suite = load_suite(Path(__file__).parent / "suites" / "toxicity.yaml", data_dir=args.data_dir)
    rows = {"base": evaluate(base, suite, probes, held_t, held_y, seconds=0.0)}
    del base

    for label, settings in unlearn_settings(args, forget, retain, probes_dir, layers).items():
        folder = out / label.split()[0]
        start = time.perf_counter()
        config = from_dict(UnlearnConfig, settings)
        if label.startswith("cosine_rmu"):
            search = MetaSearchConfig(trials=4, inner_steps=8, alphas=[10.0, 100.0],
                                      learning_rates=[1e-4, 1e-3], seed=0)
            result = run_meta_search(config, search, folder)
            extra = {"search_best": result["best"], "search_trials": len(result["trials"])}
        else:
            UnlearnRun(config, folder).run(("unlearn",))
            extra = {}
        seconds = time.perf_counter() - start
        loaded = load_model(str(folder / "model"))
        rows[label] = {**evaluate(loaded, suite, probes, held_t, held_y, seconds=round(seconds, 1)), **extra}
        del loaded
        print(f"{label}: {json.dumps(rows[label])}", file=sys.stderr, flush=True)
    (out / "results.json").write_text(json.dumps(rows, indent=2))
    write_table(rows, layers, args)


def evaluate(loaded, suite, probes, texts, labels, seconds) -> dict:
    evaluation = run_suite(loaded.model, loaded.tokenizer, suite, loaded.weights_hash, model_spec=loaded.spec,
                           progress=False)
    tox = evaluation["metrics"]["toxicity"]
    details = tox.get("details", {})
    return {
        "seconds": seconds,
        "expected_max_toxicity_toxic": details.get("toxic_prompts", {}).get("expected_max_toxicity"),
        "toxicity_probability_toxic": details.get("toxic_prompts", {}).get("toxicity_probability"),
        "expected_max_toxicity_nontoxic": details.get("nontoxic_prompts", {}).get("expected_max_toxicity"),
        "benign_perplexity": (details.get("benign_perplexity") or {}).get("perplexity"),
        "general_perplexity": evaluation["metrics"]["general_perplexity"].get("value"),
        "classifier_heldout_accuracy": (details.get("classifier") or {}).get("heldout_accuracy"),
        "probe_accuracy": {str(k): v for k, v in probe_accuracy(loaded.model, loaded.tokenizer, probes, texts,
                                                                  labels).items()},
    }


def fmt(value) -> str:
    return f"{value:.3f}" if isinstance(value, float) else "-"


def write_table(rows: dict, layers, args) -> None:
    acc = rows["base"].get("classifier_heldout_accuracy")
    lines = ["", "## Toxicity unlearning on SmolLM2-135M-Instruct (methods 6-9)", "",
             f"Command: `python benchmarks/toxicity_methods.py --data-dir {args.data_dir} --out {args.out} "
             f"--steps {args.steps} --model {args.model} --threads {torch.get_num_threads()}`  ",
             f"Measured {time.strftime('%Y-%m-%d')} on {torch.get_num_threads()} CPU threads; {args.steps} optimizer "
             f"steps per method (batch 4 x 128 tokens). Toxicity scored by obliviate's offline classifier "
             f"(held-out accuracy {fmt(acc)}), 30 toxic and 30 non-toxic RealToxicityPrompts, 3 samples of 20 "
             "tokens each. Probe accuracy: held-out accuracy of the base model's linear probes on each model's "
             "hidden states (0.5 = chance).", "",
             "| method | seconds | exp. max toxicity (toxic prompts) | toxicity prob. (toxic) | exp. max toxicity "
             "(non-toxic) | benign ppl | WikiText ppl | " + " | ".join(f"probe acc. L{l}" for l in layers) + " |",
             "|---" * (7 + len(layers)) + "|"]
    for label, r in rows.items():
        probes = [fmt(r["probe_accuracy"].get(str(l))) for l in layers]
        lines.append(f"| {label} | {r['seconds']} | {fmt(r['expected_max_toxicity_toxic'])} | "
                     f"{fmt(r['toxicity_probability_toxic'])} | {fmt(r['expected_max_toxicity_nontoxic'])} | "
                     f"{fmt(r['benign_perplexity'])} | {fmt(r['general_perplexity'])} | " + " | ".join(probes) + " |")
    if "cosine_rmu (meta-learned)" in rows:
        lines += ["", f"Meta-search chose {rows['cosine_rmu (meta-learned)'].get('search_best')} "
                  f"({rows['cosine_rmu (meta-learned)'].get('search_trials')} inner runs; see "
                  f"{args.out}/cosine_rmu/search.json)."]
    with open(args.results, "a", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
