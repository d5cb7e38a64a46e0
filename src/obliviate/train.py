"""The one training loop, shared by every method (run under Hugging Face Accelerate).

A method supplies ``loss(model, batch) -> (loss, logs)`` (and optionally ``collate``, default
:func:`pad_collate`, and ``trainable_parameters``, default those that require grad); this loop owns the optimizer, schedule, accumulation, clipping,
held-out evaluation, logging, progress bar, checkpoints and resume.

Under ``accelerate launch`` with N processes the loader is sharded: each process takes every N-th
micro-batch, so one optimizer step sees ``batch_size x grad_accum x N`` examples (the global
batch) and an epoch has N times fewer steps. The schedule is computed from the sharded loader and
stepped once per optimizer step, so ``epochs``, ``max_steps`` and the learning-rate curve mean the
same for any N; the logged loss, method logs, token counts and held-out loss are averaged or
summed over the processes. N processes at ``batch_size`` b match one process at ``batch_size`` b
and ``grad_accum`` N times larger (the same examples per step, each micro-batch's mean loss
averaged), up to float rounding.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from obliviate.config import ADDED_SETTING
from obliviate.errors import ConfigError, TrainingError
from obliviate.losses import IGNORE_INDEX
from obliviate.progress import token_bar
from obliviate.sharpness import check_sharpness_aware, sharpness_aware_backward


MIXED_PRECISION = ("no", "bf16", "fp16")
SCHEDULES = ("linear", "constant")  # learning-rate schedules after warm-up
# Experiment trackers Hugging Face Accelerate reports to (its LoggerType, "all" left out) -> the module each needs.
TRACKERS = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow", "comet_ml": "comet_ml", "aim": "aim",
            "clearml": "clearml", "dvclive": "dvclive", "swanlab": "swanlab", "trackio": "trackio"}


@dataclass
class TrainConfig:
    """Optimisation settings of one training stage."""

    epochs: float = 1.0  # passes over the training examples (fractions allowed)
    max_steps: int = 0  # optimizer steps; 0 = derived from epochs
    learning_rate: float = 1e-5  # AdamW peak learning rate
    batch_size: int = 4  # examples per micro-batch, per process
    grad_accum: int = 1  # micro-batches per optimizer step (global batch: batch_size x grad_accum x processes)
    warmup_ratio: float = 0.0  # share of steps with linear warm-up
    weight_decay: float = 0.0  # AdamW weight decay
    max_grad_norm: float = 1.0  # gradient clipping (0 = off)
    eval_every: int = 0  # held-out loss every N optimizer steps (0 = at the end only)
    checkpoint_every: int = 0  # save a resumable checkpoint every N optimizer steps (0 = never)
    seed: int = 0  # data order and initialisation of anything random
    mixed_precision: str = "no"  # "no", "bf16" or "fp16" (GPUs); keep "no" on CPU
    # experiment trackers each logged step goes to, e.g. ["tensorboard"] (any of TRACKERS; empty = none);
    # logs go under the run folder's trackers/ (a setting that never makes a run a different run)
    report_to: list[str] = field(default_factory=list)
    # sharpness-aware unlearning (Fan et al. 2025): each step's forget term is taken at the worst-case weight
    # perturbation of this L2 radius (one extra forward/backward of the forget term per micro-batch; 0 = off);
    # see obliviate.sharpness
    sam_rho: float = field(default=0.0, metadata=ADDED_SETTING)
    # learning-rate schedule after warm-up: "linear" decays to 0 at the last step; "constant" keeps the peak,
    # so step s of a run is the same model whatever the run's length (the relearning attack's checkpoints)
    schedule: str = field(default="linear", metadata=ADDED_SETTING)

    def check(self) -> list[tuple[str, bool, str]]:
        """Range rules (see :func:`obliviate.config.validate`)."""
        return [("epochs", self.epochs > 0, "> 0"), ("max_steps", self.max_steps >= 0, ">= 0"),
                ("learning_rate", self.learning_rate > 0, "> 0"), ("batch_size", self.batch_size >= 1, ">= 1"),
                ("grad_accum", self.grad_accum >= 1, ">= 1"),
                ("warmup_ratio", 0 <= self.warmup_ratio <= 1, "in [0, 1]"),
                ("weight_decay", self.weight_decay >= 0, ">= 0"),
                # a negative clipping norm would flip the gradient: fine-tuning would become ascent
                ("max_grad_norm", self.max_grad_norm >= 0, ">= 0 (0 = no clipping)"),
                ("eval_every", self.eval_every >= 0, ">= 0"), ("checkpoint_every", self.checkpoint_every >= 0, ">= 0"),
                ("mixed_precision", self.mixed_precision in MIXED_PRECISION, f"one of {', '.join(MIXED_PRECISION)}"),
                ("report_to", all(name in TRACKERS for name in self.report_to),
                 f"a list of trackers among {', '.join(TRACKERS)} (empty: none)"),
                ("sam_rho", self.sam_rho >= 0, ">= 0 (0 = no sharpness-aware step)"),
                ("schedule", self.schedule in SCHEDULES, f"one of {', '.join(SCHEDULES)}")]


def check_trackers(names) -> None:
    """Refuse, before any training, a tracker whose package is not installed.

    Raises:
        ConfigError: naming the tracker and the package to install.
    """
    import importlib.util

    for name in names:
        module = TRACKERS[name]
        found = importlib.util.find_spec(module) is not None
        if name == "tensorboard":  # Accelerate writes through torch's SummaryWriter or tensorboardX
            found = found or importlib.util.find_spec("tensorboardX") is not None
        if not found:
            raise ConfigError(f"report_to '{name}' needs the package '{module.replace('_', '-')}': install it with "
                              f"`pip install {module.replace('_', '-')}`, or leave '{name}' out of --report-to")


def pair_with_retain(forget: list[dict], retain: list[dict] | None) -> list[dict]:
    """Examples ``{"forget": f}`` or, with retain examples, ``{"forget": f, "retain": r}``: one per forget
    example, the retain examples cycled (``retain[i % len(retain)]``)."""
    if not retain:
        return [{"forget": f} for f in forget]
    return [{"forget": f, "retain": retain[i % len(retain)]} for i, f in enumerate(forget)]


def pad_collate(examples: list[dict], pad_id: int) -> dict:
    """Right-pad ``input_ids`` (and any other per-token fields) into a batch.

    ``input_ids`` pad with ``pad_id``; ``labels`` with IGNORE_INDEX; other 1-D/2-D tensors with 0.
    An ``attention_mask`` is added. A field holding a dict is a part of its own (e.g. the
    ``"forget"`` and ``"retain"`` texts of an unlearning pair) and is batched the same way, so
    ``{"forget": {"input_ids": ...}}`` examples give ``{"forget": {"input_ids", "attention_mask"}}``.
    """
    batch: dict = {}
    for key in examples[0]:
        if isinstance(examples[0][key], dict):
            batch[key] = pad_collate([e[key] for e in examples], pad_id)
            continue
        if key == "input_ids":
            continue
        values = [torch.as_tensor(e[key]) for e in examples]
        if values[0].dim() == 0:
            batch[key] = torch.stack(values)
            continue
        fill = IGNORE_INDEX if key == "labels" else 0
        batch[key] = _pad(values, fill)
    if "input_ids" in examples[0]:
        batch["input_ids"] = _pad([torch.as_tensor(e["input_ids"]) for e in examples], pad_id)
        mask = torch.zeros(len(examples), batch["input_ids"].shape[1], dtype=torch.long)
        for i, e in enumerate(examples):
            mask[i, : len(e["input_ids"])] = 1
        batch["attention_mask"] = mask
    return batch


def _pad(values: list[torch.Tensor], fill) -> torch.Tensor:
    """Stack 1-D (or (T, ...)) tensors of unequal length, right-padded with ``fill``: (B, T_max, ...)."""
    length = max(len(v) for v in values)
    out = torch.full((len(values), length, *values[0].shape[1:]), fill, dtype=values[0].dtype)
    for i, v in enumerate(values):
        out[i, : len(v)] = v
    return out


class EpochShuffleSampler(torch.utils.data.Sampler):
    """A seeded permutation per epoch (deterministic, so a resumed run sees the same order)."""

    def __init__(self, n: int, seed: int):
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        order = list(range(self.n))
        random.Random(self.seed * 100_003 + self.epoch).shuffle(order)
        return iter(order)

    def __len__(self) -> int:
        return self.n


@dataclass
class TrainResult:
    steps: int
    seconds: float
    tokens: int
    tokens_per_s: float
    heldout_loss: float | None
    history: list[dict] = field(default_factory=list)
    resumed_seconds: float = 0.0  # training time of earlier attempts, up to the checkpoint resumed from
    full_state: dict | None = None  # the gathered weights of a sharded (FSDP, ZeRO-3) model, for saving


def _batch_tokens(batch: dict) -> int:
    """Real (unpadded) tokens in a batch; nested batches (e.g. forget/retain) are summed."""
    total = 0
    for key, value in batch.items():
        if isinstance(value, dict):
            total += _batch_tokens(value)
        elif key.endswith("attention_mask"):
            total += int(value.sum())
    return total


def example_tokens(example: dict) -> int:
    """Tokens in one example: every ``*input_ids`` field, nested dicts included."""
    total = 0
    for key, value in example.items():
        if isinstance(value, dict):
            total += example_tokens(value)
        elif key.endswith("input_ids"):
            total += len(value)
    return total


def train(model, method, train_examples: list[dict], config: TrainConfig, *, heldout_examples=None,
          pad_id: int = 0, log=None, checkpoint_dir=None, desc: str = "training", tracker_dir=None) -> TrainResult:
    """Train ``model`` in place with ``method``'s loss.

    Args:
        model: an HF causal LM (fp32 on CPU).
        method: an object with ``loss(model, batch) -> (loss, logs)``; optional ``collate(examples)``,
            ``trainable_parameters(model)`` and ``on_step(step)``.
        train_examples: examples (dicts of token lists/tensors, or of such dicts: forget/retain
            pairs) the method's collate understands.
        config: optimisation settings.
        heldout_examples: examples for the held-out loss (no gradient).
        pad_id: padding token id for the default collate.
        log: callable taking one dict per logged step (e.g. ``RunFolder.log``).
        checkpoint_dir: folder for resumable checkpoints; a checkpoint found there is resumed.
        desc: progress-bar label, and the project name of the experiment trackers.
        tracker_dir: folder for the logs of ``config.report_to``'s trackers (default ``./trackers``).

    Returns:
        A :class:`TrainResult`.

    Raises:
        TrainingError: the loss became NaN or infinite.
        ConfigError: a tracker of ``config.report_to`` is not installed.
    """
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from transformers import get_constant_schedule_with_warmup, get_linear_schedule_with_warmup

    from obliviate.runs import distributed_state, use_cpu

    if not train_examples:
        raise TrainingError(f"{desc}: no training examples: give a larger corpus")
    check_trackers(config.report_to)
    set_seed(config.seed)
    distributed_state()  # the process group, with the CPU flag and timeout the Accelerator must share
    trackers = {"log_with": config.report_to, "project_dir": str(tracker_dir or "trackers")} if config.report_to else {}
    # the scheduler is stepped by this loop once per optimizer step (not N times, as accelerate
    # does for a schedule computed over the unsharded loader);
    # mixed_precision "no" leaves the launcher's choice (an accelerate config file's bf16) in force
    accelerator = Accelerator(gradient_accumulation_steps=config.grad_accum, cpu=use_cpu(),
                              mixed_precision=None if config.mixed_precision == "no" else config.mixed_precision,
                              step_scheduler_with_optimizer=False, **trackers)
    processes = accelerator.num_processes
    if config.report_to:  # hyperparameters as scalars or text (TensorBoard's hparams take no lists)
        hyperparameters = {k: v if isinstance(v, (int, float, str, bool)) else str(v)
                           for k, v in dataclasses.asdict(config).items()}
        accelerator.init_trackers(project_name=desc, config=hyperparameters)
    run_log = log or (lambda record: None)

    def log(record: dict) -> None:  # the run's log, and each numeric value to the trackers
        run_log(record)
        if config.report_to and "event" not in record and isinstance(record.get("step"), int):
            accelerator.log({k: v for k, v in record.items() if isinstance(v, (int, float)) and k != "step"},
                            step=record["step"])

    collate = getattr(method, "collate", None) or (lambda ex: pad_collate(ex, pad_id))
    loader = torch.utils.data.DataLoader(train_examples, batch_size=config.batch_size, collate_fn=collate,
                                         sampler=EpochShuffleSampler(len(train_examples), config.seed))
    params_fn = getattr(method, "trainable_parameters", None)
    params = list(params_fn(model)) if params_fn else [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise TrainingError(f"{desc}: the method selected no trainable parameter")
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)
    if config.sam_rho:
        check_sharpness_aware(accelerator)
    model.train()
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    if getattr(method, "reference", None) is not None:  # the frozen original of NPO, KL, the RMU family
        method.reference = place_reference(accelerator, method.reference)
    # the schedule counts optimizer steps of the sharded loader: each process sees len(loader)
    # micro-batches per epoch, and one optimizer step takes batch_size x grad_accum x processes examples
    steps_per_epoch = max(1, math.ceil(len(loader) / config.grad_accum))
    total_steps = config.max_steps or max(1, math.ceil(steps_per_epoch * config.epochs))
    warmup = int(config.warmup_ratio * total_steps)
    schedule = (get_constant_schedule_with_warmup(optimizer, warmup) if config.schedule == "constant"
                else get_linear_schedule_with_warmup(optimizer, warmup, total_steps))
    scheduler = accelerator.prepare(schedule)
    heldout_loader = None
    if heldout_examples:
        heldout_loader = accelerator.prepare(torch.utils.data.DataLoader(
            heldout_examples, batch_size=config.batch_size, collate_fn=collate))

    step, epoch, skip = 0, 0, 0
    tokens_before, seconds_before = 0, 0.0
    ckpt = Path(checkpoint_dir) if checkpoint_dir else None
    if ckpt and (ckpt / "progress.json").exists():
        progress = json.loads((ckpt / "progress.json").read_text())
        saved_by = progress.get("processes", 1)
        if saved_by != processes:
            raise TrainingError(f"{desc}: the checkpoint in {ckpt} was written by {saved_by} process(es), this run "
                                f"has {processes}: launch {saved_by} process(es) to resume it, or delete {ckpt} to "
                                "start the stage afresh")
        accelerator.load_state(str(ckpt / "state"))
        step, epoch, skip = progress["step"], progress["epoch"], progress["batch_in_epoch"]
        tokens_before, seconds_before = progress.get("tokens", 0), progress.get("seconds", 0.0)
        log({"event": "resumed", "stage": desc, "step": step})

    # the bar (main process only) counts every process's tokens: this one's times the processes
    tokens_per_step = sum(example_tokens(e) for e in train_examples) / (steps_per_epoch * processes)  # an average
    total_tokens = round(tokens_per_step * processes * total_steps)
    bar = token_bar(total_tokens, desc) if accelerator.is_main_process else token_bar(total_tokens, desc, disable=True)
    bar.update(round(tokens_per_step * processes * step))
    history: list[dict] = []
    start, tokens, heldout = time.perf_counter(), 0, None
    running: list[torch.Tensor] = []
    while step < total_steps:
        loader.set_epoch(epoch)
        batches = accelerator.skip_first_batches(loader, skip) if skip else loader
        for batch_index, batch in enumerate(batches, start=skip):
            with accelerator.accumulate(model):
                if config.sam_rho:  # backward taken inside, at the perturbed weights (restored before the step)
                    loss, logs = sharpness_aware_backward(accelerator, model, method, batch, params, config.sam_rho,
                                                          check=lambda value: _check_finite(accelerator, value, desc,
                                                                                            step, bar))
                else:
                    loss, logs = method.loss(model, batch)
                    _check_finite(accelerator, loss, desc, step, bar)
                    accelerator.backward(loss)
                if accelerator.sync_gradients and config.max_grad_norm:
                    accelerator.clip_grad_norm_(params, config.max_grad_norm)
                optimizer.step()
                if accelerator.sync_gradients:
                    scheduler.step()
                optimizer.zero_grad()
            n_tokens = _batch_tokens(batch)
            tokens += n_tokens
            bar.update(n_tokens * processes)
            running.append(loss.detach().float())
            if not accelerator.sync_gradients:
                continue
            step += 1
            # the estimate was an average over blocks of unequal length: re-aim it so the bar ends at 100%
            bar.total = bar.n + round(tokens_per_step * processes * (total_steps - step))
            if hasattr(method, "on_step"):
                method.on_step(step)
            # the step's loss and logs averaged over its micro-batches and processes (one collective)
            values = torch.stack([torch.stack(running).mean(),
                                  *(torch.as_tensor(v, dtype=torch.float32, device=running[0].device).detach().reshape(())
                                    for v in logs.values())]).to(accelerator.device)
            values = accelerator.reduce(values, reduction="mean") if processes > 1 else values
            record = {"stage": desc, "step": step, "epoch": epoch, "loss": float(values[0]),
                      "lr": scheduler.get_last_lr()[0],
                      **{k: float(v) for k, v in zip(logs, values[1:].tolist())}}
            running = []
            if heldout_loader is not None and config.eval_every and step % config.eval_every == 0:
                record["heldout_loss"] = heldout = _heldout_loss(accelerator, model, method, heldout_loader)
            bar.set_postfix(loss=f"{record['loss']:.3f}")
            history.append(record)
            log(record)
            if ckpt and config.checkpoint_every and step % config.checkpoint_every == 0 and step < total_steps:
                _save_checkpoint(accelerator, ckpt, {"step": step, "epoch": epoch, "batch_in_epoch": batch_index + 1,
                                                     "tokens": tokens_before + _sum(accelerator, tokens),
                                                     "seconds": seconds_before + time.perf_counter() - start,
                                                     "processes": processes})
            if step >= total_steps:
                break
        else:
            epoch, skip = epoch + 1, 0
            continue
        break
    bar.close()
    if heldout_loader is not None:
        heldout = _heldout_loss(accelerator, model, method, heldout_loader)
        log({"stage": desc, "step": step, "heldout_loss": heldout})
        if history:
            history[-1]["heldout_loss"] = heldout
    seconds = time.perf_counter() - start + seconds_before
    tokens = _sum(accelerator, tokens) + tokens_before
    # a sharded model (FSDP, ZeRO-3) is gathered into one full state dict, by every process together
    full_state = accelerator.get_state_dict(model) if _is_sharded(accelerator) else None
    model = accelerator.unwrap_model(model)
    model.eval()
    accelerator.wait_for_everyone()
    if ckpt and accelerator.is_main_process:
        shutil.rmtree(ckpt, ignore_errors=True)
    accelerator.wait_for_everyone()
    _finish_trackers(accelerator)
    accelerator.free_memory()
    return TrainResult(steps=step, seconds=seconds, tokens=tokens, tokens_per_s=tokens / max(seconds, 1e-9),
                       heldout_loss=heldout, history=history, resumed_seconds=seconds_before, full_state=full_state)


def _finish_trackers(accelerator) -> None:
    """Close the trackers (flush their logs). Not ``accelerator.end_training()``: it also destroys the
    process group, which the next stage of a multi-process run still needs."""
    for tracker in accelerator.trackers:
        tracker.finish()


def _is_sharded(accelerator) -> bool:
    """Whether the prepared model's parameters are sharded across processes (FSDP, DeepSpeed ZeRO-3)."""
    from accelerate.utils import DistributedType

    if accelerator.distributed_type == DistributedType.FSDP:
        return True
    if accelerator.distributed_type == DistributedType.DEEPSPEED:
        return accelerator.deepspeed_config["zero_optimization"]["stage"] == 3
    return False


def place_reference(accelerator, reference):
    """Place a method's frozen reference model for ``accelerator``'s plan, as the trained model was placed.

    - FSDP2: sharded by accelerate's own ``fsdp2_prepare_model``, the function ``accelerator.prepare``
      shards the trained model with (the plugin's auto-wrap policy, mesh, mixed precision, offload);
    - FSDP1: wrapped in ``FullyShardedDataParallel`` with the plugin's settings, as accelerate's
      ``prepare_model`` wraps the trained model (no optimizer; no ``param_init_fn``: the copy is whole on
      every process, obliviate loading the model on each);
    - DeepSpeed ZeRO-3: an inference engine with the training's ZeRO-3 config, as huggingface/trl's
      ``prepare_deepspeed`` does for its reference models;
    - otherwise (one process, DDP, ZeRO-1/2): moved whole to the accelerator's device.

    Every process must call it (sharding is collective). Returns the reference, in eval mode with no
    parameter requiring grad; its forward is called as the plain model's.
    """
    from accelerate.utils import DistributedType

    reference.eval()
    for p in reference.parameters():
        p.requires_grad_(False)
    if accelerator.distributed_type == DistributedType.FSDP and accelerator.is_fsdp2:
        from accelerate.utils.fsdp_utils import fsdp2_prepare_model

        reference = fsdp2_prepare_model(accelerator, reference)
    elif accelerator.distributed_type == DistributedType.FSDP:
        from torch.distributed.fsdp import FullyShardedDataParallel

        plugin = accelerator.state.fsdp_plugin
        plugin.set_auto_wrap_policy(reference)
        reference = FullyShardedDataParallel(
            reference, sharding_strategy=plugin.sharding_strategy or plugin.reshard_after_forward,
            cpu_offload=plugin.cpu_offload, auto_wrap_policy=plugin.auto_wrap_policy,
            mixed_precision=plugin.mixed_precision_policy, sync_module_states=plugin.sync_module_states,
            backward_prefetch=plugin.backward_prefetch, forward_prefetch=plugin.forward_prefetch,
            use_orig_params=plugin.use_orig_params, limit_all_gathers=plugin.limit_all_gathers,
            device_id=accelerator.device)
    elif _is_sharded(accelerator):  # DeepSpeed ZeRO-3
        import copy

        import deepspeed

        ds_config = copy.deepcopy(accelerator.state.deepspeed_plugin.deepspeed_config)
        ds_config.pop("optimizer", None)
        ds_config.pop("scheduler", None)
        hidden = getattr(getattr(reference, "config", None), "hidden_size", None)
        if hidden:  # trl's bucket sizes for a model that is only run forward
            ds_config["zero_optimization"].update(reduce_bucket_size=hidden * hidden,
                                                  stage3_param_persistence_threshold=10 * hidden,
                                                  stage3_prefetch_bucket_size=int(0.9 * hidden * hidden))
        reference, *_ = deepspeed.initialize(model=reference, config=ds_config)
    else:
        reference = reference.to(accelerator.device)
    reference.eval()
    return reference


def _sum(accelerator, count: int) -> int:
    """A per-process count summed over the processes."""
    if accelerator.num_processes == 1:
        return count
    return int(accelerator.reduce(torch.tensor(count, device=accelerator.device), reduction="sum"))


def _check_finite(accelerator, loss, desc: str, step: int, bar) -> None:
    """Stop every process together when the loss of any of them is NaN or infinite."""
    bad = ~torch.isfinite(loss.detach())
    if accelerator.num_processes > 1:
        bad = accelerator.reduce(bad.float().reshape(1), reduction="sum") > 0
    if bool(bad):
        bar.close()
        _finish_trackers(accelerator)
        raise TrainingError(f"{desc}: the loss became {loss.item()} at step {step + 1}: "
                            "lower the learning rate (or the method's weights) and run again")


def _heldout_loss(accelerator, model, method, loader) -> float:
    """Mean loss over the held-out examples, each weighted by its batch's loss; every process takes
    its share of the batches and the losses are gathered (padding duplicates dropped)."""
    was_training = model.training
    model.eval()
    losses = []
    with torch.no_grad():
        for batch in loader:
            loss, _ = method.loss(model, batch)
            size = len(next(iter(_leaves(batch))))
            losses.append(accelerator.gather_for_metrics(loss.detach().float().reshape(1).expand(size)))
    model.train(was_training)
    values = torch.cat(losses) if losses else torch.zeros(0)
    return float(values.mean()) if len(values) else 0.0


def _leaves(batch: dict):
    """The tensors of a (nested) batch, each with the batch dimension first."""
    for value in batch.values():
        if isinstance(value, dict):
            yield from _leaves(value)
        elif isinstance(value, torch.Tensor):
            yield value


def _save_checkpoint(accelerator, ckpt: Path, progress: dict) -> None:
    """Save a resumable checkpoint; the previous one is replaced only once the new one is complete.

    ``progress``: step, epoch, batch_in_epoch, and the tokens and training seconds so far (so a
    resumed stage reports the whole stage's counts).
    """
    tmp = ckpt.with_name(ckpt.name + ".tmp")
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp / "state"), safe_serialization=True)  # every process writes its part
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (tmp / "progress.json").write_text(json.dumps(progress))
        shutil.rmtree(ckpt, ignore_errors=True)
        tmp.rename(ckpt)
    accelerator.wait_for_everyone()
