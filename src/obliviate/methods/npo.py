"""Negative Preference Optimization (Zhang et al. 2024, arXiv 2404.05868), optionally with a retain NLL term
(the paper's NPO+RT)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from obliviate.losses import npo_loss, sequence_logprob
from obliviate.methods._common import Paper, check_setting, frozen_copy, logits_of, nll_of, on_device_of


@dataclass
class NPOConfig:
    """NPO temperature and the retain weight."""

    beta: float = 0.1  # inverse temperature of eq. 3 (> 0); small beta approaches gradient ascent
    alpha: float = 1.0  # weight of the NLL on retain text (NPO+RT); 0 = plain NPO, no retain text needed

    def __post_init__(self):
        check_setting("method.beta", self.beta, above=0, hint="for the beta -> 0 limit use method gradient_ascent")
        check_setting("method.alpha", self.alpha, minimum=0)


class NPO:
    """Minimise ``-(2/beta) E log sigmoid(-beta log(pi/pi_ref))`` on forget sequences (+ alpha * NLL(retain))."""

    unlearning = True
    retain_text = "optional"
    frozen_reference = True
    search_coefficient = None
    summary = "negative preference optimization on the forget set against the frozen original model"
    paper = Paper("Negative Preference Optimization: From Catastrophic Collapse to Effective Unlearning",
                  "Zhang et al.", 2024, "2404.05868")

    def __init__(self, config: NPOConfig | None = None):
        self.config = config or NPOConfig()
        self.reference = None

    def prepare(self, model, tokenizer) -> None:
        self.reference = frozen_copy(model)

    def loss(self, model, batch):
        forget = batch["forget"]
        logits, labels = logits_of(model, forget)  # (B, T, V)
        self.reference = on_device_of(self.reference, forget["input_ids"])
        with torch.no_grad():
            ref_logits, _ = logits_of(self.reference, forget)
        # sequence-summed log-probs, as in the paper's log pi(y|x)
        logp, ref_logp = sequence_logprob(logits, labels), sequence_logprob(ref_logits, labels)  # (B,)
        loss = npo_loss(logp, ref_logp, self.config.beta)
        logs = {"forget_npo": loss.detach(), "forget_log_ratio": (logp - ref_logp).detach().mean()}
        if self.config.alpha > 0 and "retain" in batch:
            retain_nll = nll_of(model, batch["retain"])
            loss = loss + self.config.alpha * retain_nll
            logs["retain_nll"] = retain_nll.detach()
        return loss, logs
