"""The ``obliviate`` command line. Every command is a plain function over parsed options.

Errors that are the user's to fix print one line and exit 2; an interrupted run exits 130 and
resumes where it stopped when the same command is run again.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from obliviate.errors import ObliviateError


def _add_whp_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML config file (CLI options and --set override it)")
    p.add_argument("--preset", help="named settings under the config file and options: demo or strong "
                                    "(obliviate.whp.presets; benchmarks/RESULTS.md has what each was measured to do)")
    p.add_argument("--model", help="baseline: embedded name (smollm2-135m), HF folder, .gguf file or hub id")
    p.add_argument("--target", action="append", help="target corpus: file, folder, glob or JSONL (repeatable)")
    p.add_argument("--text-field", help="JSONL field holding the text (default: text)")
    p.add_argument("--anchors", help="anchored-terms dictionary (JSON or YAML)")
    p.add_argument("--reinforced", help="an existing reinforced model (skips training one)")
    p.add_argument("--retain", action="append",
                   help="general text kept during the fine-tune: KL to the baseline on it (repeatable; not in the "
                        "paper)")
    p.add_argument("--retain-translated", action="store_true", default=None,
                   help="also keep the baseline's predictions on the target text translated to generic "
                        "counterparts: the target's domain without its names (not in the paper)")
    p.add_argument("--retain-weight", type=float, help="weight of the retain KL term (default 1)")
    p.add_argument("--alpha", type=float, help="WHP alpha (default 5)")
    p.add_argument("--soft-labels", action="store_true", default=None, help="distil top-k soft labels (KL)")
    p.add_argument("--context-length", type=int, help="tokens per block (default 512)")
    p.add_argument("--probe-prompts", help="JSONL prompts for the reference-probability metric")
    p.add_argument("--familiarity-prompts", help="JSONL prompts for the familiarity metric")
    p.add_argument("--general-text", action="append", help="general text for perplexity (repeatable)")
    p.add_argument("--out", required=True, help="run folder, e.g. runs/NAME")
    p.add_argument("--lora", action="store_true", default=None, help="fine-tune LoRA adapters (peft)")
    p.add_argument("--lora-save", choices=("adapter", "merged"), help="with --lora: save the adapter or merged weights")
    add_publish_options(p)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any setting, e.g. --set finetune.learning_rate=2e-5")
    p.add_argument("--force", action="store_true", help="go on when no anchored expression occurs in the corpus")
    p.add_argument("--overwrite", action="store_true", help="replace a run folder that holds a different run")
    p.add_argument("--trust-remote-code", action="store_true", help="allow custom model code (trusted sources only)")


def add_publish_options(p: argparse.ArgumentParser) -> None:
    """``--report-to`` and ``--license``, shared by the run commands (``whp`` and its stages, ``unlearn``)."""
    p.add_argument("--report-to", action="append", metavar="TRACKER",
                   help="report every training stage to experiment trackers: tensorboard, wandb, mlflow... "
                        "(repeatable or comma-separated; logs under RUN/trackers/; 'none' turns it off)")
    p.add_argument("--license", help="license of the unlearned model for its model card, as a Hub license id "
                                     "(default: the base model's, from its card)")


def report_to(values) -> list[str] | None:
    """``--report-to`` values as the ``report_to`` setting (None: not given; ``none``: off)."""
    if values is None:
        return None
    names = [name.strip() for value in values for name in value.split(",") if name.strip()]
    return [] if names == ["none"] else names


def _whp_options(args) -> dict:
    """The WHP settings given as command-line options (None: not given)."""
    trackers = report_to(args.report_to)
    return {
        "model": args.model, "anchors": args.anchors, "force": args.force or None,
        "target": {"sources": args.target, "text_field": args.text_field, "context_length": args.context_length},
        "reinforce": {"model": args.reinforced, "train": {"report_to": trackers}},
        "labels": {"alpha": args.alpha, "soft": args.soft_labels},
        "finetune": {"report_to": trackers},
        "retain": {"sources": args.retain, "weight": args.retain_weight, "translated": args.retain_translated},
        "card": {"license": args.license},
        "lora": {"enabled": args.lora, "save": args.lora_save},
        "eval": {"probe_prompts": args.probe_prompts, "familiarity_prompts": args.familiarity_prompts,
                 "general_text": args.general_text},
    }


def _whp_config(args):
    from obliviate.settings import resolve

    return resolve("whp", config_file=args.config, options=_whp_options(args), overrides=args.set, out=args.out,
                   trust_remote_code=args.trust_remote_code, preset=args.preset)


def cmd_whp(args, stages=None) -> int:
    from obliviate.whp.pipeline import STAGES, WHPRun

    WHPRun(_whp_config(args), args.out, overwrite=args.overwrite).run(stages or STAGES)
    from obliviate.runs import say_main

    say_main(f"run folder: {args.out}")
    return 0


def cmd_run(args) -> int:
    from obliviate.errors import ConfigError
    from obliviate.settings import load_config, run_classes

    kind, config, out = load_config(args.config_file, args.set, trust_remote_code=args.trust_remote_code)
    out = args.out or out
    if not out:
        raise ConfigError("no run folder: set `out:` in the config or pass --out")
    run_classes(kind)[1](config, out, overwrite=args.overwrite).run()
    from obliviate.runs import say_main

    say_main(f"run folder: {out}")
    return 0


def cmd_anchors_propose(args) -> int:
    from obliviate.corpus import read_corpus
    from obliviate.errors import ConfigError
    from obliviate.jsonl import display_path
    from obliviate.models import check_same_tokenizer, load_model
    from obliviate.whp.propose import check_proposal_path, propose_anchored_terms, write_proposal

    if args.top_k < 1:
        raise ConfigError(f"--top-k must be at least 1, got {args.top_k}")
    check_proposal_path(args.out)
    if not args.reference:
        from obliviate.demo import resource

        args.reference = [str(resource("demo", "general_text.txt"))]
    target, reference = read_corpus(args.target), read_corpus(args.reference)
    base = load_model(args.model, trust_remote_code=args.trust_remote_code)
    reinforced = load_model(args.reinforced, trust_remote_code=args.trust_remote_code) if args.reinforced else None
    if reinforced is not None:
        check_same_tokenizer(base.tokenizer, reinforced.tokenizer)
    rows = propose_anchored_terms(target, reference, base.tokenizer,
                                  base_model=base.model if reinforced is not None else None,
                                  reinforced_model=reinforced.model if reinforced is not None else None,
                                  top_k=args.top_k, seed=args.seed)
    write_proposal(rows, args.out)
    print(f"wrote {len(rows)} proposed anchored terms to {display_path(args.out)}: review and edit before use")
    return 0


def cmd_synthesize(args) -> int:
    from obliviate.errors import ConfigError, DataError
    from obliviate.jsonl import check_output_file, display_path
    from obliviate.models import load_model
    from obliviate.synthesize import check_sampling_settings, load_seed_prompts, synthesize_records, write_corpus

    if args.seeds and args.prompt:
        raise ConfigError("pass --seeds FILE or --prompt TEXT, not both")
    scale_options = [name for name, value in (("--anchors", args.anchors), ("--summaries", args.summaries),
                                              ("--trivia", args.trivia)) if value]
    if args.token_budget is not None or scale_options:
        return _synthesize_to_budget(args)
    for name, value in (("--samples-per-seed", args.samples_per_seed), ("--dedup-threshold", args.dedup_threshold)):
        if value is not None:
            raise ConfigError(f"{name} works with --token-budget; add --token-budget N or drop {name}")
    n = 64 if args.n is None else args.n
    check_sampling_settings(n, args.max_new_tokens, args.temperature, args.top_p, batch_size=args.batch_size)
    check_output_file(args.out, "corpus file")
    seeds = load_seed_prompts(args.seeds) if args.seeds else [s.strip() for s in (args.prompt or []) if s.strip()]
    if not seeds:
        raise DataError("no seed prompts: pass --seeds FILE or --prompt TEXT")
    loaded = load_model(args.model, trust_remote_code=args.trust_remote_code)
    texts = synthesize_records(loaded.model, loaded.tokenizer, seeds, n, max_new_tokens=args.max_new_tokens,
                               temperature=args.temperature, top_p=args.top_p, seed=args.seed,
                               batch_size=args.batch_size)
    if not texts:
        raise DataError(f"all {n} samples were empty or one repeated word, so nothing was written to "
                        f"{display_path(args.out)}: raise --max-new-tokens or --n, or try another --model")
    write_corpus(texts, args.out)
    print(f"wrote {len(texts)} texts to {display_path(args.out)}")
    return 0


def _synthesize_to_budget(args) -> int:
    """``synthesize --token-budget``: seeds from the target's dictionary, summaries and trivia (synthesize_budget)."""
    from obliviate.dedup import DuplicateFilter
    from obliviate.errors import ConfigError
    from obliviate.jsonl import display_path
    from obliviate.models import load_model
    from obliviate.synthesize import check_sampling_settings, load_seed_prompts
    from obliviate.synthesize_budget import check_corpus_out, stats_path, synthesize_to_budget
    from obliviate.target_seeds import Seed, anchor_seeds, interleave, read_summaries, summary_seeds, trivia_seeds
    from obliviate.whp.anchors import load_anchored_terms

    if args.token_budget is None:
        raise ConfigError("--anchors, --summaries and --trivia need --token-budget N (kept tokens to synthesize)")
    if args.n is not None:
        raise ConfigError("--n counts samples; with --token-budget the budget decides how many: drop --n")
    if args.summaries and not args.anchors:
        raise ConfigError("--summaries needs --anchors: the seeds are summary sentences up to a dictionary term")
    if args.token_budget < 1:
        raise ConfigError(f"--token-budget must be a whole number of at least 1, got {args.token_budget}")
    samples_per_seed = 2 if args.samples_per_seed is None else args.samples_per_seed
    threshold = 0.7 if args.dedup_threshold is None else args.dedup_threshold
    check_sampling_settings(samples_per_seed, args.max_new_tokens, args.temperature, args.top_p, args.batch_size)
    DuplicateFilter(threshold)  # refuse a bad threshold before loading anything
    check_corpus_out(args.out, args.overwrite)
    seeds = []
    if args.anchors:
        terms = load_anchored_terms(args.anchors)
        seeds += anchor_seeds(terms)
        if args.summaries:
            seeds += summary_seeds(read_summaries(args.summaries), terms)
    if args.trivia:
        seeds += trivia_seeds(args.trivia)  # the tune half only: held-out trivia never becomes training text
    if args.seeds:
        seeds += [Seed(p, "file", "given") for p in load_seed_prompts(args.seeds)]
    seeds += [Seed(p.strip(), "prompt", "given") for p in args.prompt or [] if p.strip()]
    loaded = load_model(args.model, trust_remote_code=args.trust_remote_code)
    stats = synthesize_to_budget(loaded.model, loaded.tokenizer, interleave(seeds, args.seed), args.out,
                                 args.token_budget, samples_per_seed=samples_per_seed,
                                 max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p,
                                 batch_size=args.batch_size, seed=args.seed, dedup_threshold=threshold,
                                 overwrite=args.overwrite, model_name=args.model)
    dropped = ", ".join(f"{n} {reason.replace('_', ' ')}" for reason, n in stats["samples"]["dropped"].items())
    print(f"wrote {stats['samples']['kept']} texts ({stats['tokens']} tokens, budget {stats['token_budget']}; "
          f"{stats['seeds_done']} of {stats['seeds_total']} seeds; dropped {dropped}) to {display_path(args.out)}; "
          f"stats in {display_path(stats_path(args.out))}")
    return 0


def cmd_eval(args) -> int:
    from pathlib import Path

    from obliviate.errors import ConfigError
    from obliviate.evaluation.overlap import mark_training_overlap, training_texts
    from obliviate.evaluation.result import write_evaluations
    from obliviate.evaluation.suite import load_suite, run_suite
    from obliviate.models import load_model

    if args.judge_api_key_env and not args.judge_url:
        raise ConfigError("--judge-api-key-env needs --judge-url: the key is sent only to a judge URL you give "
                          "on the command line")
    if args.judge_url and not args.judge_url.startswith(("http://", "https://")):
        raise ConfigError(f"--judge-url must start with http:// or https://, got '{args.judge_url}'")
    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise ConfigError(f"--out '{args.out}' is a file: give a folder for metrics.json and samples.jsonl")
    suite = load_suite(args.suite, data_dir=args.data_dir)
    suite.check_only(args.only)
    if args.reference:
        with_reference = [spec for spec in suite.metrics if hasattr(spec, "reference_model")]
        if not with_reference:
            raise ConfigError(f"--reference: no metric of suite '{suite.name}' takes a reference model "
                              "(tofu and membership_inference do)")
        for spec in with_reference:
            spec.reference_model = args.reference
    if args.limit is not None:
        suite.limit_items(args.limit)
    device = "cuda" if __import__("torch").cuda.is_available() else "cpu"
    label = args.label or Path(str(args.model).rstrip("/")).name
    if args.whp_inference:
        from obliviate.whp.inference import load_whp_inference

        loaded = load_whp_inference(args.model, reinforced=args.reinforced, alpha=args.alpha, device=device,
                                    trust_remote_code=args.trust_remote_code)
        label = args.label or f"{label}-whp-inference"
    else:
        loaded = load_model(args.model, device=device, trust_remote_code=args.trust_remote_code)
    evaluation = run_suite(loaded.model, loaded.tokenizer, suite, loaded.weights_hash, model_spec=loaded.spec,
                           use_cache=not args.no_cache, only=args.only, judge_url=args.judge_url,
                           judge_api_key_env=args.judge_api_key_env)
    mark_training_overlap(evaluation, suite, training_texts(args.model, loaded.tokenizer), only=args.only,
                          tokenizer=loaded.tokenizer)
    metrics_path, samples_path = write_evaluations(Path(args.out), {label: evaluation})
    from obliviate.reporting import compare_table

    print(compare_table({label: evaluation}))
    skipped = [n for n, m in evaluation["metrics"].items() if "skipped" in m]
    if skipped:
        print(f"skipped: {', '.join(skipped)} (see the reasons above)", file=sys.stderr)
    print(f"wrote {metrics_path} and {samples_path}")
    return 0


def cmd_compare(args) -> int:
    from obliviate.reporting import check_requirements, combine, compare_table, parse_requirement

    requirements = [parse_requirement(text) for text in args.require or []]  # refused before any output
    evaluations = combine(args.paths)
    print(compare_table(evaluations))
    failures = check_requirements(evaluations, requirements)
    for failure in failures:
        print(f"requirement failed: {failure}", file=sys.stderr)
    return 1 if failures else 0


def cmd_report(args) -> int:
    from obliviate.reporting import write_report

    path = write_report(args.run, extra_runs=args.with_runs or (), out=args.out)
    print(f"wrote {path}")
    return 0


def cmd_export(args) -> int:
    from obliviate.errors import ConfigError
    from obliviate.export import export_gguf
    from obliviate.jsonl import display_path

    if not args.gguf:
        raise ConfigError("choose the export format: --gguf (the one format so far)")
    path = export_gguf(args.run, args.out, quant=args.quant, trust_remote_code=args.trust_remote_code)
    print(f"wrote {display_path(path)} ({args.quant}, {path.stat().st_size / 1e6:.1f} MB)")
    return 0


def cmd_bench_tofu(args) -> int:
    from obliviate.config import apply_overrides, drop_none
    from obliviate.tofu_bench import make_config, run_bench

    methods = [m.strip() for m in args.methods.split(",") if m.strip()] if args.methods else None
    options = drop_none({"model": args.model, "split": args.split, "methods": methods, "data_dir": args.data_dir,
                         "retain_authors": args.retain_authors, "references": args.references,
                         "trust_remote_code": True if args.trust_remote_code else None})
    config = make_config(args.preset, apply_overrides(options, args.set))
    run_bench(config, args.out, command="obliviate " + " ".join(args.argv))
    return 0


def cmd_demo(args) -> int:
    from obliviate.demo import run_demo

    run_demo(args.out, model=args.model, overwrite=args.overwrite)
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (``error: ...``), like every other error."""

    def error(self, message):
        self.exit(2, f"error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="obliviate", description="Make a causal LM forget chosen knowledge, "
                                     "and measure how well it forgot.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("whp", help="run the whole \"Who's Harry Potter?\" pipeline (skips completed stages)")
    _add_whp_options(p)
    p.set_defaults(func=cmd_whp)
    for stage, text in (("reinforce", "stage 1: train the reinforced model"),
                        ("labels", "stage 3: generate generic labels (needs stage 1)"),
                        ("finetune", "stage 4: fine-tune the baseline on the generic labels (needs stage 3)"),
                        ("evaluate", "before/after table of the run (needs stage 4)")):
        p = sub.add_parser(stage, help=text)
        _add_whp_options(p)
        p.set_defaults(func=lambda a, s=("eval" if stage == "evaluate" else stage): cmd_whp(a, (s,)))

    p = sub.add_parser("run", help="run the pipeline from a YAML config (unknown keys are errors)")
    p.add_argument("config_file")
    p.add_argument("--out", help="run folder (else `out:` in the config)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any setting, e.g. --set train.learning_rate=1e-5 --set method.beta=0.1")
    p.add_argument("--overwrite", action="store_true", help="replace a run folder that holds a different run")
    p.add_argument("--trust-remote-code", action="store_true", help="allow custom model code (trusted sources only)")
    p.set_defaults(func=cmd_run)

    anchors = sub.add_parser("anchors", help="anchored-terms dictionaries").add_subparsers(dest="action",
                                                                                          required=True)
    p = anchors.add_parser("propose", help="propose a dictionary from the target text (editable YAML)")
    p.add_argument("--target", action="append", required=True)
    p.add_argument("--reference", action="append",
                   help="general text to compare frequencies with (default: a short built-in text)")
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--reinforced", help="reinforced model: also rank by how much more likely it finds a term")
    p.add_argument("--top-k", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    p.add_argument("--trust-remote-code", action="store_true")
    p.set_defaults(func=cmd_anchors_propose)

    p = sub.add_parser("synthesize", help="write a target corpus by sampling a model from seed prompts",
                       description="Sample texts about the target from a model. With --token-budget: seeds from the "
                                   "anchored-terms dictionary (--anchors), the summaries (--summaries) and the tune "
                                   "half of a trivia file (--trivia), de-duplicated, resumable, with a stats file.")
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--seeds", help="file of seed prompts, one per line")
    p.add_argument("--prompt", action="append", help="a seed prompt (repeatable)")
    p.add_argument("--n", type=int, help="number of texts (default 64; not with --token-budget)")
    p.add_argument("--anchors", help="anchored-terms dictionary: seeds per term and kind (needs --token-budget)")
    p.add_argument("--summaries", help="text file of summaries: sentence openings up to a term (needs --anchors)")
    p.add_argument("--trivia", help="trivia JSONL (question, true_answer): tune-half questions as statements")
    p.add_argument("--token-budget", type=int, help="stop when the kept texts hold this many tokens; resumable")
    p.add_argument("--samples-per-seed", type=int, help="with --token-budget: samples per seed prompt (default 2)")
    p.add_argument("--dedup-threshold", type=float,
                   help="with --token-budget: word 3-gram Jaccard from which a text is a near duplicate "
                        "(default 0.7; 1 drops exact duplicates only)")
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--temperature", type=float, default=0.9)
    p.add_argument("--top-p", type=float, default=0.95, help="nucleus sampling mass")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="JSONL output file (with --token-budget also OUT.stats.json)")
    p.add_argument("--overwrite", action="store_true", help="with --token-budget: start again instead of resuming")
    p.add_argument("--trust-remote-code", action="store_true")
    p.set_defaults(func=cmd_synthesize)

    p = sub.add_parser("eval", help="evaluate a model (or run folder) on a suite: metrics.json + samples.jsonl")
    p.add_argument("model", help="embedded name, HF folder, run folder, .gguf file or hub id")
    p.add_argument("--suite", required=True,
                   help="suite YAML, or a built-in suite name (harry_potter, sherlock, tofu_forget01/05/10)")
    p.add_argument("--data-dir", help="folder the suite's data paths are relative to ($OBLIVIATE_DATA_DIR)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--label", help="name of this evaluation (default: the model folder's name)")
    p.add_argument("--only", action="append", help="run only this metric (repeatable)")
    p.add_argument("--limit", type=int, help="quick run: at most N items (prompts, questions, documents per "
                                             "benchmark task) in every metric that has a limit")
    p.add_argument("--no-cache", action="store_true", help="recompute results cached for these weights")
    p.add_argument("--reference", metavar="MODEL",
                   help="reference (gold, never trained on the forget set) model for every metric that takes one: "
                        "TOFU forget quality, PrivLeak")
    p.add_argument("--whp-inference", action="store_true",
                   help="MODEL is a WHP run folder (or a base with --reinforced): evaluate v_b - alpha*relu(v_r - v_b) "
                        "at inference time, with no fine-tune")
    p.add_argument("--reinforced", help="with --whp-inference: the reinforced model")
    p.add_argument("--alpha", type=float, help="with --whp-inference: alpha (default: the run's)")
    p.add_argument("--judge-url", help="LLM judge endpoint (OpenAI-compatible, e.g. http://127.0.0.1:8080/v1) for "
                                       "metrics with judge: llm; overrides the suite's judge_url")
    p.add_argument("--judge-api-key-env", metavar="VAR",
                   help="environment variable holding the judge's API key, sent as a bearer token to --judge-url "
                        "only (a suite file cannot choose it)")
    p.add_argument("--trust-remote-code", action="store_true",
                   help="allow custom model code (never taken from a run folder's config.yaml)")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("compare", help="one table of several evaluations; --require gates a release")
    p.add_argument("paths", nargs="+", help="run folders, eval folders or metrics.json files (first = reference)")
    p.add_argument("--require", action="append", metavar="BOUND",
                   help="e.g. utility.mean>=-0.01 (change vs the first), value:familiarity<=0.1, rel:KEY<=0.1")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("report", help="write a self-contained report.html from a run folder")
    p.add_argument("run", help="run folder")
    p.add_argument("--with", dest="with_runs", action="append", help="other runs for the trade-off plot")
    p.add_argument("--out", help="output file (default RUN/report.html)")
    p.set_defaults(func=cmd_report)

    from obliviate.meta_search_cli import add_meta_search_parser
    from obliviate.unlearn_cli import add_unlearn_parser

    add_unlearn_parser(sub)
    add_meta_search_parser(sub)
    from obliviate.search_cli import add_search_parser

    add_search_parser(sub)

    p = sub.add_parser("export", help="write a finished run's model as a GGUF file (llama.cpp, Ollama, LM Studio)")
    p.add_argument("run", help="finished run folder (or any Llama-family model spec load_model takes)")
    p.add_argument("--gguf", action="store_true", help="write GGUF (Llama, Mistral and Qwen2 architectures)")
    p.add_argument("--quant", choices=("f32", "f16", "q8_0", "q4_0"), default="f32",
                   help="tensor type of the matrices; norms and odd-shaped matrices stay f32 (default f32)")
    p.add_argument("--out", help="output file (default RUN/<run name>-<QUANT>.gguf)")
    p.add_argument("--trust-remote-code", action="store_true", help="allow custom model code (trusted sources only)")
    p.set_defaults(func=cmd_export)

    bench = sub.add_parser("bench", help="run a published benchmark end to end").add_subparsers(dest="benchmark",
                                                                                                required=True)
    p = bench.add_parser("tofu", help="TOFU: target and gold models, every method, forget quality and model utility")
    p.add_argument("--preset", default="gpu", choices=("gpu", "cpu"),
                   help="gpu: TOFU's full protocol (default); cpu: a documented subset for a 2-core machine")
    p.add_argument("--model", help="the pre-trained model (default: smollm2-135m)")
    p.add_argument("--split", choices=("forget01", "forget05", "forget10"), help="the forget split (default forget01)")
    p.add_argument("--methods", help="comma-separated unlearning methods and/or whp (default: all)")
    p.add_argument("--retain-authors", type=int, help="learn only the first N retain authors (target and gold alike)")
    p.add_argument("--data-dir", help="the folder holding tofu/ (default: $OBLIVIATE_DATA_DIR)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any setting, e.g. --set unlearn.max_steps=20 --set method_settings.npo.beta=0.2")
    p.add_argument("--out", required=True, help="the bench folder (its run folders are reused when complete)")
    p.add_argument("--references", metavar="BENCH",
                   help="reuse the target and gold models of another bench folder (same model, split, retain "
                        "authors and finetune settings), e.g. to try other unlearning settings")
    p.add_argument("--trust-remote-code", action="store_true", help="allow custom model code (trusted sources only)")
    p.set_defaults(func=cmd_bench_tofu)

    p = sub.add_parser("demo", help="forget Harry Potter in the embedded model, end to end (no files needed)")
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_demo)

    from obliviate.provenance_cli import add_provenance_parsers

    add_provenance_parsers(sub)
    from obliviate.attack_cli import add_attack_parser

    add_attack_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code (0 ok, 2 user error, 130 interrupted)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # as typed, for the records that quote it
    warnings.formatwarning = lambda message, category, *a, **k: f"warning: {message}\n"
    try:
        return args.func(args)
    except ObliviateError as exc:
        if not getattr(exc, "from_main", False):  # another process of the launch printed it
            print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: completed stages are kept; run the same command again to resume", file=sys.stderr)
        return 130
    except OSError as exc:  # the machine's, not obliviate's: disk full, read-only storage, permissions
        print(f"error: {_os_error_message(exc)}", file=sys.stderr)
        return 2


def _os_error_message(exc: OSError) -> str:
    """One line for an operating-system error, saying what to do."""
    import errno

    where = f" ('{exc.filename}')" if exc.filename else ""
    hints = {errno.ENOSPC: "free some disk space (completed stages are kept), then run the same command again",
             errno.EDQUOT: "free some disk quota (completed stages are kept), then run the same command again",
             errno.EROFS: "the storage is read-only: choose another --out",
             errno.EACCES: "no permission: choose another --out or fix the permissions",
             errno.EPERM: "no permission: choose another --out or fix the permissions"}
    return f"{exc.strerror or exc}{where}: {hints.get(exc.errno, 'check the path and the storage, then run again')}"


if __name__ == "__main__":
    sys.exit(main())
