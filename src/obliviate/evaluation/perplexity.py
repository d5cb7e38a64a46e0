"""Perplexity of the model on text: general text (utility), near-domain text (retain) or held-out
target text (forget: higher means the target was forgotten).

Pooled over all scored tokens: exp(total NLL / total tokens). The maths is
`perplexity_from_logprobs`; the model is reached through `scoring.sequence_token_logprobs`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from obliviate.errors import ConfigError, DataError
from obliviate.evaluation.data import Texts, read_texts
from obliviate.evaluation.result import MetricContext, MetricResult

__all__ = ["PerplexitySpec", "perplexity_from_logprobs", "perplexity", "first_tokens", "scored_texts",
           "compute_perplexity"]


@dataclass
class PerplexitySpec:
    name: str
    type: str = "perplexity"
    group: str = "utility"  # forget (higher = forgot) | retain | utility
    texts: Texts = field(default_factory=Texts)
    max_length: int = 512  # scoring window in tokens; longer texts are scored in rolling windows
    max_tokens: int | None = None  # score only the first N tokens of the texts (None: all)
    batch_size: int = 4  # windows per forward pass

    def check(self) -> list[tuple]:
        """Rules of the settings: ``(key, holds, rule)`` (obliviate.config convention)."""
        return [
            ("max_length", self.max_length >= 2, ">= 2"),
            ("max_tokens", self.max_tokens is None or self.max_tokens >= 1, ">= 1 or null"),
            ("batch_size", self.batch_size >= 1, ">= 1"),
        ]


def perplexity_from_logprobs(token_logprobs: list[list[float]]) -> dict:
    """Corpus perplexity exp(total NLL / total tokens) from per-token log-probs (natural log).

    Args:
        token_logprobs: one list of token log-probs per text.

    Returns:
        `{"perplexity": float, "n_tokens": int, "nll": float}`, `nll` being the total negative
        log-likelihood in nats (so perplexity = exp(nll / n_tokens)).

    Raises:
        DataError: no token was scored (every text shorter than two tokens).
    """
    n_tokens = sum(len(lps) for lps in token_logprobs)
    if n_tokens == 0:
        raise DataError("no token to score: every text is shorter than two tokens; pass longer texts.")
    nll = -sum(sum(lps) for lps in token_logprobs)
    return {"perplexity": math.exp(nll / n_tokens), "n_tokens": n_tokens, "nll": nll}


def perplexity(
    model, tokenizer, texts: list[str], max_length: int = 512, batch_size: int = 4, progress: bool = False
) -> dict:
    """Perplexity of the model on `texts`, pooled over all their tokens.

    Args:
        model: Hugging Face causal LM, already on its device.
        tokenizer: its tokenizer.
        texts: general texts (e.g. Wikipedia paragraphs).
        max_length: scoring window in tokens (clamped to the model's context); longer texts are
            scored in rolling windows (see `sequence_token_logprobs`).
        batch_size: windows per forward pass.
        progress: show a progress bar.

    Returns:
        The dict of `perplexity_from_logprobs` (`perplexity`, `n_tokens`, `nll`).
    """
    from obliviate.scoring import model_context_length, sequence_token_logprobs

    max_length = min(max_length, model_context_length(model))
    logprobs = sequence_token_logprobs(
        model, tokenizer, texts, max_length=max_length, batch_size=batch_size, progress=progress, desc="perplexity"
    )
    return perplexity_from_logprobs(logprobs)


def first_tokens(texts: list[str], tokenizer, max_tokens: int) -> list[str]:
    """The texts cut to ``max_tokens`` tokens in all: whole texts, the last one truncated.

    Raises:
        ConfigError: ``max_tokens`` is below 1.
    """
    if max_tokens < 1:
        raise ConfigError(f"max_tokens must be at least 1, not {max_tokens}")
    kept, budget = [], max_tokens
    for text in texts:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(ids) >= budget:
            kept.append(tokenizer.decode(ids[:budget]))
            return kept
        kept.append(text)
        budget -= len(ids)
    return kept


def scored_texts(spec: PerplexitySpec, tokenizer, data_dir) -> list[str]:
    """The texts the metric scores: the spec's texts, cut to ``max_tokens`` if set."""
    texts = read_texts(spec.texts, data_dir)
    return first_tokens(texts, tokenizer, spec.max_tokens) if spec.max_tokens else texts


def compute_perplexity(model, tokenizer, spec: PerplexitySpec, ctx: MetricContext) -> MetricResult:
    """Perplexity on the spec's texts; higher is better only for a forget-group perplexity."""
    r = perplexity(model, tokenizer, scored_texts(spec, tokenizer, ctx.data_dir), max_length=spec.max_length,
                   batch_size=spec.batch_size, progress=ctx.progress)
    return MetricResult(value=r["perplexity"], higher_is_better=spec.group == "forget", n=r["n_tokens"],
                        settings=asdict(spec), details=r)
