"""WHP fine-tune: train the baseline on its generic labels (Eldan & Russinovich 2023, §3).

Hard labels: cross-entropy on labelled positions only. Soft labels: KL against the top-k of
``softmax(v_generic)``.
"""

from __future__ import annotations

from dataclasses import dataclass

from obliviate.losses import soft_label_kl, token_nll
from obliviate.methods._common import Paper


@dataclass
class WHPDistillConfig:
    """The labels decide everything; the loss kind follows from what the labels hold."""


class WHPDistill:
    """Cross-entropy on generic labels ``argmax(v_base - alpha * relu(v_reinforced - v_base))`` (or KL to
    their top-k) at the mapped positions; the labels are set by the WHP pipeline's ``labels.*``.
    """

    unlearning = False  # trains on the generic labels of `obliviate whp`, not on forget/retain pairs
    retain_text = "unused"
    frozen_reference = False
    search_coefficient = None
    summary = ("fine-tune the base model on generic labels: its own predictions with the target-specific "
               "continuations pushed down, using a model reinforced on the target and anchored terms replaced "
               "by generic ones")
    paper = Paper("Who's Harry Potter? Approximate Unlearning in LLMs", "Eldan & Russinovich", 2023, "2310.02238")

    def __init__(self, config: WHPDistillConfig | None = None):
        self.config = config or WHPDistillConfig()

    def loss(self, model, batch):
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits  # (B, T, V)
        if "topk_ids" in batch:
            loss = soft_label_kl(logits, batch["topk_ids"], batch["topk_probs"], batch["soft_mask"])
            return loss, {}
        return token_nll(logits, batch["labels"]), {}
