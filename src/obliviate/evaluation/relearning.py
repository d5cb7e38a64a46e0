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

__all__ = ["RelearningSpec", "relearn", "compute_relearning"]


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


def relearn(model, tokenizer, texts: list[str], *, steps: int, learning_rate: float, batch_size: int = 2,
            context_length: int = 256, on_step=None, desc: str = "relearning attack", seed: int = 0,
            schedule: str = "linear"):
    """Fine-tune ``model`` in place on ``texts`` for ``steps`` optimizer steps (the relearning attack).

    Args:
        model: the model to attack (a copy: it is trained in place).
        tokenizer: its tokenizer.
        texts: the attack's text, cut into blocks of ``context_length`` tokens.
        steps: optimizer steps (AdamW).
        learning_rate: AdamW peak learning rate.
        batch_size: blocks per step.
        context_length: tokens per block.
        on_step: ``on_step(step)`` called after each optimizer step (e.g. to evaluate checkpoints).
        desc: progress-bar label.
        seed: data order.
        schedule: "linear" (decay to 0 over ``steps``, the relearning metric's) or "constant" (step s is
            the same model whatever ``steps`` is: checkpoints of one run stand for shorter runs).

    Returns:
        The training loop's ``TrainResult``.
    """
    from obliviate.corpus import make_blocks
    from obliviate.methods import FineTune
    from obliviate.train import TrainConfig, train

    blocks = make_blocks(texts, tokenizer, context_length, heldout_fraction=0)
    method = FineTune()
    if on_step is not None:
        method.on_step = on_step  # the loop's per-step hook (obliviate.train.train)
    config = TrainConfig(max_steps=steps, learning_rate=learning_rate, batch_size=batch_size, seed=seed,
                         schedule=schedule)
    return train(model, method, [{"input_ids": b} for b in blocks.train], config, pad_id=tokenizer.pad_token_id,
                 desc=desc)


def compute_relearning(model, tokenizer, spec: RelearningSpec, ctx: MetricContext) -> MetricResult:
    """Re-run ``spec.metrics`` on a copy of the model fine-tuned ``spec.steps`` steps on ``spec.texts``.

    Raises:
        SkippedMetric: none of the re-run metrics gave a value after the attack.
    """
    import copy

    before = {name: ctx.results[name].get("value") for name in spec.metrics if name in ctx.results}
    attacked = copy.deepcopy(model)
    relearn(attacked, tokenizer, read_texts(spec.texts, ctx.data_dir), steps=spec.steps,
            learning_rate=spec.learning_rate, batch_size=spec.batch_size, context_length=spec.context_length,
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
