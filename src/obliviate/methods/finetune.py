"""Plain next-token fine-tuning (used to build the WHP reinforced model)."""

from __future__ import annotations

from dataclasses import dataclass

from obliviate.losses import token_nll
from obliviate.methods._common import labels_of


@dataclass
class FineTuneConfig:
    """Plain causal-LM fine-tuning has no settings beyond the training loop's."""


class FineTune:
    """Minimise the next-token NLL of the batch (the reinforced model of WHP, relearning attacks)."""

    unlearning = False  # trains on plain batches: `obliviate whp` (reinforce stage) and relearning attacks
    retain_text = "unused"
    frozen_reference = False
    search_coefficient = None
    summary = "plain fine-tuning on the given text (no unlearning-specific loss)"
    paper = None  # plain causal-LM fine-tuning comes from no one paper

    def __init__(self, config: FineTuneConfig | None = None):
        self.config = config or FineTuneConfig()

    def loss(self, model, batch):
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits  # (B, T, V)
        labels = labels_of(batch)  # (B, T): answer tokens only for question/answer examples
        loss = token_nll(logits, labels)
        return loss, {}
