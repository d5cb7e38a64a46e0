"""Synthesize a target corpus by sampling the model itself (`obliviate synthesize`).

When no text about the target is at hand, the model's own knowledge is the corpus: sample
continuations of short seed prompts ("Harry Potter and his friends Ron and Hermione") and keep
prompt + continuation. Sampling goes through `obliviate.scoring.generate`, so it is batched,
seeded and shows a progress bar.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

from obliviate.errors import ConfigError, DataError
from obliviate.jsonl import display_path, text_lines, write_text_atomic
from obliviate.scoring import generate

__all__ = ["check_sampling_settings", "load_seed_prompts", "synthesize_records", "synthesize_corpus", "write_corpus",
           "is_degenerate"]

logger = logging.getLogger(__name__)

MIN_CONTINUATION_CHARS = 20


def load_seed_prompts(path) -> list[str]:
    """Read seed prompts: one per non-empty line; lines starting with '#' are comments.

    Args:
        path: a UTF-8 text file.

    Returns:
        The prompts, stripped of surrounding whitespace, in file order.

    Raises:
        DataError: the file is missing or unreadable, or holds no prompt.
    """
    path = Path(path)
    lines = text_lines(path, "seed prompt file", "give a text file with one prompt per line")
    prompts = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not prompts:
        raise DataError(f"seed prompt file {display_path(path)} holds no prompt; add one prompt per line "
                        "('#' starts a comment).")
    return prompts


def is_degenerate(continuation: str) -> bool:
    """True for a sample not worth keeping: under 20 characters, or one word/token repeated.

    Args:
        continuation: the generated text, without its prompt.
    """
    words = continuation.split()
    return len(continuation.strip()) < MIN_CONTINUATION_CHARS or len(set(words)) <= 1


def check_sampling_settings(n_samples: int, max_new_tokens: int, temperature: float, top_p: float = 0.95,
                            batch_size: int = 8) -> None:
    """Refuse, before any model is loaded, settings that cannot sample a corpus.

    Raises:
        ConfigError: a count below 1, a temperature that is not a finite number above 0, or a
            top_p outside (0, 1].
    """
    for name, value in (("n_samples (--n)", n_samples), ("max_new_tokens (--max-new-tokens)", max_new_tokens),
                        ("batch_size (--batch-size)", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name} must be a whole number of at least 1, got {value!r}.")
    if not isinstance(temperature, (int, float)) or not math.isfinite(temperature) or temperature <= 0:
        raise ConfigError(f"temperature (--temperature) must be a finite number above 0, got {temperature!r}; "
                          "0.9 is the usual choice.")
    if not isinstance(top_p, (int, float)) or not math.isfinite(top_p) or not 0 < top_p <= 1:
        raise ConfigError(f"top_p must be in (0, 1], got {top_p!r}.")


def _chat_prompt(tokenizer, seed_prompt: str) -> str:
    if not getattr(tokenizer, "chat_template", None):
        raise ConfigError("chat=True but the tokenizer has no chat template; use chat=False (raw seed prompts).")
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": seed_prompt}], tokenize=False, add_generation_prompt=True
    )


def synthesize_records(
    model,
    tokenizer,
    seed_prompts: list[str],
    n_samples: int,
    max_new_tokens: int = 256,
    temperature: float = 0.9,
    top_p: float = 0.95,
    batch_size: int = 8,
    seed: int = 0,
    progress: bool = True,
    chat: bool | None = None,
) -> list[dict]:
    """Sample `n_samples` texts, cycling through the seed prompts; keep the non-degenerate ones.

    Same arguments as `synthesize_corpus`.

    Returns:
        `[{"text": str, "seed_prompt": str}]` in sample order, degenerate samples dropped (so
        possibly fewer than `n_samples`).
    """
    check_sampling_settings(n_samples, max_new_tokens, temperature, top_p, batch_size)
    if not seed_prompts:
        raise DataError("no seed prompts; load some with load_seed_prompts.")
    chosen = [seed_prompts[i % len(seed_prompts)] for i in range(n_samples)]
    if chat:
        prompts = [_chat_prompt(tokenizer, prompt) for prompt in chosen]
    else:
        prompts = chosen
    continuations = generate(
        model,
        tokenizer,
        prompts,
        max_new_tokens=max_new_tokens,
        do_sample=True,
        temperature=temperature,
        top_p=top_p,
        batch_size=batch_size,
        seed=seed,
        progress=progress,
        add_special_tokens=not chat,  # a chat template already holds its special tokens
        desc="synthesizing",
    )
    records = []
    for seed_prompt, (continuation,) in zip(chosen, continuations):
        if is_degenerate(continuation):
            continue
        text = continuation.strip() if chat else seed_prompt + continuation.rstrip()
        records.append({"text": text, "seed_prompt": seed_prompt})
    if len(records) < n_samples:
        logger.warning("dropped %d of %d samples as empty or degenerate", n_samples - len(records), n_samples)
    return records


def synthesize_corpus(
    model,
    tokenizer,
    seed_prompts: list[str],
    n_samples: int,
    max_new_tokens: int = 256,
    temperature: float = 0.9,
    top_p: float = 0.95,
    batch_size: int = 8,
    seed: int = 0,
    progress: bool = True,
    chat: bool | None = None,
) -> list[str]:
    """Sample a corpus of texts about the target from the model itself.

    Sample i continues `seed_prompts[i % len(seed_prompts)]`; for a given seed and batch size the
    corpus is reproducible. Samples with fewer than 20 new characters or a single repeated word
    are dropped, so fewer than `n_samples` texts may come back (a warning says how many were
    dropped). Use `synthesize_records` to also know each text's seed prompt.

    Args:
        model: Hugging Face causal LM, already on its device.
        tokenizer: its tokenizer.
        seed_prompts: raw text beginnings ("Harry Potter and his friends Ron and Hermione").
        n_samples: number of samples drawn.
        max_new_tokens: tokens sampled per text.
        temperature: sampling temperature.
        top_p: nucleus sampling mass.
        batch_size: prompts per generation call.
        seed: sampling seed.
        progress: show a progress bar.
        chat: None or False: seed prompts are raw text and each text is prompt + continuation.
            True: each seed prompt is sent as a user message through the tokenizer's chat
            template and only the model's answer is kept.

    Returns:
        The texts, in sample order.

    Raises:
        ConfigError: a setting `check_sampling_settings` refuses, or `chat=True` with a tokenizer
            that has no chat template.
        DataError: no seed prompts.
    """
    records = synthesize_records(
        model, tokenizer, seed_prompts, n_samples, max_new_tokens=max_new_tokens, temperature=temperature,
        top_p=top_p, batch_size=batch_size, seed=seed, progress=progress, chat=chat,
    )  # fmt: skip
    return [record["text"] for record in records]


def write_corpus(texts, path) -> None:
    """Write a corpus as JSONL lines `{"text", "seed_prompt"}`, atomically (temp file + os.replace).

    Args:
        texts: strings (written with `"seed_prompt": null`) or the records of `synthesize_records`.
        path: the JSONL file; its folder is created if needed.

    Raises:
        DataError: the file cannot be written (a folder, a read-only place, a full disk).
    """
    def lines():
        for item in texts:
            record = {"text": item, "seed_prompt": None} if isinstance(item, str) else item
            yield json.dumps({"text": record["text"], "seed_prompt": record.get("seed_prompt")},
                             ensure_ascii=False) + "\n"

    write_text_atomic(path, lines(), "corpus file")
