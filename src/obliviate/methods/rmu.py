"""Representation Misdirection for Unlearning, RMU (Li et al. 2024, WMDP, arXiv 2403.03218, §5).

At decoder layer ``layer``, forget-token activations are pushed towards ``c * u`` (``u`` a fixed
random unit vector) and retain-token activations are held at the frozen model's; only the
parameters matching ``params`` are updated (by default the MLP down-projections of layers
``layer-2 .. layer``, as in the official code).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from obliviate.losses import rmu_forget_loss, rmu_retain_loss
from obliviate.methods._common import (Paper, check_layer_setting, check_regex_setting, check_setting, hidden_at,
                                       prepare_steering)


@dataclass
class RMUConfig:
    """Where to steer, how hard, and what to update."""

    layer: int | None = None  # decoder layer (0-based) steered; None = round(depth * 7/32), WMDP's 7 of 32
    # regex (re.search) over parameter names to update; None = the MLP down_proj of layers layer-2..layer
    params: str | None = None
    steering_coeff: float = 20.0  # c: norm of the target c*u (official code default; the README uses 6.5 for zephyr)
    alpha: float = 100.0  # weight of the retain MSE (official code default; the README uses 1200 for zephyr)
    seed: int = 0  # seed of the random direction u

    def __post_init__(self):
        check_layer_setting("method.layer", self.layer)
        check_regex_setting("method.params", self.params)
        check_setting("method.steering_coeff", self.steering_coeff, above=0)
        check_setting("method.alpha", self.alpha, minimum=0)


class RMU:
    """Minimise ``MSE(h_forget, c u) + alpha * MSE(h_retain, h_retain_frozen)`` at one layer."""

    unlearning = True
    retain_text = "required"
    frozen_reference = True
    search_coefficient = "steering_coeff"
    summary = ("representation misdirection: forget-text activations at one layer are pushed to a scaled random "
               "direction, retain-text activations held at the frozen model's")
    paper = Paper("The WMDP Benchmark: Measuring and Reducing Malicious Use With Unlearning", "Li et al.", 2024,
                  "2403.03218")

    def __init__(self, config: RMUConfig | None = None):
        self.config = config or RMUConfig()
        self.reference = None
        self.settings_used = {}

    def prepare(self, model, tokenizer) -> None:
        """Resolve layer and parameters, freeze the rest, build the frozen model and the direction."""
        prepare_steering(self, model, tokenizer)

    def forget_term(self, model, batch):
        """``MSE(h_forget, c u)``: the part sharpness-aware training perturbs."""
        forget = batch["forget"]
        h_forget = hidden_at(model, forget, self.layer)  # (B, T, H)
        target = self.config.steering_coeff * self.direction.to(h_forget.device)  # (H,)
        forget_loss = rmu_forget_loss(h_forget, target, forget["attention_mask"])
        return forget_loss, {"forget_loss": forget_loss.detach()}

    def retain_term(self, model, batch):
        """``alpha * MSE(h_retain, h_retain_frozen)``."""
        retain = batch["retain"]
        h_retain = hidden_at(model, retain, self.layer)
        with torch.no_grad():
            h_frozen = hidden_at(self.reference, retain, self.layer)
        retain_loss = rmu_retain_loss(h_retain, h_frozen, retain["attention_mask"])
        return self.config.alpha * retain_loss, {"retain_loss": retain_loss.detach()}

    def loss(self, model, batch):
        forget, forget_logs = self.forget_term(model, batch)
        retain, retain_logs = self.retain_term(model, batch)
        return forget + retain, {**forget_logs, **retain_logs}
