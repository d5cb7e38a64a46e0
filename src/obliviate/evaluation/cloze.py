"""Fact cloze: does the model still give the next word that only the target's knowledge gives?

"Harry's pet owl is named" -> " Hedwig": the score of a prompt is p(first token of the answer |
prompt), and whether that token is the model's greedy choice. A prompt's answer is ``references[0]``
(``{"prompt", "references"}`` JSONL); the continuation is ``" " + answer`` unless the prompt ends
with whitespace. Only the first token counts, so answers split into several tokens are scored on the
token that commits to them. Lower is better on the target (group forget), higher on neighbours and
control facts (group retain).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from obliviate.evaluation.data import limit_items, resolve_data_path
from obliviate.evaluation.halves import check_half, item_half, select_half
from obliviate.evaluation.metric_math import mean_stderr
from obliviate.evaluation.prompts import load_prompt_file, reference_continuation, require_items
from obliviate.evaluation.result import MetricContext, MetricResult

__all__ = ["ClozeSpec", "cloze_scores", "cloze_target_ids", "compute_cloze"]


@dataclass
class ClozeSpec:
    name: str
    type: str = "cloze"
    group: str = "forget"  # forget: the target's facts; retain: neighbour-domain and control facts
    prompts: str = ""  # JSONL {"prompt", "references": [answer, ...]}: the first token of references[0]
    half: str | None = None  # tune | heldout | null (all): obliviate.evaluation.halves
    batch_size: int = 8  # prompts per forward pass
    limit: int | None = None

    def check(self) -> list[tuple]:
        """Rules of the settings: ``(key, holds, rule)`` (obliviate.config convention)."""
        return [
            check_half(self.half),
            ("batch_size", self.batch_size >= 1, ">= 1"),
            ("limit", self.limit is None or self.limit >= 1, ">= 1 or null"),
        ]


def cloze_scores(probs, target_ids: list[int]) -> dict:
    """Probability of each prompt's target token and whether it is the most probable one.

    Pure tensor maths: no model involved. Ties for the top go to the lowest token id (torch.argmax).

    Args:
        probs: (N, V) next-token probabilities, one row per prompt.
        target_ids: the N target token ids.

    Returns:
        ``{"probability": [N floats], "greedy": [N bools], "mean": float, "greedy_share": float}``.
    """
    import torch

    index = torch.tensor(target_ids, dtype=torch.long).unsqueeze(-1)  # (N, 1)
    probability = probs.gather(-1, index).squeeze(-1)  # (N,)
    greedy = probs.argmax(-1) == index.squeeze(-1)  # (N,)
    n = len(target_ids)
    return {"probability": probability.tolist(), "greedy": greedy.tolist(),
            "mean": float(probability.sum()) / n, "greedy_share": float(greedy.sum()) / n}


def cloze_target_ids(tokenizer, items) -> list[int]:
    """First token of each item's answer continuation, encoded as ``continuation_logprobs`` encodes it."""
    return [tokenizer(reference_continuation(item.prompt, item.references[0]), add_special_tokens=False)["input_ids"][0]
            for item in items]


def compute_cloze(model, tokenizer, spec: ClozeSpec, ctx: MetricContext) -> MetricResult:
    """Mean probability of the answers' first tokens at the spec's prompts (and the greedy share)."""
    from obliviate.scoring import next_token_distribution

    items = select_half(load_prompt_file(resolve_data_path(spec.prompts, ctx.data_dir)), spec.half)
    items = limit_items(items, spec.limit)
    require_items(items)
    target_ids = cloze_target_ids(tokenizer, items)
    probs = next_token_distribution(model, tokenizer, [i.prompt for i in items], batch_size=spec.batch_size)  # (N, V)
    scores = cloze_scores(probs, target_ids)
    top_ids = probs.argmax(-1).tolist()
    per_item = [{"prompt": item.prompt, "reference": item.references[0], "target_token": tokenizer.decode([tid]),
                 "probability": p, "greedy": g, "top_token": tokenizer.decode([top]), "half": item_half(item),
                 **{k: v for k, v in item.meta.items() if k in ("source", "topic", "answer_in_training_text")}}
                for item, tid, p, g, top in zip(items, target_ids, scores["probability"], scores["greedy"], top_ids)]
    _, stderr = mean_stderr(scores["probability"])
    _, greedy_stderr = mean_stderr([float(g) for g in scores["greedy"]])
    return MetricResult(value=scores["mean"], higher_is_better=spec.group != "forget", n=len(items), stderr=stderr,
                        settings=asdict(spec), per_item=per_item,
                        details={"greedy_share": scores["greedy_share"], "greedy_share_stderr": greedy_stderr})
