"""SimNPO: reference-free, length-normalised NPO (Fan et al. 2024, arXiv 2410.07163), with a retain NLL term."""

from __future__ import annotations

from dataclasses import dataclass

from obliviate.losses import sequence_logprob, sequence_token_count, simnpo_loss
from obliviate.methods._common import Paper, check_setting, logits_of, nll_of


@dataclass
class SimNPOConfig:
    """SimNPO temperature, margin and retain weight."""

    beta: float = 2.5  # inverse temperature of eq. 4 (> 0)
    gamma: float = 0.0  # reward margin of eq. 4 (the paper finds 0 works well for unlearning)
    alpha: float = 1.0  # weight of the NLL on retain text; 0 = no retain text needed

    def __post_init__(self):
        check_setting("method.beta", self.beta, above=0)
        check_setting("method.gamma", self.gamma)
        check_setting("method.alpha", self.alpha, minimum=0)


class SimNPO:
    """Minimise ``-(2/beta) E log sigmoid(-(beta/|y|) log pi(y|x) - gamma)`` on forget text (+ alpha * NLL(retain))."""

    unlearning = True
    retain_text = "optional"
    frozen_reference = False
    search_coefficient = None
    summary = "SimNPO, reference-free and length-normalised negative preference optimization on the forget set"
    paper = Paper("Simplicity Prevails: Rethinking Negative Preference Optimization for LLM Unlearning",
                  "Fan et al.", 2024, "2410.07163")

    def __init__(self, config: SimNPOConfig | None = None):
        self.config = config or SimNPOConfig()

    def forget_term(self, model, batch):
        """The SimNPO loss on forget text: the part sharpness-aware training perturbs."""
        logits, labels = logits_of(model, batch["forget"])  # (B, T, V)
        logp, lengths = sequence_logprob(logits, labels), sequence_token_count(labels)  # (B,), (B,)
        loss = simnpo_loss(logp, lengths, self.config.beta, self.config.gamma)
        return loss, {"forget_simnpo": loss.detach(),
                      "forget_nll": (-logp.sum() / lengths.sum().clamp_min(1)).detach()}

    def retain_term(self, model, batch):
        """``alpha * NLL(retain)``; the number 0.0 without retain text or with alpha 0."""
        if self.config.alpha == 0 or "retain" not in batch:
            return 0.0, {}
        retain_nll = nll_of(model, batch["retain"])
        return self.config.alpha * retain_nll, {"retain_nll": retain_nll.detach()}

    def loss(self, model, batch):
        forget, forget_logs = self.forget_term(model, batch)
        retain, retain_logs = self.retain_term(model, batch)
        return forget + retain, {**forget_logs, **retain_logs}
