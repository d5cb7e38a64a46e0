"""``obliviate unlearn``: run any registered unlearning method over a run folder.

Registered in :mod:`obliviate.cli` with ``add_unlearn_parser(subparsers)``.
"""

from __future__ import annotations

import argparse


def add_unlearn_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``unlearn`` command to an argparse subparsers object; returns its parser."""
    from obliviate.cli import add_publish_options
    from obliviate.methods import UNLEARNING_METHODS

    p = subparsers.add_parser("unlearn", help="forget a corpus with any registered unlearning method (see --method) "
                                              "(skips completed stages)")
    p.add_argument("--config", help="YAML config file (CLI options and --set override it)")
    p.add_argument("--model", help="model to unlearn from: embedded name (smollm2-135m), HF folder, .gguf or hub id")
    p.add_argument("--method", help=f"unlearning method: {', '.join(UNLEARNING_METHODS)}")
    p.add_argument("--forget", action="append", help="text to forget: file, folder, glob, JSON(L), Parquet, Arrow or "
                   "hf:owner/name[:config][@split] (repeatable)")
    p.add_argument("--retain", action="append", help="text to keep: same kinds as --forget (repeatable)")
    p.add_argument("--text-field", help="record field holding the text, for forget and retain (default: text); "
                   "question,answer joins fields by a newline; {question} {answer} makes a template")
    p.add_argument("--context-length", type=int, help="tokens per block, for forget and retain (default 256)")
    p.add_argument("--lora", action="store_true", default=None, help="train LoRA adapters instead of all weights")
    p.add_argument("--lora-save", choices=("adapter", "merged"),
                   help="with --lora: save the adapter only, or the merged model (default: merged)")
    p.add_argument("--probe-prompts", help="JSONL prompts for the reference-probability metric")
    p.add_argument("--familiarity-prompts", help="JSONL prompts for the familiarity metric")
    p.add_argument("--general-text", action="append", help="general text for perplexity (repeatable)")
    p.add_argument("--out", required=True, help="run folder, e.g. runs/NAME")
    add_publish_options(p)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any setting, e.g. --set method.beta=0.1 --set train.learning_rate=1e-5")
    p.add_argument("--overwrite", action="store_true", help="replace a run folder that holds a different run")
    p.add_argument("--trust-remote-code", action="store_true", help="allow custom model code (trusted sources only)")
    p.set_defaults(func=cmd_unlearn)
    return p


def unlearn_config(args):
    """The :class:`obliviate.unlearn.UnlearnConfig` of parsed options (config file < options < --set)."""
    from obliviate.cli import report_to
    from obliviate.settings import resolve

    corpus = {"text_field": args.text_field, "context_length": args.context_length}
    options = {
        "model": args.model, "method": args.method,
        "forget": {"sources": args.forget, **corpus},
        "retain": {"sources": args.retain, **corpus},
        "lora": {"enabled": args.lora, "save": args.lora_save},
        "train": {"report_to": report_to(getattr(args, "report_to", None))},
        "card": {"license": getattr(args, "license", None)},
        "eval": {"probe_prompts": args.probe_prompts, "familiarity_prompts": args.familiarity_prompts,
                 "general_text": args.general_text},
    }
    return resolve("unlearn", config_file=args.config, options=options, overrides=args.set,
                   out=getattr(args, "out", None), trust_remote_code=args.trust_remote_code)


def cmd_unlearn(args) -> int:
    """Run (or resume) an unlearning run; returns the exit code."""
    from obliviate.unlearn import UnlearnRun

    UnlearnRun(unlearn_config(args), args.out, overwrite=args.overwrite).run()
    from obliviate.runs import say_main

    say_main(f"run folder: {args.out}")
    return 0
