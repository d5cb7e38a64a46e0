"""All methods on the Harry Potter task and the Sherlock Holmes books, SmolLM2-135M, matched compute.

Every weight-updating method gets the same number of optimizer steps (--steps) with the same
batch and block size on the same forget text (and the same retain text, the second half of
WikiText-2, for methods that use one; general perplexity is scored on its first half); WHP gets
the same number of fine-tuning steps after its reinforced model and labels (its extra cost is
reported in its wall time). WHP at inference time trains nothing. Each model is
evaluated with a reduced suite (benchmarks/suites/*_compare.yaml); the base model's results are
cached and computed once.

    python benchmarks/compare_methods.py --data-dir ../shared/data --out runs/bench_compare

Appends a table per task (with this command) to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from obliviate.config import from_dict
from obliviate.demo import resource
from obliviate.errors import ObliviateError
from obliviate.evaluation.overlap import overlap_notes, suite_overlap, training_texts
from obliviate.evaluation.suite import load_suite, run_suite
from obliviate.methods import UNLEARNING_METHODS, make_method, uses_retain
from obliviate.models import load_model
from obliviate.unlearn import UnlearnConfig, UnlearnRun
from obliviate.whp.inference import load_whp_inference
from obliviate.whp.pipeline import WHPConfig, WHPRun

# every registered unlearning method but the toxicity objective (benchmarks/toxicity_methods.py runs it)
METHODS = tuple(m for m in UNLEARNING_METHODS if m != "probe_direction")


def tasks(data: Path) -> dict:
    hp = data / "targets" / "harry_potter"
    sherlock = data / "targets" / "sherlock"
    return {
        "harry_potter": {"forget": [str(hp / "wikipedia_summaries.txt")], "span": 0.8,
                         "anchors": str(hp / "anchored_terms_gpt4_blocks.json"),
                         "suite": Path(__file__).parent / "suites" / "hp_compare.yaml"},
        "sherlock": {"forget": [str(sherlock / "the_adventures_of_sherlock_holmes_pg1661.txt")], "span": None,
                     "anchors": str(resource("demo", "sherlock", "anchors.yaml")),
                     "suite": Path(__file__).parent / "suites" / "sherlock_compare.yaml"},
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--out", default="runs/bench_compare")
    parser.add_argument("--steps", type=int, default=10, help="optimizer steps per method (matched budget)")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--context-length", type=int, default=256)
    parser.add_argument("--max-blocks", type=int, default=32, help="forget blocks used (same for every method)")
    parser.add_argument("--tasks", default="harry_potter,sherlock")
    parser.add_argument("--methods", default=",".join(METHODS + ("whp", "whp_inference")))
    parser.add_argument("--results", default=str(Path(__file__).parent / "RESULTS.md"))
    parser.add_argument("--model", default="smollm2-135m", help="base model (a tiny one for a dry run)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    return parser


def forget_sources(task: dict, task_name: str, out: Path) -> list[str]:
    """The forget files a task trains on: with a span, the cut that main() writes (the first part only)."""
    return [str(out / task_name / "forget_80.txt")] if task["span"] else task["forget"]


def shared_settings(args) -> tuple[dict, dict]:
    """The corpus and train settings every method gets (matched compute)."""
    corpus = {"context_length": args.context_length, "max_blocks": args.max_blocks, "heldout_fraction": 0.1}
    train = {"max_steps": args.steps, "batch_size": args.batch_size, "learning_rate": 1e-5, "warmup_ratio": 0.1}
    return corpus, train


def whp_settings(args, task, forget, corpus, train) -> dict:
    """What WHP's WHPConfig is built from (``from_dict(WHPConfig, ...)``)."""
    return {
        "model": args.model, "anchors": task["anchors"], "force": True,
        "target": {"sources": forget, **corpus},
        "reinforce": {"train": {"max_steps": args.steps, "batch_size": args.batch_size,
                                "learning_rate": 5e-5, "warmup_ratio": 0.1}},
        "finetune": {**train, "learning_rate": 2e-5}}


def unlearn_settings(args, method, forget, wiki, corpus, train) -> dict:
    """What an unlearning method's UnlearnConfig is built from (``from_dict(UnlearnConfig, ...)``)."""
    lr = 1e-3 if method in ("rmu", "adaptive_rmu", "cosine_rmu") else 1e-5
    retain = [wiki] if uses_retain(method, make_method(method).config) else []
    return {
        "model": args.model, "method": method,
        "forget": {"sources": forget, **corpus}, "retain": {"sources": retain, **corpus},
        "train": {**train, "learning_rate": lr}}


def main() -> None:
    args = build_parser().parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    data, out = Path(args.data_dir), Path(args.out)
    # Retain text: the second half of WikiText-2; the suites' general perplexity reads only the first
    # half (span [0, 0.5]), so no method is scored on text it trained on.
    wiki_text = (data / "general" / "wikitext-2-raw" / "wiki.test.raw").read_text(encoding="utf-8")
    out.mkdir(parents=True, exist_ok=True)
    wiki = out / "wikitext_retain_second_half.txt"
    wiki.write_text(wiki_text[len(wiki_text) // 2:], encoding="utf-8")
    wiki = str(wiki)
    all_results = {}
    for task_name in args.tasks.split(","):
        task = tasks(data)[task_name]
        forget = forget_sources(task, task_name, out)
        if task["span"]:  # train on the first 80% only: the rest is held-out target text in the suite
            text = Path(task["forget"][0]).read_text(encoding="utf-8")
            cut = Path(forget[0])
            cut.parent.mkdir(parents=True, exist_ok=True)
            cut.write_text(text[: int(len(text) * task["span"])], encoding="utf-8")
        suite = load_suite(task["suite"], data_dir=data)
        corpus, train = shared_settings(args)
        rows = {}
        base = load_model(args.model)
        rows["base"] = {"seconds": "-", **evaluate(base, suite)}
        del base
        for method in args.methods.split(","):
            try:
                rows[method] = run_method(method, task, task_name, forget, wiki, corpus, train, suite, out, args)
            except ObliviateError as exc:  # e.g. a non-finite loss: record it, go on with the others
                rows[method] = {"seconds": "-", "failed": str(exc)}
            print(f"[{task_name}] {method}: {json.dumps(rows[method])}", file=sys.stderr, flush=True)
        all_results[task_name] = rows
        (out / task_name / "results.json").write_text(json.dumps(rows, indent=2))
        write_table(task_name, rows, args)


def run_method(method, task, task_name, forget, wiki, corpus, train, suite, out, args) -> dict:
    """Train (or assemble) one method's model and evaluate it."""
    start = time.perf_counter()
    folder = out / task_name / method
    if method == "whp":
        config = from_dict(WHPConfig, whp_settings(args, task, forget, corpus, train))
        WHPRun(config, folder).run(("reinforce", "labels", "finetune"))
        loaded = load_model(str(folder / "model"))
    elif method == "whp_inference":
        loaded = load_whp_inference(str(out / task_name / "whp"))
    else:
        config = from_dict(UnlearnConfig, unlearn_settings(args, method, forget, wiki, corpus, train))
        UnlearnRun(config, folder).run(("unlearn",))
        loaded = load_model(str(folder / "model"))
    train_seconds = time.perf_counter() - start
    if method != "whp_inference":  # a resumed run: the stages' own recorded times, not this call's
        stages = json.loads((folder / "state.json").read_text())["stages"]
        train_seconds = sum(info.get("seconds", 0) for name, info in stages.items() if name != "eval")
    seconds = "-" if method == "whp_inference" else round(train_seconds, 1)  # it trains nothing
    trained_on = training_texts(out / task_name / "whp" if method == "whp_inference" else folder, loaded.tokenizer)
    return {"seconds": seconds, **evaluate(loaded, suite), "_overlap": suite_overlap(suite, trained_on)}


def evaluate(loaded, suite) -> dict:
    """``{metric: value}`` plus ``{"_n": {metric: n}, "_stderr": {metric: stderr}}`` for the table's footnote."""
    evaluation = run_suite(loaded.model, loaded.tokenizer, suite, loaded.weights_hash, model_spec=loaded.spec,
                           progress=False)
    metrics = evaluation["metrics"]
    return {**{name: m.get("value") for name, m in metrics.items()},
            "_n": {name: m.get("n") for name, m in metrics.items()},
            "_stderr": {name: m["stderr"] for name, m in metrics.items() if m.get("stderr") is not None},
            "_kind": {name: (m.get("group"), m.get("higher_is_better")) for name, m in metrics.items()}}


def header(column: str, rows: dict) -> str:
    """``name (group, up/down arrow)`` from the first row that has the metric's kind."""
    kind = next((r["_kind"][column] for r in rows.values() if column in r.get("_kind", {})), None)
    if kind is None:
        return column
    group, higher = kind
    return f"{column} ({group}, {'↑' if higher else '↓'})"


def write_table(task: str, rows: dict, args) -> None:
    columns = list(dict.fromkeys(c for r in rows.values() for c in r if c not in ("seconds", "failed")
                                 and not c.startswith("_")))
    model = "SmolLM2-135M-Instruct" if args.model == "smollm2-135m" else args.model
    lines = ["", f"## Methods compared: {task.replace('_', ' ')} ({model}, {args.steps} optimizer "
             f"steps each, batch {args.batch_size} x {args.context_length} tokens)", "",
             f"Command: `python benchmarks/compare_methods.py --data-dir {args.data_dir} --out {args.out} "
             f"--steps {args.steps} --tasks {args.tasks} --model {args.model} --threads {torch.get_num_threads()}`  ",
             f"Measured {time.strftime('%Y-%m-%d')} on {torch.get_num_threads()} CPU threads. Each column says "
             "its group (forget / retain / utility) and which way is better *for the unlearned model* (a forget "
             "perplexity should rise). 'seconds' is the training wall time (WHP: all three stages; WHP at "
             "inference time trains nothing and reuses WHP's reinforced model).", "",
             "| method | seconds | " + " | ".join(header(c, rows) for c in columns) + " |",
             "|---" * (len(columns) + 2) + "|"]
    for method, r in rows.items():
        cells = [f"{r[c]:.3f}" if isinstance(r.get(c), float) else "-" for c in columns]
        lines.append(f"| {method} | {r['seconds']} | " + " | ".join(cells) + " |")
    lines += [f"\n{method} failed: {r['failed']}" for method, r in rows.items() if "failed" in r]
    base = rows.get("base", {})
    sizes = [f"{c} n={base['_n'][c]}" + (f" (base stderr {base['_stderr'][c]:.3f})" if c in base.get("_stderr", {})
                                        else "") for c in columns if base.get("_n", {}).get(c) is not None]
    if sizes:
        lines.append("\nSample sizes (prompts, questions or scored tokens): " + "; ".join(sizes) + ".")
    overlaps = [note for method, r in rows.items() for note in overlap_notes(method, {
        name: {"training_overlap": fields} for name, fields in r.get("_overlap", {}).items()})]
    lines.append("\n" + ("\n".join(f"- {note}" for note in overlaps) if overlaps else
                         "Checked for every trained model (obliviate.evaluation.overlap): no metric's text shares "
                         "a passage with the blocks it trained on."))
    path = Path(args.results)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
