"""Relearning attack: fine-tune a copy of the model on a little forget text, then re-run metrics.

Knowledge that was only hidden comes back after a few steps (Lynch et al. 2024, "Eight Methods to
Evaluate Robust Unlearning in LLMs", arXiv 2402.16835). The value is the mean of the re-run
metrics' values after the attack; the details give each one before and after.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from obliviate.errors import SkippedMetric
from obliviate.evaluation.data import Texts, read_texts
from obliviate.evaluation.result import MetricContext, MetricResult

__all__ = ["RelearningSpec", "compute_relearning"]


@dataclass
class RelearningSpec:
    name: str
    type: str = "relearning"
    group: str = "robustness"
    texts: Texts = field(default_factory=Texts)  # small slice of forget text to relearn on
    steps: int = 20
    learning_rate: float = 2e-5
    batch_size: int = 2
    context_length: int = 256
    metrics: list[str] = field(default_factory=list)  # names of this suite's metrics to re-run

    def check(self) -> list[tuple]:
        """Rules of the settings: ``(key, holds, rule)`` (obliviate.config convention)."""
        return [
            ("steps", self.steps >= 1, ">= 1"),
            ("learning_rate", self.learning_rate > 0, "> 0"),
            ("batch_size", self.batch_size >= 1, ">= 1"),
            ("context_length", self.context_length >= 2, ">= 2"),
        ]


def compute_relearning(model, tokenizer, spec: RelearningSpec, ctx: MetricContext) -> MetricResult:
    """Re-run ``spec.metrics`` on a copy of the model fine-tuned ``spec.steps`` steps on ``spec.texts``.

    Raises:
        SkippedMetric: none of the re-run metrics gave a value after the attack.
    """
    import copy

    from obliviate.corpus import make_blocks
    from obliviate.methods import FineTune
    from obliviate.train import TrainConfig, train

    before = {name: ctx.results[name].get("value") for name in spec.metrics if name in ctx.results}
    blocks = make_blocks(read_texts(spec.texts, ctx.data_dir), tokenizer, spec.context_length, heldout_fraction=0)
    attacked = copy.deepcopy(model)
    config = TrainConfig(max_steps=spec.steps, learning_rate=spec.learning_rate, batch_size=spec.batch_size)
    train(attacked, FineTune(), [{"input_ids": b} for b in blocks.train], config, pad_id=tokenizer.pad_token_id,
          desc=f"{spec.name} (relearning attack)")
    after = {name: ctx.compute(attacked, tokenizer, ctx.specs[name]).value for name in spec.metrics}
    del attacked
    came_back = {name: after[name] - before[name] for name in spec.metrics
                 if before.get(name) is not None and after[name] is not None}
    recovered = [value for value in after.values() if value is not None]
    if not recovered:
        raise SkippedMetric(f"none of {', '.join(spec.metrics)} could be computed after the relearning attack")
    return MetricResult(value=sum(recovered) / len(recovered), higher_is_better=False, n=len(recovered),
                        settings=asdict(spec), details={"before": before, "after": after, "came_back": came_back})
