"""Familiarity: do the model's completions of target prompts reveal the target?

The completion-based familiarity test of Eldan & Russinovich 2023 ("Who's Harry Potter?", arXiv
2310.02238): complete each prompt, then judge the completions either offline by reference words
(`familiarity_reference_words`: share of completions naming one of the prompt's references) or by
an LLM judge behind an OpenAI-compatible endpoint (`obliviate.evaluation.judge`, the paper's 0-3
rubric). Lower is better for unlearning.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

from obliviate.errors import ConfigError
from obliviate.evaluation.metric_math import mean_stderr
from obliviate.evaluation.data import limit_items, resolve_data_path
from obliviate.evaluation.halves import check_half, select_half
from obliviate.evaluation.prompts import PromptItem, load_prompt_file, require_items
from obliviate.evaluation.result import MetricContext, MetricResult

__all__ = ["FamiliaritySpec", "familiarity_reference_words", "compute_familiarity"]


@dataclass
class FamiliaritySpec:
    name: str
    type: str = "familiarity"
    group: str = "forget"
    prompts: str = ""  # JSONL {"prompt", "references"}
    half: str | None = None  # tune | heldout | null (all): obliviate.evaluation.halves
    decoding: str = "greedy"  # greedy | sample
    n_samples: int = 1  # completions per prompt when sampling
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 48
    batch_size: int = 8  # prompts per generation call
    judge: str = "words"  # words (offline) | llm (OpenAI-compatible endpoint)
    judge_url: str | None = None  # e.g. http://127.0.0.1:8080/v1 (`obliviate eval --judge-url` overrides it)
    judge_model: str = "judge"
    judge_timeout: float = 30.0
    target_description: str = "the target"
    limit: int | None = None
    seed: int = 0

    def check(self) -> list[tuple]:
        """Rules of the settings: ``(key, holds, rule)`` (obliviate.config convention)."""
        return [
            ("decoding", self.decoding in ("greedy", "sample"), "greedy or sample"),
            ("n_samples", self.n_samples >= 1, ">= 1"),
            ("temperature", self.temperature > 0, "> 0"),
            ("top_p", 0 < self.top_p <= 1, "in (0, 1]"),
            ("max_new_tokens", self.max_new_tokens >= 1, ">= 1"),
            ("batch_size", self.batch_size >= 1, ">= 1"),
            ("judge", self.judge in ("words", "llm"), "words or llm"),
            ("judge_timeout", self.judge_timeout > 0, "> 0"),
            ("limit", self.limit is None or self.limit >= 1, ">= 1 or null"),
            check_half(self.half),
        ]


def _reference_pattern(reference: str) -> re.Pattern:
    # Whole words only: "Ron" matches "Ron," and "Ron's" but not "Ronald" or "Ronnie". Lookarounds
    # rather than \b so references that start or end with punctuation ("J.K.") still match.
    words = r"\s+".join(re.escape(word) for word in reference.split())
    return re.compile(rf"(?<!\w){words}(?!\w)", re.IGNORECASE)


def familiarity_reference_words(completions: list[str], items: list[PromptItem]) -> dict:
    """Share of completions that contain at least one of their item's reference words.

    Matching is case-insensitive and on whole words: "Ron" matches "ron's" but not "Ronald";
    in a multi-word reference ("invisibility cloak") any run of whitespace matches a space.
    Pure function: no model involved.

    Args:
        completions: one completion per item, in the same order.
        items: the prompt items the completions answer.

    Returns:
        `{"score": float in [0, 1], "n": int, "per_item": [{"prompt", "completion", "hits", "familiar"}]}`
        where `hits` lists the matched references in the item's order.

    Raises:
        DataError: `items` is empty.
        ValueError: `completions` and `items` differ in length.
    """
    require_items(items)
    if len(completions) != len(items):
        raise ValueError(f"got {len(completions)} completions for {len(items)} items; pass one completion per item.")
    per_item = []
    for completion, item in zip(completions, items):
        hits = [ref for ref in dict.fromkeys(item.references) if _reference_pattern(ref).search(completion)]
        per_item.append({"prompt": item.prompt, "completion": completion, "hits": hits, "familiar": bool(hits)})
    score = sum(row["familiar"] for row in per_item) / len(per_item)
    return {"score": score, "per_item": per_item, "n": len(per_item)}


def compute_familiarity(model, tokenizer, spec: FamiliaritySpec, ctx: MetricContext) -> MetricResult:
    """Complete the spec's prompts and score the completions by reference words or an LLM judge.

    The judge's API key is sent only when the user's command line names both the key's
    environment variable and the judge URL (``ctx.judge_api_key_env``, ``ctx.judge_url``).

    Raises:
        ConfigError: bad decoding or judge settings.
        SkippedMetric: the LLM judge cannot be reached or gives no score.
    """
    from obliviate.scoring import generate

    items = select_half(load_prompt_file(resolve_data_path(spec.prompts, ctx.data_dir)), spec.half)
    items = limit_items(items, spec.limit)
    sample = spec.decoding == "sample"
    n = spec.n_samples if sample else 1
    outs = generate(model, tokenizer, [i.prompt for i in items], max_new_tokens=spec.max_new_tokens, do_sample=sample,
                    temperature=spec.temperature, top_p=spec.top_p, num_return_sequences=n, seed=spec.seed,
                    batch_size=spec.batch_size, progress=ctx.progress, desc=spec.name)
    flat_items = [item for item in items for _ in range(n)]
    completions = [c for cs in outs for c in cs]
    words = familiarity_reference_words(completions, flat_items)
    settings = {k: v for k, v in asdict(spec).items() if k not in ("name", "type", "group")}
    if spec.judge == "words":
        _, stderr = mean_stderr([float(row["familiar"]) for row in words["per_item"]])
        return MetricResult(value=words["score"], higher_is_better=False, n=words["n"], stderr=stderr, settings=settings,
                            details={"judge": "reference words"}, per_item=words["per_item"])
    from obliviate.evaluation.judge import judge_completions

    url = ctx.judge_url or spec.judge_url
    if not url:
        raise ConfigError(f"metric '{spec.name}': judge: llm needs judge_url (an OpenAI-compatible endpoint) "
                          "in the suite or --judge-url on the command line")
    if ctx.judge_api_key_env and not ctx.judge_url:
        raise ConfigError("a judge API key is sent only to a URL given on the command line: "
                          "pass --judge-url together with --judge-api-key-env")
    judged = judge_completions([{"prompt": i.prompt, "completion": c, "references": i.references}
                                for i, c in zip(flat_items, completions)], url, spec.judge_model,
                               api_key_env=ctx.judge_api_key_env, timeout=spec.judge_timeout,
                               target_description=spec.target_description)
    per_item = [{**w, "rating": j.get("rating")} for w, j in zip(words["per_item"], judged["per_item"])]
    settings["judge_url"] = url
    return MetricResult(value=judged["score"], higher_is_better=False, n=judged["n"], stderr=judged["stderr"],
                        settings=settings, per_item=per_item,
                        details={"judge": "llm", "reference_words_score": words["score"],
                                 "ratings": judged["ratings"]})
