"""The before/after evaluation at the end of a run: three ordinary suite metrics.

A run's ``eval:`` section (:class:`QuickEvalConfig`) becomes a small suite (:func:`quick_suite`):
``reference_probability`` (token_probability on the probe prompts), ``familiarity`` (greedy
completions judged by reference words) and ``general_perplexity`` (perplexity on the first
``general_max_tokens`` tokens of the general text's paragraphs). It runs through the suite runner
and is written by the one writer of ``metrics.json``; the full evaluation is ``obliviate eval``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from obliviate.evaluation.data import Texts
from obliviate.evaluation.familiarity import FamiliaritySpec
from obliviate.evaluation.overlap import blocks_text, mark_training_overlap, overlap_notes
from obliviate.evaluation.perplexity import PerplexitySpec
from obliviate.evaluation.token_probability import TokenProbabilitySpec

__all__ = ["QuickEvalConfig", "quick_suite", "check_eval_inputs", "format_table", "evaluate_before_after"]


@dataclass
class QuickEvalConfig:
    """Small, reusable before/after evaluation (each metric runs only when its data is given)."""

    probe_prompts: str | None = None  # JSONL {"prompt", "references"}: probability of references[0]
    familiarity_prompts: str | None = None  # JSONL {"prompt", "references"}: greedy completions judged by words
    general_text: list[str] = field(default_factory=list)  # files for perplexity on general text
    general_max_tokens: int = 4096  # cap on general-text tokens scored
    max_new_tokens: int = 24  # completion length for familiarity
    batch_size: int = 8

    def check(self) -> list[tuple[str, bool, str]]:
        """Range rules (see :func:`obliviate.config.validate`)."""
        return [("general_max_tokens", self.general_max_tokens >= 1, ">= 1"),
                ("max_new_tokens", self.max_new_tokens >= 1, ">= 1"), ("batch_size", self.batch_size >= 1, ">= 1")]


def quick_suite(config: QuickEvalConfig):
    """The suite of a run's ``eval:`` section (paths as given: relative to the working folder).

    Returns:
        A :class:`~obliviate.evaluation.suite.Suite`, or None when the config names no data.

    Raises:
        DataError: a file it names is missing.
    """
    from obliviate.evaluation.suite import make_suite

    specs = []
    if config.probe_prompts:
        specs.append(TokenProbabilitySpec(name="reference_probability", prompts=str(config.probe_prompts),
                                          batch_size=config.batch_size))
    if config.familiarity_prompts:
        specs.append(FamiliaritySpec(name="familiarity", prompts=str(config.familiarity_prompts),
                                     max_new_tokens=config.max_new_tokens, batch_size=config.batch_size))
    if config.general_text:
        specs.append(PerplexitySpec(name="general_perplexity", texts=Texts(files=[str(f) for f in config.general_text],
                                                                           split="paragraphs"),
                                    max_tokens=config.general_max_tokens, batch_size=max(1, config.batch_size // 2)))
    return make_suite("quick", specs, data_dir=Path(".")) if specs else None


def check_eval_inputs(config: QuickEvalConfig) -> None:
    """Check a run's ``eval:`` section before any stage runs: its settings, and that its files exist and read.

    Raises:
        ConfigError: an out-of-range setting (e.g. ``general_max_tokens`` below 1).
        DataError: a missing or unreadable prompt or text file, or a malformed prompt line.
    """
    from obliviate.evaluation.data import read_texts
    from obliviate.evaluation.prompts import load_prompt_file

    suite = quick_suite(config)
    for spec in suite.metrics if suite else []:
        if isinstance(spec, PerplexitySpec):
            read_texts(spec.texts, suite.data_dir)
        else:
            load_prompt_file(spec.prompts)


HEADLINE = (
    ("reference_probability", "reference probability (probe prompts)"),
    ("familiarity", "familiarity (share of completions with reference words)"),
    ("general_perplexity", "perplexity on general text"),
)


def format_table(evaluations: dict) -> str:
    """A before/after table of the headline metrics, e.g. of ``{"base": metrics, "unlearned": metrics}``."""
    names = list(evaluations)
    present = [(key, label) for key, label in HEADLINE if any(key in m for m in evaluations.values())]
    width = max([len(label) for _, label in present] + [6])
    lines = [f"{'metric':<{width}}  " + "  ".join(f"{n:>10}" for n in names)
             + ("  " + f"{'change':>10}" if len(names) == 2 else "")]
    for key, label in present:
        values = [evaluations[n].get(key, {}).get("value") for n in names]
        cells = "  ".join(f"{v:>10.4f}" if v is not None else f"{'-':>10}" for v in values)
        change = ""
        if len(values) == 2 and None not in values and values[0]:
            change = "  " + f"{(values[1] - values[0]) / abs(values[0]) * 100:>+9.1f}%"
        lines.append(f"{label:<{width}}  {cells}{change}")
    return "\n".join(lines)


def evaluate_before_after(folder, models: dict, config: QuickEvalConfig, trust_remote_code: bool = False,
                          trained_blocks: dict[str, list[list[int]]] | None = None) -> dict:
    """Evaluate each model on the quick suite, write the run's metrics.json and samples.jsonl, print the table.

    Args:
        folder: the run's ``RunFolder``.
        models: ``{label: model spec or a function returning a LoadedModel}``, e.g.
            ``{"base": "smollm2-135m", "unlearned": "runs/x/model"}``; loaded one at a time.
        config: what to evaluate.
        trust_remote_code: allow custom model code when loading a model spec.
        trained_blocks: ``{role: token blocks}`` the run trained on (``forget`` / ``retain``); text of
            a metric found in them is marked on the models after the first (evaluation/overlap.py).

    Returns:
        The ``evaluations`` mapping written to metrics.json.
    """
    import torch

    from obliviate.evaluation.result import write_evaluations
    from obliviate.evaluation.suite import run_suite
    from obliviate.models import load_model

    suite = quick_suite(config)
    if suite is None:
        print("[eval] no probe prompts, familiarity prompts or general text given: nothing to evaluate",
              file=sys.stderr)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    evaluations = {}
    for index, (label, model) in enumerate(models.items()):
        loaded = model() if callable(model) else load_model(model, device=device, trust_remote_code=trust_remote_code)
        if suite is None:
            evaluations[label] = {"model": {"spec": loaded.spec, "weights_sha256": loaded.weights_hash},
                                  "suite": {"name": "quick"}, "seconds": 0.0, "metrics": {}}
        else:
            evaluations[label] = run_suite(loaded.model, loaded.tokenizer, suite, loaded.weights_hash,
                                           model_spec=loaded.spec, use_cache=False, progress=False)
            if trained_blocks and index > 0:  # the base model never trained on the run's blocks
                texts = {role: blocks_text(blocks, loaded.tokenizer) for role, blocks in trained_blocks.items()
                         if blocks}
                mark_training_overlap(evaluations[label], suite, texts, tokenizer=loaded.tokenizer)
        del loaded
    write_evaluations(folder.path, evaluations)
    for label, evaluation in evaluations.items():
        for note in overlap_notes(label, evaluation["metrics"]):
            print(note, file=sys.stderr)
    if any(e["metrics"] for e in evaluations.values()):
        print(format_table({label: e["metrics"] for label, e in evaluations.items()}), file=sys.stdout, flush=True)
    return evaluations
