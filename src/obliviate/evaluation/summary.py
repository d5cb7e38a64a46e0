"""The three before/after numbers printed at the end of a run (the full suite is ``obliviate eval``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from obliviate.corpus import read_corpus
from obliviate.evaluation import quick
from obliviate.evaluation.overlap import blocks_text, overlap_notes, shared_fraction


@dataclass
class QuickEvalConfig:
    """Small, reusable before/after evaluation."""

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


def _general_texts(config: QuickEvalConfig, tokenizer) -> list[str]:
    """General text cut to ``general_max_tokens`` tokens: whole paragraphs, the last one truncated."""
    import re

    texts, budget = [], config.general_max_tokens
    for doc in read_corpus(config.general_text):
        for para in (p.strip() for p in re.split(r"\n\s*\n", doc) if p.strip()):
            ids = tokenizer(para, add_special_tokens=False)["input_ids"]
            if len(ids) >= budget:
                texts.append(tokenizer.decode(ids[:budget]))
                return texts
            texts.append(para)
            budget -= len(ids)
    return texts


def quick_eval(model, tokenizer, config: QuickEvalConfig, desc: str = "") -> dict:
    """Reference probability, familiarity and general perplexity (each skipped if its data is not set).

    Returns:
        ``{name: metric}`` in the metrics.json layout of ``docs/formats.md``.
    """
    metrics = {}
    if config.probe_prompts:
        items = quick.load_prompt_file(config.probe_prompts)
        r = quick.reference_probability(model, tokenizer, items, config.batch_size)
        metrics["reference_probability"] = {
            "family": "token_probability", "group": "forget", "value": r["mean"], "higher_is_better": False,
            "n": r["n"], "settings": {"prompts": config.probe_prompts}, "details": {"per_item": r["per_item"]}}
    if config.familiarity_prompts:
        items = quick.load_prompt_file(config.familiarity_prompts)
        r = quick.familiarity(model, tokenizer, items, config.max_new_tokens, config.batch_size)
        metrics["familiarity"] = {
            "family": "familiarity", "group": "forget", "value": r["score"], "higher_is_better": False,
            "n": r["n"], "settings": {"prompts": config.familiarity_prompts, "judge": "reference words",
                                      "decoding": "greedy", "max_new_tokens": config.max_new_tokens},
            "details": {"per_item": r["per_item"]}}
    if config.general_text:
        r = quick.perplexity(model, tokenizer, _general_texts(config, tokenizer),
                             batch_size=max(1, config.batch_size // 2))
        metrics["general_perplexity"] = {
            "family": "perplexity", "group": "utility", "value": r["perplexity"], "higher_is_better": False,
            "n": r["n_tokens"], "settings": {"texts": config.general_text,
                                             "max_tokens": config.general_max_tokens}, "details": r}
    return metrics


def _mark_trained_on(metric: dict, trained_blocks: dict, tokenizer, config: QuickEvalConfig) -> None:
    """Record in ``metric`` the share of general texts found in the run's training blocks (evaluation/overlap.py)."""
    general = _general_texts(config, tokenizer)
    shares = {role: round(shared_fraction(general, blocks_text(blocks, tokenizer)), 4)
              for role, blocks in trained_blocks.items() if blocks}
    shares = {role: share for role, share in shares.items() if share > 0}
    if shares:
        metric["training_overlap"] = {"general_text": shares}


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
    """Quick-evaluate each model, write the run's metrics.json and samples.jsonl, print the table.

    Args:
        folder: the run's ``RunFolder``.
        models: ``{label: model spec or a function returning a LoadedModel}``, e.g.
            ``{"base": "smollm2-135m", "unlearned": "runs/x/model"}``; loaded one at a time.
        config: what to evaluate.
        trained_blocks: ``{role: token blocks}`` the run trained on (``forget`` / ``retain``); general
            text found in them is marked on the models after the first (evaluation/overlap.py).

    Returns:
        The ``evaluations`` mapping written to metrics.json.
    """
    import json
    import sys
    import time

    import torch

    from obliviate.models import load_model
    from obliviate.runs import atomic_write_json, atomic_write_text

    if not (config.probe_prompts or config.familiarity_prompts or config.general_text):
        print("[eval] no probe prompts, familiarity prompts or general text given: nothing to evaluate",
              file=sys.stderr)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    evaluations, samples = {}, []
    for label, model in models.items():
        start = time.perf_counter()
        loaded = model() if callable(model) else load_model(model, device=device, trust_remote_code=trust_remote_code)
        metrics = quick_eval(loaded.model, loaded.tokenizer, config, desc=label)
        if trained_blocks and label != next(iter(models)) and "general_perplexity" in metrics:  # not the base
            _mark_trained_on(metrics["general_perplexity"], trained_blocks, loaded.tokenizer, config)
        evaluations[label] = {"model": {"spec": loaded.spec, "weights_sha256": loaded.weights_hash},
                              "suite": {"name": "quick"}, "seconds": round(time.perf_counter() - start, 2),
                              "metrics": metrics}
        for name, metric in metrics.items():
            for index, item in enumerate(metric.get("details", {}).get("per_item", [])):
                samples.append({"evaluation": label, "metric": name, "index": index, **item})
        del loaded
    atomic_write_json(folder.path / "metrics.json", {"obliviate_metrics": 1, "evaluations": evaluations})
    for label, evaluation in evaluations.items():
        for note in overlap_notes(label, evaluation["metrics"]):
            print(note, file=sys.stderr)
    atomic_write_text(folder.path / "samples.jsonl", "".join(json.dumps(s, default=str) + "\n" for s in samples))
    if any(e["metrics"] for e in evaluations.values()):
        print(format_table({label: e["metrics"] for label, e in evaluations.items()}), file=sys.stdout, flush=True)
    return evaluations
