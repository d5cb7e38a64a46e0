"""Unlearning and training methods, selectable by name.

A method is a small class with a config dataclass, ``prepare(model, tokenizer)`` where it has
something to build (frozen reference, random direction, parameter selection) and
``loss(model, batch) -> (loss, logs)``; the one training loop in :mod:`obliviate.train` runs them all.
"""

import dataclasses

from obliviate.methods.adaptive_rmu import AdaptiveRMU, AdaptiveRMUConfig
from obliviate.methods.cosine_rmu import CosineRMU, CosineRMUConfig
from obliviate.methods.finetune import FineTune, FineTuneConfig
from obliviate.methods.grad_diff import GradDiff, GradDiffConfig
from obliviate.methods.gradient_ascent import GradientAscent, GradientAscentConfig
from obliviate.methods.kl_retain import KLRetain, KLRetainConfig
from obliviate.methods.npo import NPO, NPOConfig
from obliviate.methods.probe_direction import ProbeDirection, ProbeDirectionConfig
from obliviate.methods.rmu import RMU, RMUConfig
from obliviate.methods.simnpo import SimNPO, SimNPOConfig
from obliviate.methods.whp_distill import WHPDistill, WHPDistillConfig

# name -> (method class, its config dataclass)
METHODS = {
    "finetune": (FineTune, FineTuneConfig),
    "whp": (WHPDistill, WHPDistillConfig),
    "gradient_ascent": (GradientAscent, GradientAscentConfig),
    "grad_diff": (GradDiff, GradDiffConfig),
    "kl_retain": (KLRetain, KLRetainConfig),
    "npo": (NPO, NPOConfig),
    "simnpo": (SimNPO, SimNPOConfig),
    "rmu": (RMU, RMUConfig),
    "adaptive_rmu": (AdaptiveRMU, AdaptiveRMUConfig),
    "cosine_rmu": (CosineRMU, CosineRMUConfig),
    "probe_direction": (ProbeDirection, ProbeDirectionConfig),
}

# Methods run by `obliviate unlearn` on forget(+retain) pairs -> their use of retain text:
# "required", "optional" (used when the config's retain weight `alpha` > 0) or "unused".
UNLEARNING_METHODS = {
    "gradient_ascent": "unused",
    "grad_diff": "required",
    "kl_retain": "required",
    "npo": "optional",
    "simnpo": "optional",
    "rmu": "required",
    "adaptive_rmu": "required",
    "cosine_rmu": "required",
    "probe_direction": "optional",
}


def make_method(name: str, settings: dict | None = None):
    """Build unlearning method ``name`` with ``settings`` checked against its config dataclass.

    Raises:
        ConfigError: an unknown method, or an unknown or malformed setting (the message names it).
    """
    from obliviate.config import from_dict
    from obliviate.errors import ConfigError

    if name not in UNLEARNING_METHODS:
        hint = " (`finetune` and `whp` have their own commands)" if name in METHODS else ""
        raise ConfigError(f"unknown unlearning method '{name}'{hint}: choose one of {', '.join(UNLEARNING_METHODS)}")
    method_class, config_class = METHODS[name]
    if settings and not dataclasses.fields(config_class):
        raise ConfigError(f"unknown setting 'method.{sorted(settings)[0]}': method '{name}' has no settings")
    return method_class(from_dict(config_class, dict(settings or {}), where="method"))


def uses_retain(name: str, config) -> bool:
    """Whether unlearning method ``name`` with ``config`` trains on retain text."""
    use = UNLEARNING_METHODS[name]
    return use == "required" or (use == "optional" and getattr(config, "alpha", 0) > 0)


__all__ = [
    "METHODS", "UNLEARNING_METHODS", "make_method", "uses_retain",
    "FineTune", "FineTuneConfig", "WHPDistill", "WHPDistillConfig",
    "GradientAscent", "GradientAscentConfig", "GradDiff", "GradDiffConfig", "KLRetain", "KLRetainConfig",
    "NPO", "NPOConfig", "SimNPO", "SimNPOConfig",
    "RMU", "RMUConfig", "AdaptiveRMU", "AdaptiveRMUConfig", "CosineRMU", "CosineRMUConfig",
    "ProbeDirection", "ProbeDirectionConfig",
]
