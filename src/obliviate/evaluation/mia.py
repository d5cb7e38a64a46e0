"""Membership inference: can the forget set still be told apart from text the model never saw?

Four reference-free attacks score each text, all oriented so that higher = more member-like:

- `loss`: mean token log-prob (Yeom et al. 2018).
- `zlib`: mean token log-prob over zlib entropy (Carlini et al. 2021).
- `min_k`: Min-K% Prob (Shi et al. 2023).
- `min_k_plus_plus`: Min-K%++ (Zhang et al. 2024), which needs the mean and standard deviation of
  log p(z | x_<t) over the whole vocabulary at every position.

Each attack gives an AUC with the members as positives (0.5: indistinguishable). Given the AUCs of a
reference model (ideally one never trained on the members), each also gives MUSE's PrivLeak.

The model is run once by `token_stats`, which returns per-token (log-prob, mu, sigma); the maths
lives in `obliviate.evaluation.metric_math`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch

from obliviate.errors import ConfigError, DataError
from obliviate.evaluation.data import Texts, read_texts
from obliviate.evaluation.metric_math import (
    loss_score,
    min_k_percent,
    min_k_plus_plus,
    privleak,
    roc_auc,
    zlib_ratio,
)
from obliviate.evaluation.result import MetricContext, MetricResult
from obliviate.scoring import (
    _batches_by_length,
    _device,
    _eval_mode,
    _forward_logits,
    _pad,
    _pad_id,
    model_context_length,
)

__all__ = ["MIA_SCORES", "MembershipSpec", "TokenStats", "token_stats", "mia_scores", "membership_inference",
           "compute_membership"]

MIA_SCORES = ("loss", "zlib", "min_k", "min_k_plus_plus")



@dataclass
class MembershipSpec:
    name: str
    type: str = "membership_inference"
    group: str = "forget"
    members: Texts = field(default_factory=Texts)  # the forget text
    nonmembers: Texts = field(default_factory=Texts)  # similar text never trained on
    k: float = 0.4  # Min-K% fraction: MUSE and open-unlearning use k = 0.4
    max_length: int = 512
    batch_size: int = 4  # texts per forward pass
    reference_model: str | None = None  # a model never trained on the members: adds MUSE PrivLeak

    def check(self) -> list[tuple]:
        """Rules of the settings: ``(key, holds, rule)`` (obliviate.config convention)."""
        return [
            ("k", 0 < self.k <= 1, "in (0, 1]"),
            ("max_length", self.max_length >= 2, ">= 2"),
            ("batch_size", self.batch_size >= 1, ">= 1"),
        ]


# Positions whose (V,) distributions are reduced at once: bounds memory to ~3 x CHUNK x V floats.
_POSITION_CHUNK = 128


@dataclass
class TokenStats:
    """Per-token statistics of one text, for tokens 1..n-1 (token 0 has no context).

    Attributes:
        logprobs: log p(x_t | x_<t).
        mu: E_{z ~ p(.|x_<t)} log p(z | x_<t) (minus the entropy of the next-token distribution).
        sigma: standard deviation of log p(z | x_<t) for z ~ p(.|x_<t).
        truncated: the text was longer than `max_length` tokens and was cut.
    """

    logprobs: list[float]
    mu: list[float]
    sigma: list[float]
    truncated: bool = False


def _distribution_stats(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """(logprob of target, mu, sigma) at each of n positions from (n, V) logits, in float32."""
    logprobs = torch.log_softmax(logits.float(), dim=-1)  # (n, V)
    probs = logprobs.exp()
    # xlogy-style: a token of probability 0 (logit -inf) contributes 0, not 0 * -inf = nan
    weighted = torch.where(probs > 0, probs * logprobs, torch.zeros_like(probs))
    mu = weighted.sum(-1)  # (n,)
    centred = torch.where(probs > 0, logprobs - mu[:, None], torch.zeros_like(probs))
    sigma = (probs * centred.square()).sum(-1).sqrt()  # (n,)
    target_logprobs = logprobs.gather(-1, targets[:, None]).squeeze(-1)  # (n,)
    return target_logprobs, mu, sigma


def token_stats(model, tokenizer, texts: list[str], max_length: int = 512, batch_size: int = 4) -> list[TokenStats]:
    """One forward pass per text: per-token log-prob and the mean/std of the next-token log-probs.

    Texts are encoded with `tokenizer(text)` (so a BOS added by the tokenizer is token 0), cut to
    their first `max_length` tokens (no rolling windows: the attacks score the text the model sees
    in one piece), right-padded and batched by length, under `torch.inference_mode()`. The
    model's training flag is restored afterwards.

    Args:
        model: Hugging Face causal LM, already on its device.
        tokenizer: its tokenizer (not modified).
        texts: texts to score.
        max_length: most tokens kept per text (clamped to the model's context length).
        batch_size: texts per forward pass.

    Returns:
        One `TokenStats` per text, in input order; its lists have `n_tokens - 1` entries.

    Raises:
        ConfigError: `max_length` below 2 or `batch_size` below 1.
    """
    if max_length < 2:
        raise ConfigError(f"max_length must be at least 2 tokens, got {max_length}.")
    max_length = min(max_length, model_context_length(model))
    encoded = [list(tokenizer(text)["input_ids"]) for text in texts]
    truncated = [len(ids) > max_length for ids in encoded]
    encoded = [ids[:max_length] for ids in encoded]
    results = [TokenStats([], [], [], cut) for cut in truncated]
    device = _device(model)
    with _eval_mode(model):
        for batch in _batches_by_length([len(ids) for ids in encoded], batch_size):
            batch = [i for i in batch if len(encoded[i]) >= 2]
            if not batch:
                continue
            input_ids, attention_mask = _pad([encoded[i] for i in batch], _pad_id(tokenizer), "right", device)
            logits = _forward_logits(model, input_ids, attention_mask)  # (B, T, V)
            for row, i in enumerate(batch):
                n = len(encoded[i])
                targets = input_ids[row, 1:n]  # (n-1,): logits at t-1 predict token t
                for start in range(0, n - 1, _POSITION_CHUNK):
                    stop = min(start + _POSITION_CHUNK, n - 1)
                    lp, mu, sigma = _distribution_stats(logits[row, start:stop], targets[start:stop])
                    results[i].logprobs.extend(lp.tolist())
                    results[i].mu.extend(mu.tolist())
                    results[i].sigma.extend(sigma.tolist())
    return results


def mia_scores(stats: TokenStats, text: str, k: float) -> dict[str, float]:
    """The four attack scores of one text from its token statistics (pure; higher = more member-like).

    Args:
        stats: output of `token_stats` for `text`.
        text: the text (for the zlib entropy).
        k: Min-K% fraction, in (0, 1].

    Returns:
        `{"loss", "zlib", "min_k", "min_k_plus_plus"}`.
    """
    loss = loss_score(stats.logprobs)
    return {
        "loss": loss,
        "zlib": zlib_ratio(loss, text),
        "min_k": min_k_percent(stats.logprobs, k),
        "min_k_plus_plus": min_k_plus_plus(stats.logprobs, stats.mu, stats.sigma, k),
    }


def membership_inference(
    model,
    tokenizer,
    members: list[str],
    nonmembers: list[str],
    k: float = 0.4,
    max_length: int = 512,
    batch_size: int = 4,
    reference_auc: dict[str, float] | None = None,
) -> dict:
    """AUC of four membership-inference attacks separating `members` from `nonmembers`.

    For unlearning, `members` is the forget set and `nonmembers` a holdout set of similar text the
    model never saw; after successful unlearning every AUC should be near 0.5 (or near the
    reference model's AUC).

    Args:
        model: Hugging Face causal LM, already on its device.
        tokenizer: its tokenizer.
        members: texts the model was trained on (the forget set).
        nonmembers: similar texts it was not trained on.
        k: Min-K% / Min-K%++ fraction of tokens, in (0, 1].
        max_length: most tokens scored per text (longer texts are cut; the zlib entropy is still
            that of the whole text, so keep texts under `max_length` for a clean zlib score).
        batch_size: texts per forward pass.
        reference_auc: AUCs of a reference model, e.g. `{name: ref[name]["auc"] for name in MIA_SCORES}`
            for `ref` the result of this function on a model retrained without the members; each
            score named here also gets MUSE's `privleak` (see `metric_math.privleak`).

    Returns:
        `{"loss": {"auc", "privleak"?}, "zlib": {...}, "min_k": {...}, "min_k_plus_plus": {...},
        "n_members", "n_nonmembers", "n_truncated", "settings": {"k", "max_length"},
        "per_item": [{"text", "member", "n_tokens", "loss", "zlib", "min_k", "min_k_plus_plus"}]}`
        with members first in `per_item`.

    Raises:
        DataError: `members` or `nonmembers` is empty, or a text has fewer than two tokens.
        ConfigError: `k` outside (0, 1], or `reference_auc` names an unknown score.
    """
    if not members or not nonmembers:
        raise DataError(
            f"membership inference needs members and non-members, got {len(members)} and {len(nonmembers)}; "
            "pass at least one text of each."
        )
    if not 0.0 < k <= 1.0:  # checked before the forward pass, not after
        raise ConfigError(f"k is the fraction of tokens kept and must be in (0, 1], got {k}; e.g. k=0.2 for Min-20%.")
    unknown = sorted(set(reference_auc or {}) - set(MIA_SCORES))
    if unknown:
        raise ConfigError(f"reference_auc names unknown scores {unknown}; use some of {list(MIA_SCORES)}.")
    texts = list(members) + list(nonmembers)
    stats = token_stats(model, tokenizer, texts, max_length=max_length, batch_size=batch_size)
    per_item = []
    for index, (text, text_stats) in enumerate(zip(texts, stats)):
        is_member = index < len(members)
        if not text_stats.logprobs:
            kind, position = ("member", index) if is_member else ("non-member", index - len(members))
            raise DataError(
                f"{kind} text #{position} ({text[:40]!r}) has fewer than two tokens, so nothing can be "
                "scored; drop it or give longer texts."
            )
        row = {"text": text, "member": is_member, "n_tokens": len(text_stats.logprobs) + 1}
        row.update(mia_scores(text_stats, text, k))
        per_item.append(row)

    result: dict = {}
    for name in MIA_SCORES:
        auc = roc_auc([r[name] for r in per_item if r["member"]], [r[name] for r in per_item if not r["member"]])
        result[name] = {"auc": auc}
        if reference_auc and name in reference_auc:
            result[name]["privleak"] = privleak(auc, reference_auc[name])
    result.update(
        n_members=len(members),
        n_nonmembers=len(nonmembers),
        n_truncated=sum(s.truncated for s in stats),
        settings={"k": k, "max_length": max_length},
        per_item=per_item,
    )
    return result


def compute_membership(model, tokenizer, spec: MembershipSpec, ctx: MetricContext) -> MetricResult:
    """AUC of the LOSS attack (value) and of the others (details); 0.5 = members look unseen."""
    members = read_texts(spec.members, ctx.data_dir)
    nonmembers = read_texts(spec.nonmembers, ctx.data_dir)
    reference_auc = None
    if spec.reference_model:
        from obliviate.models import load_model

        ref = load_model(spec.reference_model, device=ctx.device)
        r_ref = membership_inference(ref.model, ref.tokenizer, members, nonmembers, k=spec.k,
                                     max_length=spec.max_length, batch_size=spec.batch_size)
        reference_auc = {name: r_ref[name]["auc"] for name in MIA_SCORES}
    r = membership_inference(model, tokenizer, members, nonmembers, k=spec.k, max_length=spec.max_length,
                             batch_size=spec.batch_size, reference_auc=reference_auc)
    per_item = r.pop("per_item")
    return MetricResult(value=r["loss"]["auc"], higher_is_better=False, n=r["n_members"] + r["n_nonmembers"],
                        settings=asdict(spec), details=r, per_item=per_item)
