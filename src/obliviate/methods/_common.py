"""Plain functions shared by the unlearning methods: settings checks, paper references, frozen
references, next-token NLL, hidden states at a layer, and parameter selection by name.

Methods import what they need from here; they never subclass each other.
"""

from __future__ import annotations

import copy
import math
import re
from dataclasses import dataclass

import torch

from obliviate.errors import ConfigError
from obliviate.losses import shift_for_next_token, token_nll

# Names of the MLP output projection, by architecture family (first one found is used).
DOWN_PROJ_NAMES = ("mlp.down_proj", "mlp.dense_4h_to_h", "mlp.c_proj")  # Llama/Mistral/Qwen, GPT-NeoX, GPT-2
# Attribute paths of the decoder layer list, tried in order (after unwrapping DDP/PEFT).
_LAYER_LIST_NAMES = ("layers", "h", "blocks")


@dataclass(frozen=True)
class Paper:
    """The paper a method comes from (a method class's ``paper`` fact; the model card cites it)."""

    title: str
    authors: str  # as cited: "Eldan & Russinovich", "Zhang et al."
    year: int
    arxiv: str  # arXiv id, e.g. "2404.05868"
    our_design: bool = False  # True: our design after the paper (its abstract only), not a reproduction

    @property
    def url(self) -> str:
        return f"https://arxiv.org/abs/{self.arxiv}"

    def cite(self) -> str:
        """``Zhang et al., 2024, "Title", arXiv:2404.05868``."""
        return f'{self.authors}, {self.year}, "{self.title}", arXiv:{self.arxiv}'


# The seed of our own designs (cosine_rmu, probe_direction, meta-search); only its abstract was available.
ATIL_2026 = Paper("Model Unlearning Objectives Vary for Distinct Language Functions", "Atil, Gupta & Passonneau",
                  2026, "2605.26454", our_design=True)


def check_setting(key: str, value, *, minimum: float | None = None, above: float | None = None,
                  integer: bool = False, hint: str = "") -> None:
    """Raise a one-line ConfigError unless ``value`` is a finite number in range.

    Args:
        key: the setting as the user writes it, e.g. ``"method.beta"``.
        value: the value to check (a bool is not a number).
        minimum: smallest allowed value (inclusive), or None.
        above: the value must be strictly greater than this, or None.
        integer: the value must be an int.
        hint: what to do, appended to the message.
    """
    kind = "an integer" if integer else "a finite number"
    allowed = f" >= {minimum:g}" if minimum is not None else f" > {above:g}" if above is not None else ""
    ok = isinstance(value, int) if integer else isinstance(value, (int, float)) and math.isfinite(value)
    ok = ok and not isinstance(value, bool)
    if ok and minimum is not None:
        ok = value >= minimum
    if ok and above is not None:
        ok = value > above
    if not ok:
        raise ConfigError(f"{key} must be {kind}{allowed}, not {value!r}" + (f": {hint}" if hint else ""))


def check_choice(key: str, value, choices: tuple[str, ...]) -> None:
    """Raise a one-line ConfigError unless ``value`` is one of ``choices``."""
    if value not in choices:
        names = [repr(c) for c in choices]
        allowed = " or ".join(names) if len(names) == 2 else f"one of {', '.join(names)}"
        raise ConfigError(f"{key} must be {allowed}, not {value!r}")


def check_layer_setting(key: str, layer) -> None:
    """A decoder-layer setting is None (the model's default) or an int >= 0; the depth is checked in prepare."""
    if layer is not None:
        check_setting(key, layer, minimum=0, integer=True, hint="decoder layers are counted from 0")


def check_regex_setting(key: str, regex) -> None:
    """A parameter-name regex setting is None (the default) or a valid regular expression."""
    if regex is None:
        return
    try:
        re.compile(regex)
    except (re.error, TypeError) as exc:
        raise ConfigError(f"{key} {regex!r} is not a valid regular expression: {exc}") from exc


def frozen_copy(model):
    """A deep copy of ``model`` in eval mode with no trainable parameter (the reference model).

    A method keeps it as ``method.reference``; the training loop places it on the accelerator's
    device, or shards it under FSDP / ZeRO-3 (:func:`obliviate.train.place_reference`).
    """
    reference = copy.deepcopy(model)
    reference.eval()
    for p in reference.parameters():
        p.requires_grad_(False)
    return reference


def labels_of(part: dict) -> torch.Tensor:
    """Next-token labels (B, T) of one batch part: its own aligned ``labels`` where it has them
    (question/answer examples take the loss on answer tokens only), else every next token, padding ignored."""
    if "labels" in part:
        return part["labels"]
    return shift_for_next_token(part["input_ids"], part["attention_mask"])


def logits_of(model, part: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (B, T, V) of one batch part and its next-token labels (B, T) (:func:`labels_of`)."""
    logits = model(input_ids=part["input_ids"], attention_mask=part["attention_mask"], use_cache=False).logits
    return logits, labels_of(part)


def nll_of(model, part: dict) -> torch.Tensor:
    """Mean next-token NLL of one batch part (``{"input_ids", "attention_mask"}``)."""
    logits, labels = logits_of(model, part)
    return token_nll(logits, labels)


def _unwrap(model):
    model = getattr(model, "module", model)  # DDP
    if hasattr(model, "get_base_model"):  # PEFT
        model = model.get_base_model()
    return model


def decoder_layers(model) -> tuple[str, torch.nn.ModuleList]:
    """The decoder layer list and its dotted path, for Llama-, GPT-NeoX- and GPT-2-style models.

    Raises:
        ConfigError: no list of decoder layers was found.
    """
    base = _unwrap(model)
    config = getattr(base, "config", None)
    depth = getattr(config, "num_hidden_layers", None) or getattr(config, "n_layer", None)
    for name, module in base.named_modules():
        if isinstance(module, torch.nn.ModuleList) and name.split(".")[-1] in _LAYER_LIST_NAMES \
                and (depth is None or len(module) == depth):
            return name, module
    raise ConfigError(f"cannot find the decoder layers of {type(base).__name__}: "
                      "this method supports Llama-, GPT-NeoX- and GPT-2-style models")


def hidden_at(model, part: dict, layer: int) -> torch.Tensor:
    """Hidden states (B, T, H) output by decoder layer ``layer`` (0-based), via a forward hook.

    The whole forward runs (stopping early would upset DDP's gradient bookkeeping).
    """
    _, layers = decoder_layers(model)
    captured = {}

    def hook(_module, _inputs, output):
        captured["h"] = output[0] if isinstance(output, tuple) else output

    handle = layers[layer].register_forward_hook(hook)
    try:
        model(input_ids=part["input_ids"], attention_mask=part["attention_mask"], use_cache=False)
    finally:
        handle.remove()
    return captured["h"]


def layer_param_selector(model, regex: str) -> list[tuple[str, torch.nn.Parameter]]:
    """``(name, parameter)`` pairs whose name matches ``regex`` (``re.search``).

    Raises:
        ConfigError: the regex is invalid or selects nothing.
    """
    check_regex_setting("method.params", regex)
    pattern = re.compile(regex)
    selected = [(n, p) for n, p in model.named_parameters() if pattern.search(n)]
    if not selected:
        raise ConfigError(f"method.params '{regex}' matches no parameter of the model: "
                          "set method.params to a regex over names such as 'model.layers.7.mlp.down_proj.weight'")
    return selected


def default_layer(model) -> int:
    """WMDP's choice scaled to the model's depth: layer 7 of 32 (zephyr-7b), 7 of 30 (SmolLM2)."""
    _, layers = decoder_layers(model)
    return min(len(layers) - 1, round(len(layers) * 7 / 32))


def check_layer(model, layer: int, key: str = "method.layer") -> None:
    """Raise ConfigError unless ``layer`` is a decoder layer of ``model`` (0-based)."""
    depth = len(decoder_layers(model)[1])
    if not 0 <= layer < depth:
        raise ConfigError(f"{key}: layer {layer} is out of range: the model has {depth} layers; "
                          f"use 0 to {depth - 1}")


def down_proj_regex(model, layers: list[int]) -> str:
    """Regex for the MLP down-projections of decoder ``layers`` (checked against the model's depth)."""
    for layer in layers:
        check_layer(model, layer)
    path, modules = decoder_layers(model)
    names = {n for n, _ in modules[layers[0]].named_parameters()}
    down = next((d for d in DOWN_PROJ_NAMES if f"{d}.weight" in names), None)
    if down is None:
        raise ConfigError(f"cannot find the MLP down-projection of layer {layers[0]}: set method.params to a regex "
                          "naming the parameters to update")
    indices = "|".join(map(str, layers))
    return rf"(?:^|\.){re.escape(path)}\.(?:{indices})\.{re.escape(down)}\.weight$"


def default_params_regex(model, layer: int) -> str:
    """Regex for the MLP down-projections of layers ``layer-2 .. layer`` (WMDP's RMU default)."""
    check_layer(model, layer)
    return down_proj_regex(model, list(range(max(0, layer - 2), layer + 1)))


def freeze_all_but(model, regex: str) -> list[str]:
    """Freeze every parameter whose name does not match ``regex``; returns the names left trainable."""
    selected = {n for n, _ in layer_param_selector(model, regex)}
    for name, p in model.named_parameters():
        p.requires_grad_(name in selected)
    return sorted(selected)


def select_layer_params(model, layer: int | None, params: str | None) -> tuple[int, str, list[str]]:
    """Resolve a representation method's layer and parameter regex (defaults from the model) and
    freeze every other parameter.

    Returns:
        ``(layer, regex, names of the parameters left trainable)``.
    """
    layer = default_layer(model) if layer is None else layer
    check_layer(model, layer)
    regex = params or default_params_regex(model, layer)
    return layer, regex, freeze_all_but(model, regex)


def layers_regex_of(model, param_names: list[str]) -> str | None:
    """Regex matching module names inside the decoder layers that hold ``param_names`` (for LoRA).

    None when no parameter lies in a decoder layer (LoRA then adapts every target module).
    """
    path, _ = decoder_layers(model)
    found = sorted({int(m.group(1)) for n in param_names if (m := re.search(rf"{re.escape(path)}\.(\d+)\.", n))})
    if not found:
        return None
    return rf"(?:^|\.){re.escape(path)}\.(?:{'|'.join(map(str, found))})\."


def random_unit_vector(size: int, seed: int) -> torch.Tensor:
    """A fixed random unit vector (H,): uniform [0, 1) then normalised, as in WMDP's RMU code."""
    generator = torch.Generator().manual_seed(seed)
    u = torch.rand(size, generator=generator)
    return u / u.norm()


def hidden_size(model) -> int:
    base = _unwrap(model)
    return base.config.hidden_size if hasattr(base.config, "hidden_size") else base.config.n_embd


def prepare_steering(method, model, tokenizer) -> None:
    """Set-up shared by the RMU family (a plain function, not a base class).

    Resolves the steered layer and the parameters to update (freezing the rest), builds the
    frozen reference model and the fixed random direction ``u``, and records what was chosen on
    ``method`` (``layer``, ``direction``, ``reference``, ``lora_layers_regex``, ``settings_used``).
    """
    # the layer is checked against the model before the (large) frozen copy is made
    method.layer, regex, names = select_layer_params(model, method.config.layer, method.config.params)
    method.reference = frozen_copy(model)
    method.direction = random_unit_vector(hidden_size(model), method.config.seed)  # (H,)
    method.lora_layers_regex = layers_regex_of(model, names)
    method.settings_used = {"layer": method.layer, "params": regex, "trainable": names}
