"""Gradient ascent on the forget set plus KL(reference || model) on retain text
(TOFU "KL Minimization", arXiv 2401.06121, §4)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from obliviate.losses import kl_retain_loss, kl_to_reference, token_nll
from obliviate.methods._common import Paper, check_setting, frozen_copy, logits_of, nll_of


@dataclass
class KLRetainConfig:
    """Weights of the forget and KL terms."""

    gamma: float = 1.0  # weight of the forget term (-NLL on forget text)
    alpha: float = 1.0  # weight of KL(frozen original || model) on retain tokens

    def __post_init__(self):
        check_setting("method.gamma", self.gamma, above=0, hint="it weighs the forget term: 0 forgets nothing")
        check_setting("method.alpha", self.alpha, minimum=0)


class KLRetain:
    """Minimise ``-gamma * NLL(forget) + alpha * KL(ref || model)`` on retain tokens; ref = the frozen original."""

    unlearning = True
    retain_text = "required"
    frozen_reference = True
    search_coefficient = None
    summary = "gradient ascent on the forget set, KL to the frozen original model on the retain set"
    paper = Paper("TOFU: A Task of Fictitious Unlearning for LLMs", "Maini et al.", 2024, "2401.06121")

    def __init__(self, config: KLRetainConfig | None = None):
        self.config = config or KLRetainConfig()
        self.reference = None

    def prepare(self, model, tokenizer) -> None:
        self.reference = frozen_copy(model)

    def forget_term(self, model, batch):
        """``-gamma * NLL(forget)``: the part sharpness-aware training perturbs."""
        forget_nll = nll_of(model, batch["forget"])
        return kl_retain_loss(forget_nll, forget_nll.new_zeros(()), self.config.gamma, 0.0), \
            {"forget_nll": forget_nll.detach()}

    def retain_term(self, model, batch):
        """``alpha * KL(ref || model)`` on retain tokens."""
        retain = batch["retain"]
        logits, labels = logits_of(model, retain)  # (B, T, V)
        with torch.no_grad():
            ref_logits, _ = logits_of(self.reference, retain)
        kl = kl_to_reference(logits, ref_logits, retain["attention_mask"])
        return self.config.alpha * kl, {"retain_kl": kl.detach(), "retain_nll": token_nll(logits.detach(), labels)}

    def loss(self, model, batch):
        forget, forget_logs = self.forget_term(model, batch)
        retain, retain_logs = self.retain_term(model, batch)
        return forget + retain, {**forget_logs, **retain_logs}
