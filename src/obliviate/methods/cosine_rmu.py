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

from obliviate.errors import ConfigError
from obliviate.losses import cosine_forget_loss, cosine_retain_loss
from obliviate.methods._common import hidden_at, on_device_of, prepare_steering


@dataclass
class CosineRMUConfig:
    """Where to steer, the retain term, and what to update."""

    layer: int | None = None  # decoder layer (0-based) steered; None = round(depth * 7/32), WMDP's 7 of 32
    # regex (re.search) over parameter names to update; None = the MLP down_proj of layers layer-2..layer
    params: str | None = None
    alpha: float = 100.0  # weight of the retain term
    retain_kind: str = "mse"  # retain term: "mse" (as RMU) or "cosine" (1 - cos to the frozen activation)
    seed: int = 0  # seed of the random direction u


class CosineRMU:
    """Minimise ``mean(1 - cos(h_forget, u)) + alpha * retain(h_retain, h_retain_frozen)`` at one layer."""

    def __init__(self, config: CosineRMUConfig | None = None):
        self.config = config or CosineRMUConfig()
        if self.config.retain_kind not in ("mse", "cosine"):
            raise ConfigError(f"method.retain_kind must be 'mse' or 'cosine', not {self.config.retain_kind!r}")
        self.reference = None
        self.settings_used = {}

    def prepare(self, model, tokenizer) -> None:
        """Resolve layer and parameters, freeze the rest, build the frozen model and the direction."""
        prepare_steering(self, model, tokenizer)

    def loss(self, model, batch):
        forget, retain = batch["forget"], batch["retain"]
        self.reference = on_device_of(self.reference, forget["input_ids"])
        h_forget = hidden_at(model, forget, self.layer)  # (B, T, H)
        forget_loss = cosine_forget_loss(h_forget, self.direction.to(h_forget.device), forget["attention_mask"])
        with torch.no_grad():
            h_frozen = hidden_at(self.reference, retain, self.layer)
        retain_loss = cosine_retain_loss(hidden_at(model, retain, self.layer), h_frozen, retain["attention_mask"],
                                         kind=self.config.retain_kind)
        loss = forget_loss + self.config.alpha * retain_loss
        return loss, {"forget_loss": forget_loss.detach(), "retain_loss": retain_loss.detach()}
