"""Cosine RMU: steer the *direction* of forget activations instead of their position.

Our design after Atil, Gupta & Passonneau 2026 (arXiv 2605.26454); only the paper's abstract is
available to us, so this is not a reproduction. At one decoder layer, forget-token activations are
turned towards a fixed random direction ``u`` (``1 - cos(h, u)``, blind to the activation norm, so
no steering coefficient to tune), and retain-token activations are held at the frozen model's
(MSE, or ``1 - cos`` with ``retain_kind="cosine"``). Parameters are selected as in RMU.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from obliviate.losses import cosine_forget_loss, cosine_retain_loss
from obliviate.methods._common import (ATIL_2026, check_choice, check_layer_setting, check_regex_setting, check_setting,
                                       hidden_at, prepare_steering)


@dataclass
class CosineRMUConfig:
    """Where to steer, the retain term, and what to update."""

    layer: int | None = None  # decoder layer (0-based) steered; None = round(depth * 7/32), WMDP's 7 of 32
    # regex (re.search) over parameter names to update; None = the MLP down_proj of layers layer-2..layer
    params: str | None = None
    alpha: float = 100.0  # weight of the retain term
    retain_kind: str = "mse"  # retain term: "mse" (as RMU) or "cosine" (1 - cos to the frozen activation)
    seed: int = 0  # seed of the random direction u

    def __post_init__(self):
        check_layer_setting("method.layer", self.layer)
        check_regex_setting("method.params", self.params)
        check_setting("method.alpha", self.alpha, minimum=0)
        check_choice("method.retain_kind", self.retain_kind, ("mse", "cosine"))


class CosineRMU:
    """Minimise ``mean(1 - cos(h_forget, u)) + alpha * retain(h_retain, h_retain_frozen)`` at one layer."""

    unlearning = True
    retain_text = "required"
    frozen_reference = True
    search_coefficient = None  # 1 - cos is blind to the activation norm: no steering coefficient to tune
    summary = ("cosine RMU: forget-text activations at one layer are turned towards a random direction, "
               "retain-text activations held at the frozen model's")
    paper = ATIL_2026

    def __init__(self, config: CosineRMUConfig | None = None):
        self.config = config or CosineRMUConfig()
        self.reference = None
        self.settings_used = {}

    def prepare(self, model, tokenizer) -> None:
        """Resolve layer and parameters, freeze the rest, build the frozen model and the direction."""
        prepare_steering(self, model, tokenizer)

    def forget_term(self, model, batch):
        """``mean(1 - cos(h_forget, u))``: the part sharpness-aware training perturbs."""
        forget = batch["forget"]
        h_forget = hidden_at(model, forget, self.layer)  # (B, T, H)
        forget_loss = cosine_forget_loss(h_forget, self.direction.to(h_forget.device), forget["attention_mask"])
        return forget_loss, {"forget_loss": forget_loss.detach()}

    def retain_term(self, model, batch):
        """``alpha * retain(h_retain, h_retain_frozen)``."""
        retain = batch["retain"]
        with torch.no_grad():
            h_frozen = hidden_at(self.reference, retain, self.layer)
        retain_loss = cosine_retain_loss(hidden_at(model, retain, self.layer), h_frozen, retain["attention_mask"],
                                         kind=self.config.retain_kind)
        return self.config.alpha * retain_loss, {"retain_loss": retain_loss.detach()}

    def loss(self, model, batch):
        forget, forget_logs = self.forget_term(model, batch)
        retain, retain_logs = self.retain_term(model, batch)
        return forget + retain, {**forget_logs, **retain_logs}
