"""Adaptive RMU (Dang et al. 2024, arXiv 2408.06223): RMU whose steering coefficient is set per
input to ``beta`` times the norm of the frozen model's activation at the steered layer, so that the
target scales with the layer's natural activation size instead of a hand-tuned ``c``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from obliviate.losses import adaptive_rmu_coefficient, rmu_forget_loss, rmu_retain_loss
from obliviate.methods._common import (Paper, check_layer_setting, check_regex_setting, check_setting, hidden_at,
                                       prepare_steering)


@dataclass
class AdaptiveRMUConfig:
    """Where to steer, the coefficient's scale, and what to update."""

    layer: int | None = None  # decoder layer (0-based) steered; None = round(depth * 7/32), WMDP's 7 of 32
    # regex (re.search) over parameter names to update; None = the MLP down_proj of layers layer-2..layer
    params: str | None = None
    beta: float = 5.0  # scale: coefficient = beta * ||h_frozen(x)|| per forget input (the paper's beta)
    alpha: float = 100.0  # weight of the retain MSE (as RMU)
    seed: int = 0  # seed of the random direction u

    def __post_init__(self):
        check_layer_setting("method.layer", self.layer)
        check_regex_setting("method.params", self.params)
        check_setting("method.beta", self.beta, above=0)
        check_setting("method.alpha", self.alpha, minimum=0)


class AdaptiveRMU:
    """Minimise ``MSE(h_forget, beta ||h_frozen(x)|| u) + alpha * MSE(h_retain, h_retain_frozen)`` at one layer."""

    unlearning = True
    retain_text = "required"
    frozen_reference = True
    search_coefficient = "beta"
    summary = ("adaptive RMU: RMU whose steering coefficient is beta times the norm of the frozen model's "
               "activation at the steered layer")
    paper = Paper("On Effects of Steering Latent Representation for Large Language Model Unlearning", "Dang et al.",
                  2024, "2408.06223")

    def __init__(self, config: AdaptiveRMUConfig | None = None):
        self.config = config or AdaptiveRMUConfig()
        self.reference = None
        self.settings_used = {}

    def prepare(self, model, tokenizer) -> None:
        """Resolve layer and parameters, freeze the rest, build the frozen model and the direction."""
        prepare_steering(self, model, tokenizer)

    def forget_term(self, model, batch):
        """``MSE(h_forget, beta ||h_frozen(x)|| u)``: the part sharpness-aware training perturbs."""
        forget = batch["forget"]
        h_forget = hidden_at(model, forget, self.layer)  # (B, T, H)
        with torch.no_grad():
            h_forget_frozen = hidden_at(self.reference, forget, self.layer)
        coef = adaptive_rmu_coefficient(h_forget_frozen, forget["attention_mask"], self.config.beta)  # (B,)
        target = coef[:, None, None] * self.direction.to(h_forget.device)  # (B, 1, H)
        forget_loss = rmu_forget_loss(h_forget, target, forget["attention_mask"])
        return forget_loss, {"forget_loss": forget_loss.detach(), "steering_coeff": coef.mean()}

    def retain_term(self, model, batch):
        """``alpha * MSE(h_retain, h_retain_frozen)``."""
        retain = batch["retain"]
        with torch.no_grad():
            h_retain_frozen = hidden_at(self.reference, retain, self.layer)
        retain_loss = rmu_retain_loss(hidden_at(model, retain, self.layer), h_retain_frozen, retain["attention_mask"])
        return self.config.alpha * retain_loss, {"retain_loss": retain_loss.detach()}

    def loss(self, model, batch):
        forget, forget_logs = self.forget_term(model, batch)
        retain, retain_logs = self.retain_term(model, batch)
        return forget + retain, {**forget_logs, **retain_logs}
