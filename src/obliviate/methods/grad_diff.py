"""Gradient difference: ascend on the forget set, descend on the retain set (TOFU, arXiv 2401.06121, §4)."""

from __future__ import annotations

from dataclasses import dataclass

from obliviate.losses import grad_diff_loss
from obliviate.methods._common import Paper, check_setting, nll_of


@dataclass
class GradDiffConfig:
    """Weights of the two NLL terms."""

    gamma: float = 1.0  # weight of the forget term (-NLL on forget text)
    alpha: float = 1.0  # weight of the retain term (NLL on retain text)

    def __post_init__(self):
        check_setting("method.gamma", self.gamma, above=0, hint="it weighs the forget term: 0 forgets nothing")
        check_setting("method.alpha", self.alpha, minimum=0)


class GradDiff:
    """Minimise ``-gamma * NLL(forget) + alpha * NLL(retain)``."""

    unlearning = True
    retain_text = "required"
    frozen_reference = False
    search_coefficient = None
    summary = "gradient difference: ascent on the forget set, descent on the retain set"
    paper = Paper("TOFU: A Task of Fictitious Unlearning for LLMs", "Maini et al.", 2024, "2401.06121")

    def __init__(self, config: GradDiffConfig | None = None):
        self.config = config or GradDiffConfig()

    def forget_term(self, model, batch):
        """``-gamma * NLL(forget)``: the part sharpness-aware training perturbs."""
        forget_nll = nll_of(model, batch["forget"])
        return grad_diff_loss(forget_nll, forget_nll.new_zeros(()), self.config.gamma, 0.0), \
            {"forget_nll": forget_nll.detach()}

    def retain_term(self, model, batch):
        """``alpha * NLL(retain)``."""
        retain_nll = nll_of(model, batch["retain"])
        return self.config.alpha * retain_nll, {"retain_nll": retain_nll.detach()}

    def loss(self, model, batch):
        forget, forget_logs = self.forget_term(model, batch)
        retain, retain_logs = self.retain_term(model, batch)
        return forget + retain, {**forget_logs, **retain_logs}
