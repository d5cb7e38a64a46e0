"""Gradient ascent: raise the NLL of the forget set (Jang et al. 2023, arXiv 2210.01504, §3)."""

from __future__ import annotations

from dataclasses import dataclass

from obliviate.losses import gradient_ascent_loss
from obliviate.methods._common import Paper, nll_of


@dataclass
class GradientAscentConfig:
    """Plain gradient ascent has no settings beyond the training loop's (it uses no retain text)."""


class GradientAscent:
    """Minimise ``-NLL(forget)``. Unbounded: watch the retain metrics, keep steps and rate small."""

    unlearning = True
    retain_text = "unused"
    frozen_reference = False
    search_coefficient = None
    summary = "gradient ascent on the forget set (raises its next-token NLL)"
    paper = Paper("Knowledge Unlearning for Mitigating Privacy Risks in Language Models", "Jang et al.", 2023,
                  "2210.01504")

    def __init__(self, config: GradientAscentConfig | None = None):
        self.config = config or GradientAscentConfig()

    def forget_term(self, model, batch):
        """The whole loss is the forget term (sharpness-aware training perturbs along it)."""
        forget_nll = nll_of(model, batch["forget"])
        return gradient_ascent_loss(forget_nll), {"forget_nll": forget_nll.detach()}

    def loss(self, model, batch):
        return self.forget_term(model, batch)
