"""Held-out forgetting vs the amount and diversity of synthesized target text (issue 13, item 2).

For each source set (e.g. ``anchors``, ``anchors+summaries+trivia``) one corpus is synthesized from
SmolLM2 with `obliviate synthesize --token-budget` logic, growing through the budgets (each smaller
corpus is the prefix of the next: the synthesis is resumed to the next budget). WHP (the paper's
GPT-4 dictionary, the settings of benchmarks/whp_harry_potter.py, target = the synthesized corpus
only) runs on each corpus, and the unlearned model is scored on the *held-out* half of the built-in
``harry_potter`` suite (obliviate.evaluation.halves). Prints one row per corpus: tokens, texts,
distinct terms reached, distinct word 3-grams, then held-out forgetting and retain measures,
next to the base model's row.

    PYTHONPATH=src OMP_NUM_THREADS=2 python benchmarks/coverage.py --data-dir ../shared/data \\
        --budgets 5000,20000,80000 --sources anchors,anchors+summaries+trivia --out runs/bench_coverage

    PYTHONPATH=src python benchmarks/coverage.py --quick --data-dir ../shared/data   # minutes: 1 tiny budget

Writes OUT/coverage.json and OUT/table.md; appends the table (with this command) to
benchmarks/RESULTS.md unless --quick or --results ''.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("anchors", "summaries", "trivia")
FORGET = ("fact_cloze", "name_mass", "familiarity_greedy", "completion_familiarity")
RETAIN = ("general_perplexity", "neighbours_probability", "neighbour_cloze", "control_cloze")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir",
                        default=os.environ.get("OBLIVIATE_DATA_DIR") or str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--out", default="runs/bench_coverage", help="folder of corpora, WHP runs and results")
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--budgets", default="5000,20000,80000", help="comma-separated token budgets, ascending")
    parser.add_argument("--sources", default="anchors,anchors+summaries+trivia",
                        help="comma-separated source sets, each a '+'-joined subset of anchors, summaries, trivia")
    parser.add_argument("--samples-per-seed", type=int, default=2)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--temperature", type=float, default=0.9)
    parser.add_argument("--top-p", type=float, default=0.95)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--measures", help="comma-separated held-out measures (names without _heldout); "
                                           f"default: {','.join(FORGET + RETAIN)}")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: budget 1500, source anchors, one WHP epoch, fact_cloze + name_mass + "
                             "general_perplexity (minutes, not a result)")
    parser.add_argument("--set", action="append", default=[], help="WHP config overrides KEY=VALUE")
    parser.add_argument("--results", default=str(ROOT / "benchmarks" / "RESULTS.md"),
                        help="append the table here ('' to skip; never with --quick)")
    return parser


def parse_plan(args) -> tuple[list[int], list[tuple[str, ...]], list[str]]:
    """Budgets, source sets and measures, after --quick; refuses malformed lists in one line."""
    if args.quick:
        args.budgets, args.sources = "1500", "anchors"
        args.measures = args.measures or "fact_cloze,name_mass,general_perplexity"
        args.set = ["reinforce.train.epochs=1", "finetune.epochs=1", *args.set]
    try:
        budgets = [int(b) for b in args.budgets.split(",")]
    except ValueError:
        sys.exit(f"error: --budgets must be comma-separated whole numbers, got {args.budgets!r}")
    if budgets != sorted(set(budgets)) or budgets[0] < 1:
        sys.exit(f"error: --budgets must be positive and ascending, got {args.budgets!r}")
    source_sets = [tuple(s.split("+")) for s in args.sources.split(",")]
    for sources in source_sets:
        if not sources or set(sources) - set(SOURCES) or ("summaries" in sources and "anchors" not in sources):
            sys.exit(f"error: source set {'+'.join(sources)!r}: use anchors, summaries (with anchors) and trivia")
    measures = args.measures.split(",") if args.measures else list(FORGET + RETAIN)
    return budgets, source_sets, measures


def seeds_for(sources, hp: Path, seed: int):
    from obliviate.target_seeds import anchor_seeds, interleave, read_summaries, summary_seeds, trivia_seeds
    from obliviate.whp.anchors import load_anchored_terms

    terms = load_anchored_terms(hp / "anchored_terms_gpt4_blocks.json")
    seeds = anchor_seeds(terms) if "anchors" in sources else []
    if "summaries" in sources:
        seeds += summary_seeds(read_summaries(hp / "wikipedia_summaries.txt"), terms)
    if "trivia" in sources:
        seeds += trivia_seeds(hp / "trivia_train_1000.jsonl")  # tune half only
    return interleave(seeds, seed)


def diversity(corpus: Path) -> dict:
    """Texts, distinct terms reached and the share of distinct word 3-grams of a corpus."""
    from obliviate.dedup import shingles

    records = [json.loads(line) for line in corpus.read_text(encoding="utf-8").splitlines()]
    grams = [g for r in records for g in shingles(r["text"], 3)]
    return {"texts": len(records), "tokens": sum(r["tokens"] for r in records),
            "terms": len({r["term"] for r in records if r.get("term")}),
            "distinct_3grams": round(len(set(grams)) / max(len(grams), 1), 3)}


def whp_settings(args, hp: Path, corpus: Path) -> dict:
    """benchmarks/whp_harry_potter.py's settings with the synthesized corpus as the whole target."""
    from obliviate.config import apply_overrides

    return apply_overrides({
        "model": args.model,
        "anchors": str(hp / "anchored_terms_gpt4_blocks.json"),
        "target": {"sources": [str(corpus)], "context_length": 256},
        "reinforce": {"train": {"epochs": 2, "learning_rate": 5e-5, "batch_size": 4, "warmup_ratio": 0.1}},
        "finetune": {"epochs": 2, "learning_rate": 2e-5, "batch_size": 4, "warmup_ratio": 0.1},
    }, args.set)


def heldout_scores(model_spec: str, suite, measures: list[str]) -> dict:
    from obliviate.evaluation.suite import run_suite
    from obliviate.models import load_model

    loaded = load_model(model_spec)
    names = [f"{m}_heldout" for m in measures]
    evaluation = run_suite(loaded.model, loaded.tokenizer, suite, loaded.weights_hash, model_spec=model_spec,
                           progress=False, only=names)
    return {m: evaluation["metrics"][f"{m}_heldout"]["value"] for m in measures}


def main() -> None:
    args = build_parser().parse_args()
    budgets, source_sets, measures = parse_plan(args)
    import torch

    from obliviate.config import from_dict
    from obliviate.evaluation.halves import half_metrics
    from obliviate.evaluation.suite import load_suite
    from obliviate.models import load_model
    from obliviate.synthesize_budget import stats_path, synthesize_to_budget
    from obliviate.whp.pipeline import WHPConfig, WHPRun

    torch.manual_seed(0)
    hp, out = Path(args.data_dir) / "targets" / "harry_potter", Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    suite = load_suite("harry_potter", data_dir=args.data_dir)
    unknown = [m for m in measures if f"{m}_heldout" not in half_metrics(suite, "heldout")]
    if unknown:
        sys.exit(f"error: not a held-out measure of the harry_potter suite: {', '.join(unknown)}")

    rows = [{"corpus": "base model", "sources": "-", "budget": 0, **heldout_scores(args.model, suite, measures)}]
    base = load_model(args.model)
    for sources in source_sets:
        name = "+".join(sources)
        growing = out / f"{name}.jsonl"  # resumed from budget to budget
        seeds = seeds_for(sources, hp, args.seed)
        for budget in budgets:
            start = time.perf_counter()
            synthesize_to_budget(base.model, base.tokenizer, seeds, growing, budget,
                                 samples_per_seed=args.samples_per_seed, max_new_tokens=args.max_new_tokens,
                                 temperature=args.temperature, top_p=args.top_p, batch_size=args.batch_size,
                                 seed=args.seed, model_name=args.model)
            corpus = out / f"{name}_{budget}.jsonl"
            shutil.copyfile(growing, corpus)
            shutil.copyfile(stats_path(growing), stats_path(corpus))
            synth_s = time.perf_counter() - start
            run_folder = out / f"whp_{name}_{budget}"
            run = WHPRun(from_dict(WHPConfig, whp_settings(args, hp, corpus)), run_folder)
            run.run(stages=("reinforce", "labels", "finetune"))
            row = {"corpus": corpus.name, "sources": name, "budget": budget, **diversity(corpus),
                   "synthesize_s": round(synth_s), **heldout_scores(str(run_folder / "model"), suite, measures)}
            rows.append(row)
            print(json.dumps(row), flush=True)

    table = render(rows, measures)
    (out / "coverage.json").write_text(json.dumps({"argv": sys.argv[1:], "rows": rows}, indent=2))
    (out / "table.md").write_text(table)
    print(table)
    if args.results and not args.quick:
        command = "PYTHONPATH=src python benchmarks/coverage.py " + " ".join(sys.argv[1:])
        with open(args.results, "a", encoding="utf-8") as handle:
            handle.write(f"\n## Held-out forgetting vs synthesized target text (coverage)\n\nCommand: `{command}`  \n"
                         f"Measured {time.strftime('%Y-%m-%d')}; held-out half of the harry_potter suite; "
                         "change in % of the base model.\n\n" + table)


def render(rows: list[dict], measures: list[str]) -> str:
    """A markdown table: amount and diversity of text, then each held-out measure (value, change vs base)."""
    base = rows[0]
    head = "| sources | budget | tokens | texts | terms | distinct 3-grams | " + " | ".join(measures) + " |"
    lines = [head, "|" + "---|" * (6 + len(measures))]
    for row in rows:
        cells = [row["sources"], str(row["budget"]), str(row.get("tokens", "-")), str(row.get("texts", "-")),
                 str(row.get("terms", "-")), str(row.get("distinct_3grams", "-"))]
        for m in measures:
            value, ref = row[m], base[m]
            change = f" ({100 * (value - ref) / ref:+.0f}%)" if row is not base and ref else ""
            cells.append(f"{value:.4f}{change}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
