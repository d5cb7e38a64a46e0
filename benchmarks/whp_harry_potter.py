"""WHP on the embedded SmolLM2-135M with the shared Harry Potter kit: before/after numbers and throughput.

Target = the first 80% of the Wikipedia-style summaries + text synthesized from the model; anchored
terms = the original paper's GPT-4 dictionary. Measures, before and after unlearning: the 20 dev
familiarity prompts, the built-in probe prompts, two-choice trivia accuracy (log-likelihood of the true
vs the false answer) on the shared trivia file, and perplexity on WikiText-2 (general text). Also stage
timings and tokens/s, each as a ratio to the raw forward (labels: two passes) or forward+backward
(training) throughput measured in the same run.

    python benchmarks/whp_harry_potter.py --data-dir ../shared/data --out runs/bench_whp_hp

Appends its results (with this command) to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _throughput import raw_forward_tokens_per_s, raw_train_tokens_per_s  # noqa: E402

from obliviate.config import from_dict  # noqa: E402
from obliviate.demo import resource  # noqa: E402
from obliviate.evaluation.qa import load_qa_file, qa_accuracy  # noqa: E402
from obliviate.models import load_model  # noqa: E402
from obliviate.synthesize import load_seed_prompts, synthesize_corpus, write_corpus  # noqa: E402
from obliviate.whp.pipeline import WHPConfig, WHPRun  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--out", default="runs/bench_whp_hp")
    parser.add_argument("--synthesize", type=int, default=48, help="synthesized texts added to the target")
    parser.add_argument("--trivia", type=int, default=1000, help="trivia questions scored")
    parser.add_argument("--results", default=str(Path(__file__).parent / "RESULTS.md"))
    parser.add_argument("--set", action="append", default=[], help="config overrides KEY=VALUE")
    return parser


def whp_settings(args, data: Path, corpus_dir: Path, synthesized: Path) -> dict:
    """What the run's WHPConfig is built from (``from_dict(WHPConfig, ...)``), --set overrides applied."""
    from obliviate.config import apply_overrides

    hp = data / "targets" / "harry_potter"
    return apply_overrides({
        "model": "smollm2-135m",
        "anchors": str(hp / "anchored_terms_gpt4_blocks.json"),
        "target": {"sources": [str(corpus_dir / "summaries_80.txt"), str(synthesized)], "context_length": 256},
        "reinforce": {"train": {"epochs": 2, "learning_rate": 5e-5, "batch_size": 4, "warmup_ratio": 0.1}},
        "finetune": {"epochs": 2, "learning_rate": 2e-5, "batch_size": 4, "warmup_ratio": 0.1},
        "eval": {"probe_prompts": str(resource("demo", "harry_potter", "probe_prompts.jsonl")),
                 "familiarity_prompts": str(hp / "familiarity_prompts_dev20.jsonl"),
                 "general_text": [str(data / "general" / "wikitext-2-raw" / "wiki.test.raw")],
                 "max_new_tokens": 48},
    }, args.set)


def corpus_folder(out: Path) -> Path:
    """Where the target text (summaries cut, synthesized texts) is written, next to the run folder."""
    return out.parent / f"{out.name}_corpus"


def main() -> None:
    args = build_parser().parse_args()
    data = Path(args.data_dir)
    hp = data / "targets" / "harry_potter"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)

    # Target: first 80% of the summaries (the last 20% stay held out for `obliviate eval`) + synthesized text.
    summaries = (hp / "wikipedia_summaries.txt").read_text(encoding="utf-8")
    corpus_dir = corpus_folder(out)
    corpus_dir.mkdir(parents=True, exist_ok=True)
    (corpus_dir / "summaries_80.txt").write_text(summaries[: int(len(summaries) * 0.8)], encoding="utf-8")
    synthesized = corpus_dir / "synthesized.jsonl"
    timings = {}
    if not synthesized.exists():
        base = load_model("smollm2-135m")
        start = time.perf_counter()
        texts = synthesize_corpus(base.model, base.tokenizer,
                                  load_seed_prompts(resource("demo", "harry_potter", "seed_prompts.txt")),
                                  args.synthesize, max_new_tokens=160, batch_size=16, seed=0)
        timings["synthesize_s"] = round(time.perf_counter() - start, 1)
        write_corpus(texts, synthesized)

    config = from_dict(WHPConfig, whp_settings(args, data, corpus_dir, synthesized))
    run = WHPRun(config, out)
    run.run()
    state = run.folder.state()["stages"]
    evaluations = json.loads((out / "metrics.json").read_text())["evaluations"]

    # Two-choice trivia, before and after.
    trivia = load_qa_file(hp / "trivia_train_1000.jsonl")[: args.trivia]
    trivia_acc = {}
    for label, spec in (("base", "smollm2-135m"), ("unlearned", str(out / "model"))):
        loaded = load_model(spec)
        r = qa_accuracy(loaded.model, loaded.tokenizer, trivia, progress=True)
        trivia_acc[label] = {"acc": r["acc"], "stderr": r["acc_stderr"], "chance": r["chance"], "n": r["n"]}

    # Raw limits in the same run, same shapes as the stages.
    base = load_model("smollm2-135m")
    bs, length = config.labels.batch_size, config.target.context_length
    raw_fwd = raw_forward_tokens_per_s(base.model, bs, length)
    raw_train = raw_train_tokens_per_s(base.model, config.finetune.batch_size, length)
    rows = {
        "reinforce": (state["reinforce"].get("tokens_per_s"), raw_train),
        "labels": (state["labels"].get("tokens_per_s"), raw_fwd / 2),
        "finetune": (state["finetune"].get("tokens_per_s"), raw_train),
    }
    result = {
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}",
        "raw_forward_tokens_per_s": raw_fwd, "raw_train_tokens_per_s": raw_train,
        "stages": {k: {"seconds": v.get("seconds"), "tokens_per_s": v.get("tokens_per_s")} for k, v in state.items()},
        "ratios": {k: (a / b if a and b else None) for k, (a, b) in rows.items()},
        "evaluations": {k: {n: m.get("value") for n, m in e["metrics"].items()} for k, e in evaluations.items()},
        "trivia": trivia_acc, "labels": json.loads((out / "labels" / "stats.json").read_text())["train"],
        **timings,
    }
    (out / "benchmark.json").write_text(json.dumps(result, indent=2))
    write_results(result, args)
    print(json.dumps(result, indent=2))


def write_results(r: dict, args) -> None:
    ev = r["evaluations"]
    lines = [
        "", "## WHP on SmolLM2-135M-Instruct, Harry Potter kit", "",
        f"Command: `python benchmarks/whp_harry_potter.py --data-dir {args.data_dir} --out {args.out}`  ",
        f"Machine: {r['machine']}; measured {time.strftime('%Y-%m-%d')}.", "",
        "| metric | base | unlearned |", "|---|---|---|",
    ]
    for key, label in (("reference_probability", "reference probability (probe prompts)"),
                       ("familiarity", "familiarity, 20 dev prompts (share with reference words)"),
                       ("general_perplexity", "perplexity, WikiText-2 (4k tokens)")):
        lines.append(f"| {label} | {ev['base'].get(key, float('nan')):.4f} | {ev['unlearned'].get(key, float('nan')):.4f} |")
    t = r["trivia"]
    lines.append(f"| two-choice trivia accuracy (n={t['base']['n']}, chance {t['base']['chance']:.2f}) | "
                 f"{t['base']['acc']:.3f} ± {t['base']['stderr']:.3f} | {t['unlearned']['acc']:.3f} ± "
                 f"{t['unlearned']['stderr']:.3f} |")
    lines += ["", "| stage | seconds | tokens/s | ratio to raw limit |", "|---|---|---|---|"]
    limits = {"reinforce": "forward+backward", "labels": "two forward passes", "finetune": "forward+backward"}
    for stage, info in r["stages"].items():
        ratio = r["ratios"].get(stage)
        lines.append(f"| {stage} | {info['seconds']} | {info.get('tokens_per_s') or '-'} | "
                     f"{f'{ratio:.2f} of {limits[stage]}' if ratio else '-'} |")
    lines += ["", f"Raw limits in the same run: forward {r['raw_forward_tokens_per_s']:.0f} tokens/s, "
              f"forward+backward+AdamW {r['raw_train_tokens_per_s']:.0f} tokens/s. Labels: "
              f"{r['labels']['labelled']} labelled positions, {r['labels']['changed']} differ from the original "
              f"next token, {r['labels']['anchored_occurrences']} anchored occurrences translated.", ""]
    path = Path(args.results)
    header = "" if path.exists() else "# Benchmark results\n\nEvery number here was written by the command above it.\n"
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(header + "\n".join(lines))


if __name__ == "__main__":
    main()
