"""LoRA for any method: wrap the model with peft adapters before training, then save either the
merged weights (a plain HF model) or the adapter alone (peft format).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from obliviate.errors import ConfigError

SAVE_MODES = ("merged", "adapter")


@dataclass
class LoraSettings:
    """Low-rank adapters instead of full fine-tuning (peft)."""

    enabled: bool = False  # train LoRA adapters instead of the model's own weights
    r: int = 8  # adapter rank
    alpha: int = 16  # LoRA scaling numerator (scale = alpha / r)
    dropout: float = 0.0  # dropout on the adapter input
    # module names (last name component) to adapt, or ["all-linear"] for every linear layer but the output head
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                                               "up_proj", "down_proj"])
    save: str = "merged"  # "merged": a plain HF model with the adapters folded in; "adapter": the adapter only

    def check(self) -> list[tuple[str, bool, str]]:
        """Range rules (see :func:`obliviate.config.validate`)."""
        return [("r", self.r >= 1, ">= 1"), ("alpha", self.alpha > 0, "> 0"),
                ("dropout", 0 <= self.dropout < 1, "in [0, 1)"),
                ("target_modules", bool(self.target_modules), "a non-empty list of module names"),
                ("save", self.save in SAVE_MODES, f"one of {', '.join(SAVE_MODES)}"),
                ("save", self.save != "adapter" or self.enabled, "'merged' unless LoRA is on (pass --lora too)")]


def _linear_module_names(model) -> list[str]:
    """Names of every linear layer except the output head (what peft's "all-linear" means)."""
    import torch

    output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    kinds = (torch.nn.Linear,)
    try:
        from transformers.pytorch_utils import Conv1D  # GPT-2's linear layers

        kinds += (Conv1D,)
    except ImportError:
        pass
    return [n for n, m in model.named_modules() if isinstance(m, kinds) and m is not output]


def lora_target_names(model, settings: LoraSettings, layers_regex: str | None = None) -> list[str] | str:
    """The modules to adapt: ``settings.target_modules``, restricted to names matching ``layers_regex``.

    Returns:
        What peft's ``target_modules`` takes: the settings' list (or "all-linear") without a
        restriction, else the explicit full module names.

    Raises:
        ConfigError: nothing matches.
    """
    targets = list(settings.target_modules)
    all_linear = targets == ["all-linear"]
    if layers_regex is None:
        return "all-linear" if all_linear else targets
    candidates = _linear_module_names(model) if all_linear else \
        [n for n, _ in model.named_modules() if n.split(".")[-1] in targets]
    names = [n for n in candidates if re.search(layers_regex, n)]
    if not names:
        raise ConfigError(f"no LoRA target module ({', '.join(targets)}) lies in the method's layers "
                          f"('{layers_regex}'): set lora.target_modules to module names of this model")
    return names


def apply_lora(model, settings: LoraSettings, layers_regex: str | None = None):
    """Wrap ``model`` with LoRA adapters; only the adapter weights stay trainable.

    Args:
        model: an HF causal LM.
        settings: rank, alpha, dropout and target modules.
        layers_regex: if given, only modules whose full name matches (``re.search``) are adapted,
            e.g. the layers an RMU-style method steers (its ``lora_layers_regex``).

    Returns:
        The peft model.

    Raises:
        ConfigError: bad settings or no module to adapt.
    """
    from peft import LoraConfig, get_peft_model

    if settings.save not in SAVE_MODES:
        raise ConfigError(f"lora.save must be one of {', '.join(SAVE_MODES)}, not '{settings.save}'")
    if settings.r < 1:
        raise ConfigError(f"lora.r must be at least 1, not {settings.r}")
    config = LoraConfig(r=settings.r, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
                        target_modules=lora_target_names(model, settings, layers_regex), task_type="CAUSAL_LM")
    try:
        return get_peft_model(model, config)
    except ValueError as exc:
        raise ConfigError(f"cannot apply LoRA: {str(exc).splitlines()[0]}: set lora.target_modules to module "
                          "names of this model (or [all-linear])") from exc


def is_lora(model) -> bool:
    """Whether ``model`` is a peft model."""
    return hasattr(model, "peft_config") and hasattr(model, "merge_and_unload")


def save_model(model, tokenizer, out_dir, settings: LoraSettings, state_dict=None):
    """Save a trained model with its tokenizer in HF format (safetensors).

    A LoRA model is saved per ``settings.save``: ``"merged"`` folds the adapters into the weights
    (the folder then loads with ``AutoModelForCausalLM.from_pretrained``); ``"adapter"`` writes the
    adapter only (loads with ``PeftModel.from_pretrained(base, out_dir)``). A model without LoRA is
    saved whole. ``state_dict``: the gathered weights of a model trained sharded (FSDP, ZeRO-3),
    whose own parameters are only this process's shards.

    Returns:
        The model that was saved (the merged model after a merge: the peft wrapper is consumed).
    """
    out_dir = Path(out_dir)
    if is_lora(model) and state_dict is not None:
        from obliviate.errors import ConfigError

        raise ConfigError("LoRA is not supported with FSDP or DeepSpeed ZeRO-3: launch LoRA runs data-parallel "
                          "(examples/accelerate/ddp.yaml)")
    if state_dict is not None:
        state_dict = _without_tied_copies(model, state_dict)
    if is_lora(model) and settings.save == "adapter":
        model.save_pretrained(out_dir, safe_serialization=True)
    else:
        if is_lora(model):
            model = model.merge_and_unload()
        model.save_pretrained(out_dir, safe_serialization=True, state_dict=state_dict)
    tokenizer.save_pretrained(out_dir)
    return model


def _without_tied_copies(model, state_dict: dict) -> dict:
    """A gathered state dict holds tied weights (embeddings and LM head) as separate copies: keep
    the first name of each parameter the model shares, as ``save_pretrained`` does for its own."""
    seen, tied = set(), set()
    for name, param in model.named_parameters(remove_duplicate=False):
        if id(param) in seen:
            tied.add(name)
        seen.add(id(param))
    return {k: v for k, v in state_dict.items() if k not in tied}


def is_adapter_dir(path) -> bool:
    """Whether a folder holds a peft adapter (rather than a whole model)."""
    from obliviate.models import is_adapter_dir as _is_adapter_dir

    return _is_adapter_dir(path)


def load_with_adapter(base_spec: str, adapter_dir, device: str | None = None, trust_remote_code: bool = False):
    """Load the base model, apply a saved adapter and merge it (for evaluation).

    Returns:
        A :class:`obliviate.models.LoadedModel` whose ``path`` is the adapter folder and whose
        ``weights_hash`` covers the base weights and the adapter (see ``models.load_adapter``).
    """
    from obliviate.models import load_adapter

    return load_adapter(adapter_dir, base_spec=base_spec, device=device, trust_remote_code=trust_remote_code)
