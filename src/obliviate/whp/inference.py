"""WHP at inference time: generic logits from the baseline and reinforced models, with no fine-tune.

``v = v_base - alpha * relu(v_reinforced - v_base)`` (Eldan & Russinovich 2023, eq. 1) applied to
every next-token prediction while scoring or generating, as the "WHP" baseline of MUSE (Shi et
al. 2024, arXiv 2407.06460) does. Unlike the label stage, both models read the same text (there is
no anchored-term translation). It is a cheap baseline and a check on the distilled WHP model.

`WHPInferenceModel` looks enough like a Hugging Face causal LM for `obliviate.scoring`:
``model(input_ids=, attention_mask=, position_ids=).logits``, ``model.generate(...)``, ``config``,
``generation_config``, ``parameters()``, ``eval()``/``train()``.
"""

from __future__ import annotations

import hashlib
import inspect
import math
import sys
from pathlib import Path
from typing import NamedTuple

import torch

from obliviate.errors import ConfigError, ModelError
from obliviate.losses import IGNORE_INDEX, token_nll, whp_generic_logits

__all__ = ["WHPInferenceModel", "WHPCache", "load_whp_inference"]


class WHPCache(NamedTuple):
    """The KV caches of the two models (what ``forward(..., use_cache=True)`` returns and takes back)."""

    base: object
    reinforced: object


def _device_of(module: torch.nn.Module) -> torch.device:
    return next(module.parameters()).device


def _check_alpha(alpha) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not math.isfinite(alpha) or alpha < 0:
        raise ConfigError(f"alpha must be a finite number >= 0, got {alpha!r}; the WHP paper uses about 5")
    return float(alpha)


def _filter_logits(scores: torch.Tensor, temperature: float, top_k: int, top_p: float) -> torch.Tensor:
    """Temperature, then top-k, then nucleus top-p, as Hugging Face's logits warpers do it. (B, V) -> (B, V)."""
    if temperature != 1.0:
        scores = scores / temperature
    if top_k and top_k > 0:
        kth = torch.topk(scores, min(top_k, scores.size(-1))).values[..., -1:]  # (B, 1)
        scores = scores.masked_fill(scores < kth, float("-inf"))
    if top_p < 1.0:
        sorted_scores, sorted_index = torch.sort(scores, descending=False)
        cumulative = sorted_scores.softmax(dim=-1).cumsum(dim=-1)
        remove = cumulative <= (1 - top_p)
        remove[..., -1:] = False  # keep at least the most likely token
        scores = scores.masked_fill(remove.scatter(1, sorted_index, remove), float("-inf"))
    return scores


class WHPInferenceModel(torch.nn.Module):
    """Baseline and reinforced models combined into WHP's generic logits at every position.

    Args:
        base: the baseline causal LM (its config, generation config and dtype are this model's).
        reinforced: the reinforced causal LM; same tokenizer and vocabulary as ``base``.
        alpha: strength of the push away from what the reinforced model raised (>= 0).

    Raises:
        ModelError: the two models' vocabulary sizes differ.
        ConfigError: ``alpha`` is negative or not finite.
    """

    def __init__(self, base: torch.nn.Module, reinforced: torch.nn.Module, alpha: float):
        super().__init__()
        base_vocab, reinforced_vocab = base.config.vocab_size, reinforced.config.vocab_size
        if base_vocab != reinforced_vocab:
            raise ModelError(f"the reinforced model's vocabulary ({reinforced_vocab} tokens) differs from the "
                             f"baseline's ({base_vocab}): WHP compares logits token by token, so both must share "
                             "one tokenizer; fine-tune the reinforced model from the baseline")
        self.base = base
        self.reinforced = reinforced
        self.alpha = _check_alpha(alpha)

    # ---- what callers read off a Hugging Face model ----
    @property
    def config(self):
        return self.base.config

    @property
    def generation_config(self):
        return self.base.generation_config

    @property
    def device(self) -> torch.device:
        return _device_of(self.base)

    @property
    def dtype(self) -> torch.dtype:
        return next(self.base.parameters()).dtype

    def tie_weights(self, *args, **kwargs) -> None:
        """Called by lm-eval's HFLM on the model it is given; passed on to both models."""
        for model in (self.base, self.reinforced):
            if hasattr(model, "tie_weights"):
                model.tie_weights(*args, **kwargs)

    # ---- forward ----
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None, past_key_values: WHPCache | None = None,
                use_cache: bool = False, labels: torch.Tensor | None = None, **kwargs):
        """Run both models on the same tokens and combine their logits.

        Args:
            input_ids: (B, T) token ids (only the new tokens when ``past_key_values`` is given).
            attention_mask: (B, T_past + T), 1 for real tokens.
            position_ids: (B, T) positions (``cumsum(mask) - 1`` under left padding).
            past_key_values: a :class:`WHPCache` returned by an earlier call with ``use_cache=True``.
            use_cache: return the updated caches in ``past_key_values``.
            labels: (B, T) optional; the loss is the next-token NLL of the generic logits (HF shift).
            **kwargs: passed to both models (e.g. ``logits_to_keep``).

        Returns:
            ``CausalLMOutputWithPast`` whose ``logits`` (B, T, V) are the generic logits in the base dtype.
        """
        from transformers.modeling_outputs import CausalLMOutputWithPast

        if past_key_values is not None and not isinstance(past_key_values, WHPCache):
            raise ModelError("WHPInferenceModel takes back only the WHPCache it returned as past_key_values")
        caches = past_key_values or WHPCache(None, None)
        outputs = []
        for model, cache in ((self.base, caches.base), (self.reinforced, caches.reinforced)):
            device = _device_of(model)
            move = lambda t: None if t is None else t.to(device)  # noqa: E731
            outputs.append(model(input_ids=move(input_ids), attention_mask=move(attention_mask),
                                 position_ids=move(position_ids), past_key_values=cache, use_cache=use_cache,
                                 **kwargs))
        base_out, reinforced_out = outputs
        base_logits = base_out.logits  # (B, T, V)
        logits = whp_generic_logits(base_logits, reinforced_out.logits.to(base_logits.device), self.alpha)
        logits = logits.to(base_logits.dtype)
        loss = None
        if labels is not None:
            shifted = torch.full_like(labels, IGNORE_INDEX)
            shifted[:, :-1] = labels[:, 1:]
            loss = token_nll(logits, shifted.to(logits.device))
        past = WHPCache(base_out.past_key_values, reinforced_out.past_key_values) if use_cache else None
        return CausalLMOutputWithPast(loss=loss, logits=logits, past_key_values=past)

    # ---- generation ----
    def _step_kwargs(self) -> dict:
        # Only the last position's logits are needed while decoding, if both models can skip the rest.
        accepts = all("logits_to_keep" in inspect.signature(m.forward).parameters for m in (self.base, self.reinforced))
        return {"logits_to_keep": 1} if accepts else {}

    def _eos_ids(self, eos_token_id) -> list[int]:
        if eos_token_id is None:
            eos_token_id = getattr(self.generation_config, "eos_token_id", None)
        if eos_token_id is None:
            eos_token_id = getattr(self.config, "eos_token_id", None)
        ids = eos_token_id if isinstance(eos_token_id, (list, tuple)) else [eos_token_id]
        return [int(i) for i in ids if i is not None]

    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, max_new_tokens: int = 32,
                 do_sample: bool = False, temperature: float = 1.0, top_p: float = 1.0, top_k: int = 0,
                 num_return_sequences: int = 1, pad_token_id: int | None = None,
                 eos_token_id: int | list[int] | None = None, max_length: int | None = None,
                 stopping_criteria=None, streamer=None, **ignored) -> torch.LongTensor:
        """Greedy or sampled decoding from the generic logits, with a KV cache for each model.

        Mirrors ``transformers`` ``generate`` for the settings ``obliviate.scoring`` uses: left-padded
        prompts, ``num_return_sequences`` rows per prompt (grouped per prompt), rows that reached EOS
        padded afterwards, and the loop stops when every row has.

        Args:
            input_ids: (B, T) left-padded prompt ids.
            attention_mask: (B, T), 0 on padding (default: all ones).
            max_new_tokens: most new tokens (``max_length``, a total length, wins if given, as lm-eval passes).
            do_sample: sample instead of greedy argmax.
            temperature, top_p, top_k: sampling settings (top_k 0: off), applied in that order like HF.
            num_return_sequences: rows generated per prompt.
            pad_token_id: id written after EOS (default: the generation config's, else the first EOS id).
            eos_token_id: id(s) that end a row (default: the base generation config's).
            stopping_criteria: optional callable ``(ids, scores) -> (B,) bool`` (lm-eval's stop sequences).
            streamer: optional HF-style streamer: ``put`` the (expanded) prompt, then each step's (B,)
                new tokens, then ``end()`` (`obliviate.scoring` moves its progress bar with it).
            **ignored: other HF settings (e.g. ``use_cache``, ``repetition_penalty``) are not applied.

        Returns:
            (B * num_return_sequences, T + new) LongTensor: prompts followed by the new tokens.
        """
        if do_sample and (temperature <= 0 or not 0 < top_p <= 1):
            raise ConfigError(f"sampling needs temperature > 0 and 0 < top_p <= 1, got temperature={temperature}, "
                              f"top_p={top_p}")
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if num_return_sequences > 1:
            input_ids = input_ids.repeat_interleave(num_return_sequences, dim=0)
            attention_mask = attention_mask.repeat_interleave(num_return_sequences, dim=0)
        if max_length is not None:
            max_new_tokens = max_length - input_ids.shape[1]
        if max_new_tokens < 1:
            return input_ids
        eos = torch.tensor(self._eos_ids(eos_token_id), dtype=torch.long, device=input_ids.device)
        if pad_token_id is None:
            pad_token_id = getattr(self.generation_config, "pad_token_id", None)
        if pad_token_id is None:
            pad_token_id = int(eos[0]) if len(eos) else 0

        if streamer is not None:
            streamer.put(input_ids.cpu())
        sequences = input_ids
        mask = attention_mask.to(input_ids.dtype)
        position_ids = (mask.cumsum(-1) - 1).clamp(min=0)  # (B, T): left padding does not shift positions
        step_ids, past = input_ids, None
        unfinished = torch.ones(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        step_kwargs = self._step_kwargs()
        for _ in range(max_new_tokens):
            out = self(input_ids=step_ids, attention_mask=mask, position_ids=position_ids, past_key_values=past,
                       use_cache=True, **step_kwargs)
            past = out.past_key_values
            scores = out.logits[:, -1].to(dtype=torch.float32, device=input_ids.device)  # (B, V)
            if do_sample:
                probs = _filter_logits(scores, temperature, top_k, top_p).softmax(dim=-1)
                next_tokens = torch.multinomial(probs, num_samples=1).squeeze(1)  # (B,)
            else:
                next_tokens = scores.argmax(dim=-1)
            next_tokens = torch.where(unfinished, next_tokens, torch.full_like(next_tokens, pad_token_id))
            sequences = torch.cat([sequences, next_tokens[:, None]], dim=-1)
            if streamer is not None:
                streamer.put(next_tokens.cpu())
            unfinished &= ~torch.isin(next_tokens, eos)
            if stopping_criteria is not None:
                unfinished &= ~torch.as_tensor(stopping_criteria(sequences, scores), device=unfinished.device)
            if not unfinished.any():
                break
            step_ids = next_tokens[:, None]  # (B, 1): the caches hold everything before it
            mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=-1)
            position_ids = position_ids[:, -1:] + 1
        if streamer is not None:
            streamer.end()
        return sequences


def _read_whp_run(run: Path) -> dict:
    """``{"base", "reinforced", "alpha", "trust_remote_code"}`` of a WHP run folder.

    ``trust_remote_code`` is what the run's config.yaml says; it is reported, never acted on.
    """
    from obliviate.config import from_dict, load_yaml
    from obliviate.whp.labels import LabelConfig

    config_file = run / "config.yaml"
    if not run.is_dir() or not config_file.is_file():
        raise ConfigError(f"'{run}' is not a WHP run folder (no config.yaml): pass the --out folder of "
                          "`obliviate whp`, or a baseline model together with a reinforced model")
    data = load_yaml(config_file)
    reinforce = data.get("reinforce")
    if not isinstance(reinforce, dict) or not isinstance(data.get("labels"), dict) or not data.get("model"):
        raise ConfigError(f"'{run}' is not a WHP run folder (its config.yaml lacks WHP's 'model', 'reinforce' "
                          "and 'labels' settings; a run of another method?): pass a WHP run, or a baseline model "
                          "together with a reinforced model")
    # Only the settings needed here are read, so a run written by another obliviate version still loads.
    labels = from_dict(LabelConfig, data["labels"], "labels")
    reinforced = reinforce.get("model")
    if not reinforced:
        reinforced = str(run / "reinforced")
        if not (run / "reinforced" / "config.json").is_file():
            raise ModelError(f"'{run}' has no reinforced model yet (no {reinforced}/config.json): run its "
                             "reinforce stage first (`obliviate reinforce --out RUN ...` or `obliviate whp`)")
    return {"base": str(data["model"]), "reinforced": str(reinforced), "alpha": labels.alpha,
            "trust_remote_code": bool(data.get("trust_remote_code", False))}


def _is_whp_run(path: Path) -> bool:
    if not (path / "config.yaml").is_file():
        return False
    from obliviate.config import load_yaml

    return isinstance(load_yaml(path / "config.yaml").get("reinforce"), dict)


def load_whp_inference(run_or_base, reinforced: str | None = None, alpha: float | None = None,
                       device: str | None = None, trust_remote_code: bool = False):
    """Load WHP at inference time from a WHP run folder, or from a baseline and a reinforced model.

    Args:
        run_or_base: a WHP run folder (its config's ``model``, ``reinforce.model`` or ``reinforced/``,
            and ``labels.alpha``), or a baseline model spec when ``reinforced`` is given.
        reinforced: the reinforced model spec (overrides the run's when ``run_or_base`` is a WHP run).
        alpha: strength of the push (default: the run's ``labels.alpha``, else LabelConfig's default).
        device: where to put both models (default: left on CPU, as `load_model` does).
        trust_remote_code: allow custom model code. Only the caller decides: a run folder's own
            ``trust_remote_code: true`` is never followed (its config.yaml may come from someone else).

    Returns:
        A `LoadedModel` whose model is a :class:`WHPInferenceModel`, with the baseline's tokenizer, a
        ``whp-inference:...`` spec and a weights hash over both models' weights and alpha.

    Raises:
        ConfigError: not a WHP run folder (and no reinforced model given), or a bad alpha.
        ModelError: the run has no reinforced model yet, a model cannot be loaded, or the tokenizers differ.
    """
    from obliviate.models import LoadedModel, check_same_tokenizer, load_model
    from obliviate.whp.labels import LabelConfig

    source = Path(str(run_or_base)).expanduser()
    is_run = reinforced is None or _is_whp_run(source)
    if is_run:
        run = _read_whp_run(source)
        base_spec, reinforced_spec = run["base"], reinforced or run["reinforced"]
        alpha = run["alpha"] if alpha is None else alpha
        if run["trust_remote_code"] and not trust_remote_code:
            print(f"note: {source} was made with trust_remote_code: true, which is not taken from a run folder; "
                  "pass --trust-remote-code if its models need custom code and you trust it", file=sys.stderr)
        label = str(source) if reinforced is None else f"{source}+{reinforced}"
    else:
        base_spec, reinforced_spec = str(run_or_base), str(reinforced)
        alpha = LabelConfig().alpha if alpha is None else alpha
        label = f"{base_spec}+{reinforced_spec}"
    alpha = _check_alpha(alpha)

    base = load_model(base_spec, device=device, trust_remote_code=trust_remote_code)
    other = load_model(reinforced_spec, device=device, trust_remote_code=trust_remote_code)
    check_same_tokenizer(base.tokenizer, other.tokenizer)
    model = WHPInferenceModel(base.model, other.model, alpha)
    model.eval()
    digest = hashlib.sha256(f"whp-inference\n{base.weights_hash}\n{other.weights_hash}\nalpha={alpha!r}".encode())
    return LoadedModel(model=model, tokenizer=base.tokenizer, spec=f"whp-inference:{label}:alpha={alpha:g}",
                       path=str(source) if is_run else base.path, _weights_hash=digest.hexdigest())
