"""UNDO, Unlearn-Noise-Distill-on-Outputs (Lee et al. 2025, "Distillation Robustifies Unlearning", arXiv 2506.06278).

After any unlearning method, a copy of the unlearned weights is damaged by shrink-and-perturb,
``w <- (1 - alpha) w + alpha * beta * n`` with ``n`` a fresh initialisation of the architecture, and the
unlearned model (the teacher) is distilled into it on retain and general text: the student learns the
teacher's outputs, and what the damaged weights no longer hold is not taught back. ``alpha`` trades
compute (more distillation to recover) for robustness (less of the old weights left).

Run by ``obliviate unlearn`` as its ``undo`` stage (``--set undo.enabled=true``, settings in
:class:`UndoConfig`); :class:`UndoDistill` is the distillation loss on the shared training loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from obliviate.errors import ConfigError
from obliviate.losses import distillation_kl
from obliviate.methods._common import Paper, check_setting
from obliviate.train import TrainConfig

UNDO_PAPER = Paper("Distillation Robustifies Unlearning", "Lee et al.", 2025, "2506.06278")


def _undo_train_default() -> TrainConfig:
    # distillation repairs damaged weights: a higher rate and more steps than unlearning
    return TrainConfig(epochs=1.0, learning_rate=1e-4)


@dataclass
class UndoConfig:
    """The ``undo`` section of an unlearning run (off by default: the run is then what it always was)."""

    enabled: bool = False  # after the unlearn stage, damage a copy of the unlearned model and distil into it
    alpha: float = 0.5  # shrink share in w <- (1 - alpha) w + alpha * beta * noise; 0 = plain self-distillation
    noise_scale: float = 1.0  # beta: the noise is a fresh initialisation of the architecture times beta
    seed: int = 0  # seeds the noise
    temperature: float = 1.0  # of the distillation KL (both distributions)
    # general text distilled on besides the retain text (same kinds of sources as --retain); never forget text
    general: list[str] = field(default_factory=list)
    train: TrainConfig = field(default_factory=_undo_train_default)  # the distillation's optimisation

    def __post_init__(self):
        check_setting("undo.alpha", self.alpha, minimum=0)
        if self.alpha > 1:
            raise ConfigError(f"undo.alpha must be in [0, 1], not {self.alpha!r}: it is the share of noise in the "
                              "student's weights")
        check_setting("undo.noise_scale", self.noise_scale, minimum=0)
        check_setting("undo.temperature", self.temperature, above=0)


def shrink_and_perturb(weights: dict[str, torch.Tensor], noise: dict[str, torch.Tensor], alpha: float,
                       scale: float = 1.0) -> dict[str, torch.Tensor]:
    """``(1 - alpha) * w + alpha * scale * n`` for every tensor (new tensors; the inputs are left as they are).

    Args:
        weights: ``{name: tensor}`` of the unlearned model.
        noise: ``{name: tensor}`` of the same names and shapes: a fresh initialisation of the architecture.
        alpha: share of noise, in [0, 1].
        scale: beta, the noise's scale relative to the initialisation.
    """
    # UNDO (Lee et al. 2025, arXiv 2506.06278) §4: theta <- (1 - alpha) theta + alpha beta N, N ~ init;
    # shrink-and-perturb after Ash & Adams 2020
    missing = sorted(set(weights) ^ set(noise))
    if missing:
        raise ValueError(f"weights and noise differ in '{missing[0]}'")
    return {name: (1 - alpha) * w + (alpha * scale) * noise[name].to(w.dtype) for name, w in weights.items()}


def init_noise(model, seed: int) -> dict[str, torch.Tensor]:
    """A fresh initialisation of ``model``'s architecture (its own ``_init_weights``), ``{name: tensor}``."""
    from transformers import AutoModelForCausalLM

    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        fresh = AutoModelForCausalLM.from_config(model.config, torch_dtype=next(model.parameters()).dtype)
    finally:
        torch.random.set_rng_state(generator_state)
    return {name: p.detach() for name, p in fresh.named_parameters()}


def damage(model, config: UndoConfig) -> None:
    """Shrink-and-perturb ``model``'s parameters in place (the student's starting point)."""
    params = dict(model.named_parameters())
    noise = {name: t.to(params[name].device) for name, t in init_noise(model, config.seed).items() if name in params}
    damaged = shrink_and_perturb({n: p.detach() for n, p in params.items()}, noise, config.alpha, config.noise_scale)
    with torch.no_grad():
        for name, p in params.items():
            p.copy_(damaged[name])


class UndoDistill:
    """Minimise ``KL(teacher || student)`` of next-token distributions on retain and general text; the teacher is
    the unlearned model, the student its shrink-and-perturbed copy (the ``undo`` stage of ``obliviate unlearn``).
    """

    unlearning = False  # the second stage of an unlearning run (undo.enabled), on plain text batches
    retain_text = "unused"
    frozen_reference = True  # the teacher, as `reference`, placed by the training loop
    search_coefficient = None
    summary = ("UNDO: the unlearned model distilled into a shrink-and-perturbed copy of itself on retain and "
               "general text, so that what unlearning only hid is not carried over")
    paper = UNDO_PAPER

    def __init__(self, config: UndoConfig | None = None):
        self.config = config or UndoConfig()
        self.reference = None  # the teacher

    def loss(self, model, batch):
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                       use_cache=False).logits  # (B, T, V)
        with torch.no_grad():
            teacher = self.reference(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                     use_cache=False).logits
        loss = distillation_kl(logits, teacher, batch["attention_mask"], self.config.temperature)
        return loss, {"distill_kl": loss.detach()}
