"""Token probability: how likely the model finds the expected answer to a probe prompt.

"Harry Potter's best friends are Ron and" -> " Hermione": the probability of the whole answer
(the product of its tokens' probabilities) and of each of its tokens given the prompt and the
answer's previous tokens (the report's heat map). Optionally, the next-token probability mass on
the first tokens of an anchored-terms dictionary's expressions, which can be the headline number
(``score: anchored_mass``: the probability-based familiarity of the WHP paper). Lower is better
for unlearning.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from obliviate.evaluation.data import limit_items, resolve_data_path
from obliviate.evaluation.halves import check_half, select_half
from obliviate.evaluation.metric_math import mean_stderr
from obliviate.evaluation.prompts import PromptItem, load_prompt_file, reference_continuation, require_items
from obliviate.evaluation.result import MetricContext, MetricResult

__all__ = ["TokenProbabilitySpec", "reference_probability", "compute_token_probability"]


@dataclass
class TokenProbabilitySpec:
    name: str
    type: str = "token_probability"
    group: str = "forget"
    prompts: str = ""  # JSONL {"prompt", "references"}: probability of references[0]
    anchors: str | None = None  # dictionary: also report next-token mass on its expressions' first tokens
    score: str = "reference"  # the value: reference (probability of references[0]) | anchored_mass (needs anchors)
    half: str | None = None  # tune | heldout | null (all): obliviate.evaluation.halves
    batch_size: int = 8  # sequences per forward pass
    limit: int | None = None

    def check(self) -> list[tuple]:
        """Rules of the settings: ``(key, holds, rule)`` (obliviate.config convention)."""
        return [
            ("score", self.score in ("reference", "anchored_mass"), "reference or anchored_mass"),
            ("anchors", self.score != "anchored_mass" or bool(self.anchors),
             "a dictionary when score is anchored_mass"),
            check_half(self.half),
            ("batch_size", self.batch_size >= 1, ">= 1"),
            ("limit", self.limit is None or self.limit >= 1, ">= 1 or null"),
        ]


def reference_probability(
    model, tokenizer, items: list[PromptItem], batch_size: int = 8, progress: bool = False
) -> dict:
    """Mean probability of each item's first reference as the continuation of its prompt.

    The probability of a reference is exp(sum of its token log-probs), i.e. the probability of
    the whole (multi-token) answer, not a per-token average.

    Args:
        model: Hugging Face causal LM, already on its device.
        tokenizer: its tokenizer.
        items: prompts with their references; `references[0]` is scored.
        batch_size: sequences per forward pass.
        progress: show a progress bar.

    Returns:
        `{"mean": float, "n": int, "per_item": [{"prompt", "reference", "probability", "logprob",
        "tokens": [{"token", "probability"}]}]}`, `tokens` being the answer's tokens as scored (the
        continuation encoded without special tokens) with p(token | prompt, previous answer tokens).

    Raises:
        DataError: `items` is empty.
    """
    from obliviate.scoring import continuation_logprobs

    require_items(items)
    pairs = [(item.prompt, reference_continuation(item.prompt, item.references[0])) for item in items]
    logprobs = continuation_logprobs(
        model, tokenizer, pairs, batch_size=batch_size, progress=progress, desc="reference probability"
    )
    per_item = []
    for item, (_, continuation), token_logprobs in zip(items, pairs, logprobs):
        ids = tokenizer(continuation, add_special_tokens=False)["input_ids"]  # as continuation_logprobs encodes it
        total = sum(token_logprobs)
        tokens = [{"token": tokenizer.decode([token_id]), "probability": math.exp(lp)}
                  for token_id, lp in zip(ids, token_logprobs)]
        per_item.append({"prompt": item.prompt, "reference": item.references[0], "probability": math.exp(total),
                         "logprob": total, "tokens": tokens})
    mean = sum(row["probability"] for row in per_item) / len(per_item)
    return {"mean": mean, "per_item": per_item, "n": len(per_item)}


def _anchored_first_tokens(tokenizer, anchors_path) -> list[int]:
    from obliviate.whp.anchors import load_anchored_terms

    ids = set()
    for expression in load_anchored_terms(anchors_path):
        for text in (expression, " " + expression):
            tokens = tokenizer(text, add_special_tokens=False)["input_ids"]
            if tokens and any(ch.isalnum() for ch in tokenizer.decode(tokens[:1])):
                ids.add(tokens[0])
    return sorted(ids)


def compute_token_probability(model, tokenizer, spec: TokenProbabilitySpec, ctx: MetricContext) -> MetricResult:
    """Mean probability of the references of the spec's prompts (plus anchored mass if asked)."""
    items = select_half(load_prompt_file(resolve_data_path(spec.prompts, ctx.data_dir)), spec.half)
    items = limit_items(items, spec.limit)
    r = reference_probability(model, tokenizer, items, batch_size=spec.batch_size, progress=ctx.progress)
    per_item, details = r["per_item"], {}
    if spec.anchors:
        from obliviate.scoring import next_token_distribution

        ids = _anchored_first_tokens(tokenizer, resolve_data_path(spec.anchors, ctx.data_dir))
        probs = next_token_distribution(model, tokenizer, [i.prompt for i in items])  # (N, V)
        mass = probs[:, ids].sum(-1).tolist()  # (N,)
        for row, m in zip(per_item, mass):
            row["anchored_mass"] = m
        details["anchored_mass"] = sum(mass) / len(mass)
        details["anchored_first_tokens"] = len(ids)
    if spec.score == "anchored_mass":
        details["reference_probability"] = r["mean"]
        value, stderr = mean_stderr([row["anchored_mass"] for row in per_item])
    else:
        value, stderr = r["mean"], mean_stderr([row["probability"] for row in per_item])[1]
    return MetricResult(value=value, higher_is_better=False, n=r["n"], stderr=stderr, settings=asdict(spec),
                        details=details, per_item=per_item)
