"""Unlearning and training methods, selectable by name.

A method is a small class with a config dataclass, ``prepare(model, tokenizer)`` where it has
something to build (frozen reference, random direction, parameter selection) and
``loss(model, batch) -> (loss, logs)``; the one training loop in :mod:`obliviate.train` runs them all.

Each method class also states the facts about itself that the rest of obliviate reads, as class
attributes (:data:`FACTS` says what each one means). A new method is its own file plus one line
in :data:`METHODS`: every list of methods (``UNLEARNING_METHODS``, :func:`uses_retain`, the model
card's references, the meta-search coefficients, the CLI help, the table in ``docs/methods.md``)
is derived from there, and ``tests/test_method_registry.py`` fails if a fact is missing.
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
from obliviate.methods.undo import UndoConfig, UndoDistill
from obliviate.methods.whp_distill import WHPDistill, WHPDistillConfig

# name -> (method class, its config dataclass): the one registration of each method
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
    "undo": (UndoDistill, UndoConfig),
}

# The facts every method class declares in its own body, and what they mean.
FACTS = {
    "unlearning": "True: run by `obliviate unlearn` on forget(+retain) pairs; False: trains on plain batches "
                  "inside another command (finetune, whp)",
    "retain_text": 'its use of retain text: "required", "optional" (used when its config\'s retain weight '
                   '`alpha` > 0) or "unused"',
    "frozen_reference": "True: keeps a frozen copy of the original model in memory (the reference), as "
                        "`method.reference` (None when not kept), which the training loop places or shards",
    "search_coefficient": "the config field `obliviate meta-search --coefficients` tunes (besides layer and alpha), "
                          "or None",
    "summary": "one line on what it does, for the model card",
    "paper": "the Paper it comes from (title, authors, year, arXiv id), or None; the model card cites it",
}
RETAIN_USES = ("required", "optional", "unused")  # the values of `retain_text`

# Methods run by `obliviate unlearn` on forget(+retain) pairs -> their use of retain text.
UNLEARNING_METHODS = {name: cls.retain_text for name, (cls, _) in METHODS.items() if cls.unlearning}


def make_method(name: str, settings: dict | None = None):
    """Build unlearning method ``name`` with ``settings`` checked against its config dataclass.

    Every setting is checked here (by the config's ``__post_init__``): type, range, finiteness.
    Layer indices are checked against the model's depth in ``prepare``.

    Raises:
        ConfigError: an unknown method, or an unknown, malformed or out-of-range setting (the message
            names it and the allowed range).
    """
    from obliviate.config import from_dict
    from obliviate.errors import ConfigError

    if name not in UNLEARNING_METHODS:
        hint = " (`finetune` and `whp` have their own commands; `undo` is a stage: --set undo.enabled=true)" \
            if name in METHODS else ""
        raise ConfigError(f"unknown unlearning method '{name}'{hint}: choose one of {', '.join(UNLEARNING_METHODS)}")
    method_class, config_class = METHODS[name]
    if settings and not dataclasses.fields(config_class):
        raise ConfigError(f"unknown setting 'method.{sorted(settings)[0]}': method '{name}' has no settings")
    return method_class(from_dict(config_class, dict(settings or {}), where="method"))


def uses_retain(name: str, config) -> bool:
    """Whether method ``name`` with ``config`` trains on retain text."""
    use = METHODS[name][0].retain_text
    return use == "required" or (use == "optional" and getattr(config, "alpha", 0) > 0)


def method_reference(name: str) -> str:
    """What method ``name`` does and the paper it comes from, in one line (for the model card).

    Raises:
        KeyError: ``name`` is not a registered method.
    """
    method_class = METHODS[name][0]
    paper = method_class.paper
    if paper is None:
        return method_class.summary
    if paper.our_design:
        return (f"{method_class.summary}; our design after {paper.cite()} ({paper.url}), from the paper's abstract "
                "only: not a reproduction of its method")
    return f"{method_class.summary} ({paper.cite()}, {paper.url})"


def sam_target(method_class) -> str:
    """What sharpness-aware training (``train.sam_rho``) perturbs for a method: its ``forget_term`` where it
    has one, else its whole loss (see :mod:`obliviate.sharpness`)."""
    return "forget term" if hasattr(method_class, "forget_term") else "whole loss"


def _markdown(text: str) -> str:
    return text.replace("``", "`").replace("|", "\\|")


def methods_table() -> str:
    """The markdown table of every registered method, as ``docs/methods.md`` holds it (a test compares)."""
    rows = ["| name | objective | settings (default) | retain text | frozen reference | `train.sam_rho` perturbs | "
            "reference |",
            "|---|---|---|---|---|---|---|"]
    for name, (method_class, config_class) in METHODS.items():
        objective = _markdown(" ".join(method_class.__doc__.strip().split("\n\n")[0].split()))  # first paragraph
        settings = ", ".join(f"{f.name} {'unset' if f.default is None else f.default}"
                             if f.default is not dataclasses.MISSING else f.name
                             for f in dataclasses.fields(config_class)) or "none"
        paper = method_class.paper
        reference = "none" if paper is None else \
            f"{'**our design** after ' if paper.our_design else ''}{paper.authors} {paper.year}, " \
            f"[arXiv {paper.arxiv}]({paper.url})"
        rows.append(f"| `{name}` | {objective} | {_markdown(settings)} | {method_class.retain_text} | "
                    f"{'yes' if method_class.frozen_reference else 'no'} | {sam_target(method_class)} | {reference} |")
    return "\n".join(rows)


__all__ = [
    "METHODS", "FACTS", "RETAIN_USES", "UNLEARNING_METHODS", "make_method", "uses_retain",
    "method_reference", "methods_table", "sam_target",
    "FineTune", "FineTuneConfig", "WHPDistill", "WHPDistillConfig",
    "GradientAscent", "GradientAscentConfig", "GradDiff", "GradDiffConfig", "KLRetain", "KLRetainConfig",
    "NPO", "NPOConfig", "SimNPO", "SimNPOConfig",
    "RMU", "RMUConfig", "AdaptiveRMU", "AdaptiveRMUConfig", "CosineRMU", "CosineRMUConfig",
    "ProbeDirection", "ProbeDirectionConfig", "UndoDistill", "UndoConfig",
]
