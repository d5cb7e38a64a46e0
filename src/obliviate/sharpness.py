"""Sharpness-aware unlearning (Fan et al. 2025, arXiv 2502.05374): one micro-batch's backward at the
worst-case weight perturbation of the forget term, for any method (``train.sam_rho`` > 0).

The paper's objective (its eq. 4-5, after SAM, Foret et al. 2021):

    min_w  max_{||d|| <= rho}  l_f(w + d)  +  l_r(w),      first-order  d* = rho * grad l_f(w) / ||grad l_f(w)||

so the adversary is a small relearning step on the forget term, and unlearning minimises the forget term
*there*. A method that can split its loss exposes ``forget_term(model, batch) -> (loss, logs)`` (the
weighted forget part) and, where it has one, ``retain_term(model, batch) -> (loss, logs)`` (the rest, or the
number 0.0 when there is none), with ``loss == forget_term + retain_term``; the retain term is then taken at ``w`` as in the paper. A method
without ``forget_term`` gets the whole loss perturbed (plain SAM on its objective).

Cost per micro-batch: the plain step plus one forward/backward of the forget term (of the whole loss for a
method without ``forget_term``), and one copy of the trainable weights to restore them exactly.
"""

from __future__ import annotations

import torch

from obliviate.errors import ConfigError


def _refusal(setting: str, plan: str) -> ConfigError:
    return ConfigError(f"{setting} (sharpness-aware unlearning) does not work under {plan}: it moves the whole "
                       f"weights in place between two backward passes; set {setting}=0, or launch with DDP or one "
                       "process")


def check_sharpness_aware(accelerator) -> None:
    """Refuse a sharded or DeepSpeed-owned model before any step (the training loop's own check).

    The perturbation moves the full trainable weights in place and restores them before the optimizer
    step; under FSDP each process holds only a shard (and the gradient norm would need every shard), and
    DeepSpeed owns the backward and the gradient buffers.

    Raises:
        ConfigError: naming the setting to turn off.
    """
    from accelerate.utils import DistributedType

    if accelerator.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED):
        raise _refusal("train.sam_rho", accelerator.distributed_type.value)


def check_sam_launch(setting: str, rho: float) -> None:
    """The same refusal from the launcher's environment, for a run to give before any work.

    Raises:
        ConfigError: ``setting`` (e.g. ``undo.train.sam_rho``) is on under an FSDP or DeepSpeed launch.
    """
    import os

    for plan in ("FSDP", "DEEPSPEED"):
        if rho and os.environ.get(f"ACCELERATE_USE_{plan}", "false").lower() == "true":
            raise _refusal(setting, plan)


def split_terms(method):
    """``(forget_fn, retain_fn)``: the method's forget and retain terms, or ``(method.loss, None)``
    for a method whose loss has no separate forget term (SAM then perturbs the whole loss)."""
    forget = getattr(method, "forget_term", None)
    if forget is None:
        return method.loss, None
    return forget, getattr(method, "retain_term", None)


def sharpness_aware_backward(accelerator, model, method, batch: dict, params: list, rho: float,
                             check=None) -> tuple[torch.Tensor, dict]:
    """Accumulate into ``.grad`` the gradient of ``l_f(w + d*) + l_r(w)`` for one micro-batch.

    Args:
        accelerator: the training loop's Accelerator (its ``backward`` scales for accumulation and fp16).
        model: the prepared model; the direction pass runs on the unwrapped module, so that under DDP the
            only synchronised backward is the last one (the retain gradient is accumulated locally first,
            as in a ``no_sync`` micro-batch).
        method: the unlearning method (see the module docstring for its terms).
        batch: one collated micro-batch.
        params: the trainable parameters (LoRA adapters with LoRA): only they are perturbed.
        rho: the perturbation radius (L2 norm over ``params``), > 0.
        check: called on the loss at ``w`` before any backward (the loop's NaN check).

    Returns:
        ``(loss at w, logs at w)``, as ``method.loss`` would report them.
    """
    forget_fn, retain_fn = split_terms(method)
    plain = accelerator.unwrap_model(model)
    forget, logs = forget_fn(plain, batch)
    retain, retain_logs = retain_fn(plain, batch) if retain_fn else (None, {})
    loss = forget + retain if retain is not None else forget
    if check:
        check(loss)
    logs = {**logs, **retain_logs}
    # the ascent direction of the forget term at w; autograd.grad leaves .grad (accumulating) untouched
    grads = torch.autograd.grad(forget, params, allow_unused=True)
    del forget
    if torch.is_tensor(retain) and retain.requires_grad:  # a method may return 0.0 for "no retain term"
        accelerator.backward(retain)
    norm = torch.sqrt(sum(g.detach().float().pow(2).sum() for g in grads if g is not None)) \
        if any(g is not None for g in grads) else torch.zeros(())
    saved = [p.detach().clone() for p in params]
    try:
        if torch.isfinite(norm) and norm > 0:
            scale = rho / float(norm)
            with torch.no_grad():
                for p, g in zip(params, grads):
                    if g is not None:
                        p.add_(g.to(p.dtype), alpha=scale)  # d* = rho * g / ||g||
        del grads
        perturbed, _ = forget_fn(model, batch)
        accelerator.backward(perturbed)
    finally:
        with torch.no_grad():  # exact restore (w + d - d may differ from w in the last bit)
            for p, original in zip(params, saved):
                p.copy_(original)
    return loss.detach(), logs
