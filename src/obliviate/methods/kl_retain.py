"""Gradient ascent on the forget set plus KL(reference || model) on retain text
(TOFU "KL Minimization", arXiv 2401.06121, §4)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from obliviate.losses import kl_retain_loss, kl_to_reference, token_nll
from obliviate.methods._common import frozen_copy, logits_of, nll_of, on_device_of


@dataclass
class KLRetainConfig:
    """Weights of the forget and KL terms."""

    gamma: float = 1.0  # weight of the forget term (-NLL on forget text)
    alpha: float = 1.0  # weight of KL(frozen original || model) on retain tokens


class KLRetain:
    """Minimise ``-gamma * NLL(forget) + alpha * KL(ref || model)`` on retain tokens; ref = the frozen original."""

    def __init__(self, config: KLRetainConfig | None = None):
        self.config = config or KLRetainConfig()
        self.reference = None

    def prepare(self, model, tokenizer) -> None:
        self.reference = frozen_copy(model)

    def loss(self, model, batch):
        forget_nll = nll_of(model, batch["forget"])
        retain = batch["retain"]
        logits, labels = logits_of(model, retain)  # (B, T, V)
        self.reference = on_device_of(self.reference, retain["input_ids"])
        with torch.no_grad():
            ref_logits, _ = logits_of(self.reference, retain)
        kl = kl_to_reference(logits, ref_logits, retain["attention_mask"])
        loss = kl_retain_loss(forget_nll, kl, self.config.gamma, self.config.alpha)
        return loss, {"forget_nll": forget_nll.detach(), "retain_kl": kl.detach(),
                      "retain_nll": token_nll(logits.detach(), labels)}
