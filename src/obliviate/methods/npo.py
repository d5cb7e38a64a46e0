"""Negative Preference Optimization (Zhang et al. 2024, arXiv 2404.05868), optionally with a retain NLL term
(the paper's NPO+RT)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from obliviate.errors import ConfigError
from obliviate.losses import npo_loss, sequence_logprob
from obliviate.methods._common import Paper, check_setting, frozen_copy, logits_of, nll_of


@dataclass
class NPOConfig:
    """NPO temperature and the retain weight."""

    beta: float = 0.1  # inverse temperature of eq. 3 (> 0); small beta approaches gradient ascent
    alpha: float = 1.0  # weight of the NLL on retain text (NPO+RT); 0 = plain NPO, no retain text needed
    # compute the original model's log-probability of every forget example once, before training, instead of
    # keeping a frozen copy of the model (saves a whole model per GPU; the same loss up to float rounding)
    precompute_reference: bool = False

    def __post_init__(self):
        check_setting("method.beta", self.beta, above=0, hint="for the beta -> 0 limit use method gradient_ascent")
        check_setting("method.alpha", self.alpha, minimum=0)
        if not isinstance(self.precompute_reference, bool):
            raise ConfigError(f"'method.precompute_reference' must be true or false, not {self.precompute_reference!r}")


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
        if not self.config.precompute_reference:
            self.reference = frozen_copy(model)

    @torch.no_grad()
    def attach_reference(self, model, examples: list[dict], pad_id: int, batch_size: int = 8) -> list[dict]:
        """With ``precompute_reference``: each example with ``forget.ref_logp``, the sequence log-prob
        of its forget text under ``model`` as it is now (before training); otherwise ``examples``."""
        from obliviate.train import pad_collate

        if not self.config.precompute_reference:
            return examples
        was_training = model.training
        model.eval()
        device = next(model.parameters()).device
        out = []
        for start in range(0, len(examples), batch_size):
            chunk = examples[start:start + batch_size]
            forget = pad_collate([e["forget"] for e in chunk], pad_id)
            logits, labels = logits_of(model, {k: v.to(device) for k, v in forget.items()})  # (b, T, V)
            ref_logp = sequence_logprob(logits, labels).cpu()  # (b,)
            out += [{**e, "forget": {**e["forget"], "ref_logp": r}} for e, r in zip(chunk, ref_logp)]
        model.train(was_training)
        return out

    def forget_term(self, model, batch):
        """The NPO loss on forget text: the part sharpness-aware training perturbs."""
        forget = batch["forget"]
        logits, labels = logits_of(model, forget)  # (B, T, V)
        if "ref_logp" in forget:  # precomputed before training
            ref_logp = forget["ref_logp"].to(logits.device)
        else:
            with torch.no_grad():
                ref_logp = sequence_logprob(logits_of(self.reference, forget)[0], labels)
        # sequence-summed log-probs, as in the paper's log pi(y|x)
        logp = sequence_logprob(logits, labels)  # (B,)
        loss = npo_loss(logp, ref_logp, self.config.beta)
        return loss, {"forget_npo": loss.detach(), "forget_log_ratio": (logp - ref_logp).detach().mean()}

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
