"""WHP fine-tune: train the baseline on its generic labels (Eldan & Russinovich 2023, §3).

Hard labels: cross-entropy on labelled positions only. Soft labels: KL against the top-k of
``softmax(v_generic)``. Optional (obliviate's addition, not the paper's): ``alpha`` (the
pipeline's ``retain.weight``) times KL(frozen baseline || model) on retain text (general text), which holds the predictions away from
the target where the generic labels say nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from obliviate.losses import kl_to_reference, soft_label_kl, token_nll
from obliviate.methods._common import Paper, check_setting, frozen_copy, logits_of


@dataclass
class WHPDistillConfig:
    """The labels decide the forget term; ``alpha`` weighs the optional KL term on retain text (the
    pipeline's ``retain.weight``; named as the retain weight of the other methods)."""

    alpha: float = 0.0  # 0: the paper's loss (no retain text)

    def __post_init__(self):
        check_setting("retain.weight", self.alpha, minimum=0)


class WHPDistill:
    """Cross-entropy on generic labels ``argmax(v_base - alpha * relu(v_reinforced - v_base))`` (or KL to
    their top-k) at the mapped positions; the labels are set by the WHP pipeline's ``labels.*``. With
    ``alpha > 0`` (the pipeline's ``retain.weight``, given ``--retain`` text or ``--retain-translated``) a batch is
    ``{"forget": labels, "retain": text}`` and the loss adds ``alpha * KL(baseline || model)`` on the retain tokens.
    """

    unlearning = False  # trains on the generic labels of `obliviate whp`, not on forget/retain pairs
    retain_text = "optional"
    frozen_reference = False  # only with alpha > 0 (see prepare)
    search_coefficient = None
    summary = ("fine-tune the base model on generic labels: its own predictions with the target-specific "
               "continuations pushed down, using a model reinforced on the target and anchored terms replaced "
               "by generic ones")
    paper = Paper("Who's Harry Potter? Approximate Unlearning in LLMs", "Eldan & Russinovich", 2023, "2310.02238")

    def __init__(self, config: WHPDistillConfig | None = None):
        self.config = config or WHPDistillConfig()
        self.reference = None

    def prepare(self, model, tokenizer=None) -> None:
        """Keep a frozen copy of the baseline when a retain term is on (before any adapter is added)."""
        if self.config.alpha > 0:
            self.reference = frozen_copy(model)
            self.frozen_reference = True  # this instance keeps one

    @staticmethod
    def distill_term(model, labels: dict):
        logits = model(input_ids=labels["input_ids"], attention_mask=labels["attention_mask"]).logits  # (B, T, V)
        if "topk_ids" in labels:
            return soft_label_kl(logits, labels["topk_ids"], labels["topk_probs"], labels["soft_mask"])
        return token_nll(logits, labels["labels"])

    def loss(self, model, batch):
        if "forget" not in batch:  # labels only: the paper's loss
            return self.distill_term(model, batch), {}
        distill = self.distill_term(model, batch["forget"])
        retain = batch["retain"]
        logits, _ = logits_of(model, retain)
        with torch.no_grad():
            ref_logits, _ = logits_of(self.reference, retain)
        kl = kl_to_reference(logits, ref_logits, retain["attention_mask"])
        return distill + self.config.alpha * kl, {"distill": distill.detach(), "retain_kl": kl.detach()}
