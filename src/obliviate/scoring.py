"""Model primitives for evaluation: the only code that runs a model to score or sample text.

In the manner of lm-evaluation-harness, every metric reaches the model through these four functions:

- `continuation_logprobs`: log p(continuation tokens | context), per token (and
  `continuation_greedy_matches`: is each of those tokens the argmax?).
- `sequence_token_logprobs`: log p(token_t | tokens_<t) over whole texts (rolling windows if long).
- `generate`: batched greedy or sampled continuations (left padding).
- `next_token_distribution`: p(next token | prompt) over the whole vocabulary.
- `last_token_hidden_states`: every layer's hidden state at each text's last token (linear probes).

All of them put the model in eval mode (restoring its training flag afterwards), run under
`torch.inference_mode()`, batch the inputs and, with `progress=True`, show a tqdm bar counting
tokens (throughput in tok/s and an ETA).

Padding is done here, from token ids, never through `tokenizer.pad`: the caller's tokenizer is never
modified. The pad id is the tokenizer's pad token, else its EOS token, else 0; padded positions are
always masked out, so the choice never changes a result.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterator, Sequence

import torch

from obliviate.errors import ConfigError, DataError

__all__ = [
    "continuation_logprobs",
    "continuation_greedy_matches",
    "sequence_token_logprobs",
    "generate",
    "next_token_distribution",
    "last_token_hidden_states",
    "model_context_length",
]

# Default window for `sequence_token_logprobs` when the model allows more (keeps memory bounded).
DEFAULT_MAX_SCORING_LENGTH = 2048


# ---------------------------------------------------------------------------------------------
# Shared helpers
# ---------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _eval_mode(model) -> Iterator[None]:
    """Put `model` in eval mode under inference_mode, then restore its previous training flag."""
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            yield
    finally:
        model.train(was_training)


def _device(model) -> torch.device:
    return next(model.parameters()).device


def _pad_id(tokenizer) -> int:
    for token_id in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if token_id is not None:
            return int(token_id)
    return 0


def model_context_length(model) -> int:
    """Longest sequence the model accepts, from its config (2048 if the config does not say).

    Args:
        model: a Hugging Face causal LM.

    Returns:
        `max_position_embeddings` (or `n_positions`, `max_sequence_length`) of the model config.
    """
    config = getattr(model, "config", None)
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return DEFAULT_MAX_SCORING_LENGTH


def _accepts_position_ids(model) -> bool:
    # Wrappers such as PEFT models take **kwargs and pass them on to the wrapped model.
    try:
        parameters = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False
    return "position_ids" in parameters or any(p.kind is p.VAR_KEYWORD for p in parameters.values())


def _progress_bar(progress: bool, total: int, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="tok", unit_scale=True, desc=desc, disable=not progress)


def _batches_by_length(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar length, longest first (least padding; OOM shows early)."""
    if batch_size < 1:
        raise ConfigError(f"batch_size must be at least 1, got {batch_size}; pass a positive batch size.")
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def _pad(sequences: list[list[int]], pad_id: int, side: str, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad token id lists to one (B, T) tensor; returns (input_ids, attention_mask)."""
    width = max(len(s) for s in sequences)
    input_ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        if not seq:
            continue
        span = slice(0, len(seq)) if side == "right" else slice(width - len(seq), width)
        input_ids[row, span] = torch.tensor(seq, dtype=torch.long)
        attention_mask[row, span] = 1
    return input_ids.to(device), attention_mask.to(device)


def _forward_logits(model, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """One forward pass; positions count only real tokens, so left padding does not shift them."""
    kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
    if _accepts_position_ids(model):
        position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)  # (B, T)
        kwargs["position_ids"] = position_ids
    return model(**kwargs).logits  # (B, T, V)


def _token_logprobs(logits_row: torch.Tensor, targets: list[int]) -> list[float]:
    """log_softmax of a (n, V) slice of logits, gathered at the n target ids (float32 maths)."""
    logprobs = torch.log_softmax(logits_row.float(), dim=-1)  # (n, V)
    index = torch.tensor(targets, dtype=torch.long, device=logprobs.device).unsqueeze(-1)  # (n, 1)
    return logprobs.gather(-1, index).squeeze(-1).tolist()


def _argmax_matches(logits_row: torch.Tensor, targets: list[int]) -> list[bool]:
    """Whether the argmax of each of n (n, V) logit rows is its target id (teacher-forced greedy)."""
    predicted = logits_row.argmax(dim=-1).tolist()  # (n,)
    return [p == t for p, t in zip(predicted, targets)]


def _score_windows(
    model, windows: list[tuple[list[int], int]], pad_id: int, batch_size: int, progress: bool, desc: str,
    per_token=_token_logprobs,
) -> list[list]:
    """Score each window `(ids, first_target)`: log p(ids[t] | ids[:t]) for t in [first_target, len(ids)).

    Windows are right-padded and batched by length; results come back in input order.
    `per_token(logits (n, V), targets)` turns the logits of the scored positions into the result
    (default: `_token_logprobs`; `_argmax_matches` gives teacher-forced greedy matches).
    """
    results: list[list[float]] = [[] for _ in windows]
    device = _device(model)
    batches = _batches_by_length([len(ids) for ids, _ in windows], batch_size)
    with _progress_bar(progress, sum(len(ids) for ids, _ in windows), desc) as bar:
        for batch in batches:
            sequences = [windows[i][0] for i in batch]
            input_ids, attention_mask = _pad(sequences, pad_id, "right", device)
            logits = _forward_logits(model, input_ids, attention_mask)  # (B, T, V)
            for row, i in enumerate(batch):
                ids, first = windows[i]
                if first < len(ids):
                    # logits at position t-1 predict token t
                    results[i] = per_token(logits[row, first - 1 : len(ids) - 1], ids[first:])
            bar.update(sum(len(s) for s in sequences))
    return results


def _continuation_windows(model, tokenizer, pairs: list[tuple[str, str]]) -> list[tuple[list[int], int]]:
    """`(ids, first continuation position)` of each `(context, continuation)` (see `continuation_logprobs`)."""
    max_len = model_context_length(model)
    start_id = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    windows: list[tuple[list[int], int]] = []
    for context, continuation in pairs:
        context_ids = list(tokenizer(context)["input_ids"])
        continuation_ids = list(tokenizer(continuation, add_special_tokens=False)["input_ids"])
        if not context_ids:
            if start_id is None:
                raise DataError(
                    "empty context and the tokenizer has no BOS or EOS token to start from; "
                    "give every continuation a non-empty context."
                )
            context_ids = [int(start_id)]
        if len(continuation_ids) >= max_len:
            raise DataError(
                f"a continuation of {len(continuation_ids)} tokens does not fit in the model's context "
                f"of {max_len} tokens; shorten it or score it with sequence_token_logprobs."
            )
        ids = (context_ids + continuation_ids)[-max_len:]  # left-truncate the context
        windows.append((ids, len(ids) - len(continuation_ids)))
    return windows


# ---------------------------------------------------------------------------------------------
# Public primitives
# ---------------------------------------------------------------------------------------------


def continuation_logprobs(
    model,
    tokenizer,
    pairs: list[tuple[str, str]],
    batch_size: int = 8,
    progress: bool = False,
    desc: str = "scoring",
) -> list[list[float]]:
    """Per-token log-probabilities of each continuation given its context.

    The context is encoded with `tokenizer(context)` (so it gets the tokenizer's BOS if it adds one)
    and the continuation separately with `add_special_tokens=False`; the ids are concatenated, so the
    split always falls on a token boundary. A leading space belongs in the continuation
    (`("Harry's friend is", " Ron")`). An empty context is replaced by the BOS (else EOS) token so
    that the first continuation token has something to be conditioned on. Contexts that do not fit
    in the model's context length are left-truncated.

    Args:
        model: Hugging Face causal LM, already on its device.
        tokenizer: its tokenizer (not modified).
        pairs: `(context, continuation)` strings.
        batch_size: sequences per forward pass.
        progress: show a tqdm bar (tokens/s, ETA).
        desc: label of the progress bar.

    Returns:
        One list per pair with log p(token) of each continuation token (natural log); empty for an
        empty continuation.

    Raises:
        DataError: a continuation is longer than the model's context length.
    """
    windows = _continuation_windows(model, tokenizer, pairs)
    with _eval_mode(model):
        return _score_windows(model, windows, _pad_id(tokenizer), batch_size, progress, desc)


def continuation_greedy_matches(
    model,
    tokenizer,
    pairs: list[tuple[str, str]],
    batch_size: int = 8,
    progress: bool = False,
    desc: str = "greedy matches",
) -> list[list[bool]]:
    """Teacher-forced greedy agreement: is each continuation token the model's most likely next token?

    The `is_greedy` of lm-evaluation-harness's `loglikelihood`, per token. Pairs are encoded exactly
    as in `continuation_logprobs`.

    Args:
        model: Hugging Face causal LM, already on its device.
        tokenizer: its tokenizer (not modified).
        pairs: `(context, continuation)` strings.
        batch_size: sequences per forward pass.
        progress: show a tqdm bar (tokens/s, ETA).
        desc: label of the progress bar.

    Returns:
        One list per pair: for each continuation token, whether argmax p(. | context, earlier
        continuation tokens) is that token.

    Raises:
        DataError: a continuation is longer than the model's context length.
    """
    windows = _continuation_windows(model, tokenizer, pairs)
    with _eval_mode(model):
        return _score_windows(model, windows, _pad_id(tokenizer), batch_size, progress, desc,
                              per_token=_argmax_matches)


def sequence_token_logprobs(
    model,
    tokenizer,
    texts: list[str],
    max_length: int | None = None,
    batch_size: int = 8,
    progress: bool = False,
    desc: str = "perplexity",
) -> list[list[float]]:
    """log p(token_t | tokens_<t) for every token t >= 1 of each text (perplexity, membership inference).

    Texts are encoded with `tokenizer(text)`, so a BOS added by the tokenizer is token 0 and the
    first real token is scored given it. Texts longer than `max_length` tokens are cut into
    consecutive windows of at most `max_length` tokens that overlap by exactly one token: window k
    holds tokens `[k*(L-1), k*(L-1)+L)` and scores all but its first token. Every token t >= 1 is
    thus scored exactly once, conditioned only on the earlier tokens of its own window (no context
    is carried across windows, so the first tokens of each window see little context).

    Args:
        model: Hugging Face causal LM, already on its device.
        tokenizer: its tokenizer (not modified).
        texts: the texts to score.
        max_length: window length in tokens (at least 2); default: the model's context length,
            capped at 2048.
        batch_size: windows per forward pass.
        progress: show a tqdm bar (tokens/s, ETA).
        desc: label of the progress bar.

    Returns:
        One list per text of `len(tokens) - 1` log-probabilities (natural log); empty for a text of
        fewer than two tokens.

    Raises:
        ConfigError: `max_length` is below 2 or above the model's context length.
    """
    context = model_context_length(model)
    if max_length is None:
        max_length = min(context, DEFAULT_MAX_SCORING_LENGTH)
    if not 2 <= max_length <= context:
        raise ConfigError(
            f"max_length must be between 2 and the model's context length {context}, got {max_length}; "
            "pick a window length in that range."
        )
    windows: list[tuple[list[int], int]] = []
    owner: list[int] = []  # text index of each window
    stride = max_length - 1
    for text_index, text in enumerate(texts):
        ids = list(tokenizer(text)["input_ids"])
        for start in range(0, max(len(ids) - 1, 0), stride):
            windows.append((ids[start : start + max_length], 1))
            owner.append(text_index)
    with _eval_mode(model):
        scored = _score_windows(model, windows, _pad_id(tokenizer), batch_size, progress, desc)
    results: list[list[float]] = [[] for _ in texts]
    for text_index, logprobs in zip(owner, scored):  # windows are in text order, then position order
        results[text_index].extend(logprobs)
    return results


def _stop_ids(model, tokenizer) -> set[int]:
    """Ids after which a generated sequence holds only padding: EOS ids and the pad token."""
    eos = getattr(model.generation_config, "eos_token_id", None)
    ids = set(eos) if isinstance(eos, (list, tuple)) else {eos}
    ids |= {tokenizer.eos_token_id, tokenizer.pad_token_id}
    return {int(i) for i in ids if i is not None}


def _cut_at_stop(ids: list[int], stop_ids: set[int]) -> list[int]:
    for position, token_id in enumerate(ids):
        if token_id in stop_ids:
            return ids[:position]
    return ids


def _decode_new_text(tokenizer, prompt_ids: list[int], new_ids: list[int]) -> str:
    """Decoded text of `new_ids` as it reads after the prompt.

    Decoding the new ids alone loses a leading space with SentencePiece tokenizers, so decode
    prompt + new and strip the decoded prompt when it is a prefix.
    """
    full = tokenizer.decode(prompt_ids + new_ids, skip_special_tokens=True)
    prefix = tokenizer.decode(prompt_ids, skip_special_tokens=True)
    if full.startswith(prefix):
        return full[len(prefix) :]
    return tokenizer.decode(new_ids, skip_special_tokens=True)


class _BarStreamer:
    """A `model.generate` streamer that moves the progress bar at every decoding step (tokens/s, ETA)."""

    def __init__(self, bar):
        self.bar, self.started = bar, False

    def put(self, value) -> None:
        if not self.started:  # the first call carries the prompt
            self.started = True
            return
        self.bar.update(int(value.shape[0]) if value.dim() else 1)

    def end(self) -> None:
        pass


def generate(
    model,
    tokenizer,
    prompts: list[str],
    max_new_tokens: int = 32,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_p: float = 1.0,
    num_return_sequences: int = 1,
    batch_size: int = 8,
    seed: int = 0,
    progress: bool = False,
    add_special_tokens: bool = True,
    desc: str = "generating",
) -> list[list[str]]:
    """Batched generation with left padding; returns only the newly generated text.

    Prompts are encoded with `tokenizer(prompt, add_special_tokens=...)` and left-padded here;
    `model.generate` derives position ids from the attention mask, so greedy output does not
    depend on the batch (tested). Sampling
    uses exactly `temperature` and `top_p` (top-k is switched off) and is reproducible for a given
    `seed` and `batch_size`; the global torch RNG state is restored afterwards. Other decoding
    settings (e.g. a repetition penalty) come from `model.generation_config`.

    Args:
        model: Hugging Face causal LM, already on its device.
        tokenizer: its tokenizer (not modified).
        prompts: prompt texts.
        max_new_tokens: most tokens generated per sequence (generation also stops at EOS).
        do_sample: sample instead of greedy decoding.
        temperature: sampling temperature (sampling only).
        top_p: nucleus sampling mass (sampling only).
        num_return_sequences: sequences per prompt; more than 1 needs `do_sample=True`.
        batch_size: prompts per `model.generate` call.
        seed: seed of the sampling RNG.
        progress: show a tqdm bar of generated tokens (tokens/s, ETA).
        add_special_tokens: pass False for prompts that already hold their special tokens (e.g.
            produced by `tokenizer.apply_chat_template(..., tokenize=False)`).
        desc: label of the progress bar.

    Returns:
        For each prompt, a list of `num_return_sequences` decoded continuations
        (`skip_special_tokens=True`), without the prompt.

    Raises:
        ConfigError: bad decoding settings, or an empty prompt with no BOS/EOS token to start from.
    """
    if max_new_tokens < 1:
        raise ConfigError(f"max_new_tokens must be at least 1, got {max_new_tokens}.")
    if num_return_sequences < 1:
        raise ConfigError(f"num_return_sequences must be at least 1, got {num_return_sequences}.")
    if num_return_sequences > 1 and not do_sample:
        raise ConfigError(
            "greedy decoding returns the same text every time; set do_sample=True to get "
            f"{num_return_sequences} different sequences per prompt, or num_return_sequences=1."
        )
    if do_sample and (temperature <= 0 or not 0 < top_p <= 1):
        raise ConfigError(
            f"sampling needs temperature > 0 and 0 < top_p <= 1, got temperature={temperature}, "
            f"top_p={top_p}; use do_sample=False for deterministic output."
        )
    start_id = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    encoded: list[list[int]] = []
    for prompt in prompts:
        ids = list(tokenizer(prompt, add_special_tokens=add_special_tokens)["input_ids"])
        if not ids:
            if start_id is None:
                raise ConfigError("empty prompt and the tokenizer has no BOS or EOS token; give a non-empty prompt.")
            ids = [int(start_id)]
        encoded.append(ids)

    pad_id = _pad_id(tokenizer)
    device = _device(model)
    decoding: dict = {"max_new_tokens": max_new_tokens, "do_sample": do_sample, "pad_token_id": pad_id}
    if do_sample:
        decoding.update(
            temperature=temperature, top_p=top_p, top_k=0, num_return_sequences=num_return_sequences
        )
    if tokenizer.eos_token_id is not None and getattr(model.generation_config, "eos_token_id", None) is None:
        decoding["eos_token_id"] = tokenizer.eos_token_id

    stop_ids = _stop_ids(model, tokenizer)
    results: list[list[str]] = [[] for _ in prompts]
    batches = _batches_by_length([len(ids) for ids in encoded], batch_size)
    total = len(prompts) * num_return_sequences * max_new_tokens  # upper bound: EOS may stop earlier
    fork_devices = [device] if device.type == "cuda" else []
    with (
        _eval_mode(model),
        torch.random.fork_rng(devices=fork_devices),
        _progress_bar(progress, total, desc) as bar,
    ):
        torch.manual_seed(seed)
        for batch in batches:
            input_ids, attention_mask = _pad([encoded[i] for i in batch], pad_id, "left", device)
            output = model.generate(input_ids=input_ids, attention_mask=attention_mask,
                                    streamer=_BarStreamer(bar), **decoding)
            new_tokens = output[:, input_ids.shape[1] :]  # (B * num_return_sequences, T_new)
            for row in range(new_tokens.shape[0]):
                i = batch[row // num_return_sequences]  # HF groups the sequences of a prompt together
                new_ids = _cut_at_stop(new_tokens[row].tolist(), stop_ids)
                results[i].append(_decode_new_text(tokenizer, encoded[i], new_ids))
        bar.total = bar.n
        bar.refresh()
    return results


def next_token_distribution(model, tokenizer, prompts: list[str], batch_size: int = 8) -> torch.Tensor:
    """Probabilities of the next token after each prompt.

    Args:
        model: Hugging Face causal LM, already on its device.
        tokenizer: its tokenizer (not modified).
        prompts: prompt texts, encoded with `tokenizer(prompt)` and left-padded.
        batch_size: prompts per forward pass.

    Returns:
        A float32 CPU tensor of shape (N, V), each row summing to 1; V is the model's output size,
        which may exceed `len(tokenizer)` when the embedding matrix is padded.
    """
    start_id = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    encoded = []
    for prompt in prompts:
        ids = list(tokenizer(prompt)["input_ids"])
        if not ids:
            if start_id is None:
                raise ConfigError("empty prompt and the tokenizer has no BOS or EOS token; give a non-empty prompt.")
            ids = [int(start_id)]
        encoded.append(ids)
    pad_id = _pad_id(tokenizer)
    device = _device(model)
    rows: list[torch.Tensor | None] = [None] * len(prompts)
    with _eval_mode(model):
        for batch in _batches_by_length([len(ids) for ids in encoded], batch_size):
            input_ids, attention_mask = _pad([encoded[i] for i in batch], pad_id, "left", device)
            # left padding puts every prompt's last token in the last column
            logits = _forward_logits(model, input_ids, attention_mask)[:, -1]  # (B, V)
            probs = torch.softmax(logits.float(), dim=-1).cpu()
            for row, i in enumerate(batch):
                rows[i] = probs[row]
    if not rows:
        return torch.empty((0, 0))
    return torch.stack(rows)


def last_token_hidden_states(model, tokenizer, texts: list[str], batch_size: int = 8) -> torch.Tensor:
    """Hidden states of every layer at each text's last token.

    Args:
        model: Hugging Face causal LM, already on its device.
        tokenizer: its tokenizer (not modified).
        texts: texts, encoded with `tokenizer(text)` and left-padded (each must give a token).
        batch_size: texts per forward pass.

    Returns:
        A float32 CPU tensor of shape (L + 1, N, H): the embedding output, then each layer's.

    Raises:
        DataError: a text gives no token.
    """
    encoded = [list(tokenizer(text)["input_ids"]) for text in texts]
    if any(not ids for ids in encoded):
        raise DataError("a probe text gives no token; give non-empty texts.")
    pad_id, device = _pad_id(tokenizer), _device(model)
    rows: list[torch.Tensor | None] = [None] * len(texts)
    with _eval_mode(model):
        for batch in _batches_by_length([len(ids) for ids in encoded], batch_size):
            input_ids, attention_mask = _pad([encoded[i] for i in batch], pad_id, "left", device)
            kwargs = {"input_ids": input_ids, "attention_mask": attention_mask, "output_hidden_states": True}
            if _accepts_position_ids(model):
                kwargs["position_ids"] = (attention_mask.cumsum(-1) - 1).clamp(min=0)
            hidden = model(**kwargs).hidden_states  # L + 1 tensors (B, T, H); left padding: last column is real
            stacked = torch.stack([h[:, -1] for h in hidden], dim=1).float().cpu()  # (B, L + 1, H)
            for row, i in enumerate(batch):
                rows[i] = stacked[row]
    if not rows:
        return torch.empty((0, 0, 0))
    return torch.stack(rows, dim=1)  # (L + 1, N, H)
