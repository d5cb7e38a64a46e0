"""Generic unlearning over a run folder: any registered method on forget (and retain) text.

Two stages, each skipped when already complete:

1. unlearn: pair forget blocks with retain blocks, train with the method (optionally through
   LoRA) and write ``model/`` atomically;
2. undo (only with ``undo.enabled``): UNDO, the unlearned model (then written to ``teacher/``)
   distilled into a shrink-and-perturbed copy of itself on retain and general text, written to
   ``model/`` (:mod:`obliviate.methods.undo`);
3. eval: the quick before/after evaluation of the base and unlearned models (``metrics.json``).

A run without UNDO has exactly the stages, files and stage inputs it had before UNDO existed.
"""

from __future__ import annotations

import sys
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

from obliviate.config import ADDED_SETTING, to_dict
from obliviate.corpus import Blocks, corpus_hash, make_blocks, read_corpus
from obliviate.errors import ConfigError
from obliviate.evaluation.summary import QuickEvalConfig, check_eval_inputs, evaluate_before_after
from obliviate.lora import LoraSettings, apply_lora, is_adapter_dir, load_with_adapter, save_model
from obliviate.manifest import file_hash
from obliviate.methods import UNLEARNING_METHODS, make_method, uses_retain
from obliviate.methods.undo import UndoConfig
from obliviate.pipeline import StagedRun, check_context_length, eval_inputs
from obliviate.reporting.model_card import CardSettings
from obliviate.runs import without_reporting_settings
from obliviate.hashing import path_signature, settings_hash
from obliviate.train import TrainConfig, pair_with_retain, train
from obliviate.corpus import CorpusConfig

STAGES = ("unlearn", "eval")
UNDO_STAGES = ("unlearn", "undo", "eval")  # with undo.enabled


@dataclass
class UnlearnConfig:
    """A whole unlearning run."""

    model: str = "smollm2-135m"  # the model to unlearn from: embedded name, HF folder, .gguf file or hub id
    method: str = ""  # one of obliviate.methods.UNLEARNING_METHODS, e.g. "npo", "rmu"
    method_settings: dict[str, Any] = field(default_factory=dict)  # the method's config fields (--set method.X=...)
    forget: CorpusConfig = field(default_factory=lambda: CorpusConfig(context_length=256))  # text to forget
    retain: CorpusConfig = field(default_factory=lambda: CorpusConfig(context_length=256))  # text to keep
    train: TrainConfig = field(default_factory=TrainConfig)
    lora: LoraSettings = field(default_factory=LoraSettings)
    eval: QuickEvalConfig = field(default_factory=QuickEvalConfig)
    trust_remote_code: bool = False  # allow custom model code (only if you trust the source)
    seed: int = 0  # seeds the set-up (LoRA initialisation); data order is train.seed
    card: CardSettings = field(default_factory=CardSettings)  # the model card's license, languages, datasets
    # UNDO after unlearning (--set undo.enabled=true); left out of config.yaml while off
    undo: UndoConfig = field(default_factory=UndoConfig, metadata=ADDED_SETTING)


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _device() -> str:
    from obliviate.runs import local_device

    return local_device()


def pair_examples(forget: list[list[int]], retain: list[list[int]] | None) -> list[dict]:
    """One example per forget block; retain blocks are cycled: ``retain[i % len(retain)]``."""
    return pair_with_retain([{"input_ids": f} for f in forget], [{"input_ids": r} for r in retain or []])


def prepare_unlearning(model, tokenizer, method, lora: LoraSettings):
    """Let the method build its references on the plain model, then wrap it with LoRA if asked.

    Methods that update chosen layers (RMU family) expose ``lora_layers_regex``: LoRA is then
    restricted to those layers. Returns the model to train (the peft model with LoRA).
    """
    if hasattr(method, "prepare"):  # methods with nothing to build (no reference model) have none
        method.prepare(model, tokenizer)
    if lora.enabled:
        model = apply_lora(model, lora, layers_regex=getattr(method, "lora_layers_regex", None))
    return model


def run_undo(run: StagedRun, teacher, text: list[list[int]], heldout: list[list[int]]) -> dict:
    """The UNDO stage of ``run`` (its ``config.undo``): a damaged copy of ``teacher`` (a loaded model, the
    unlearned one) learns the teacher's next-token distributions on ``text`` and is saved whole as the
    run's ``model/``; returns the stage record.

    The student trains all its weights, with or without LoRA in the unlearning: adapters cannot repair
    noise spread over every weight.
    """
    import copy

    from obliviate.methods.undo import UndoDistill, damage

    undo = run.config.undo
    pad = teacher.tokenizer.pad_token_id
    student = copy.deepcopy(teacher.model)
    for p in student.parameters():
        p.requires_grad_(True)
    damage(student, undo)
    method = UndoDistill(undo)
    method.reference = teacher.model  # frozen and placed by the training loop
    student.train()
    before = mean_nll(student, heldout, pad, undo.train.batch_size)
    result = train(student, method, [{"input_ids": b} for b in text], undo.train,
                   heldout_examples=[{"input_ids": b} for b in heldout] or None, pad_id=pad, log=run.folder.log,
                   checkpoint_dir=run.checkpoint_dir("undo"), desc="undo", tracker_dir=run.tracker_dir)
    after = mean_nll(student, heldout, pad, undo.train.batch_size)
    run.folder.save_model("model", lambda tmp: save_model(student, teacher.tokenizer, tmp, LoraSettings(),
                                                          state_dict=result.full_state))
    return {"output": "model", "saved": "full", "steps": result.steps, "tokens": result.tokens,
            "tokens_per_s": round(result.tokens_per_s, 1), "distill_heldout_kl": result.heldout_loss,
            "distill_text_heldout_nll": {"damaged": before, "distilled": after},
            "resumed_seconds": result.resumed_seconds}


def mean_nll(model, blocks: list[list[int]], pad_id: int, batch_size: int = 8) -> float | None:
    """Token-weighted mean next-token NLL of ``blocks`` (None for no block)."""
    import torch

    from obliviate.losses import IGNORE_INDEX, shift_for_next_token
    from obliviate.train import pad_collate

    if not blocks:
        return None
    device = next(model.parameters()).device
    total, count = 0.0, 0
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for i in range(0, len(blocks), batch_size):
            batch = pad_collate([{"input_ids": b} for b in blocks[i:i + batch_size]], pad_id)
            ids, mask = batch["input_ids"].to(device), batch["attention_mask"].to(device)
            labels = shift_for_next_token(ids, mask)
            logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits.float()
            total += float(torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), labels.reshape(-1),
                                                             ignore_index=IGNORE_INDEX, reduction="sum"))
            count += int((labels != IGNORE_INDEX).sum())
    model.train(was_training)
    return total / max(count, 1)


class UnlearnRun(StagedRun):
    """One unlearning run over a run folder. ``run()`` executes the stages not yet done."""

    KIND = "unlearn"
    STAGES = STAGES
    DISTRIBUTED = ("unlearn",)
    CHECKPOINTED = ("unlearn",)
    PATH_SETTINGS = ("model", "forget.sources", "retain.sources", "eval.probe_prompts", "eval.familiarity_prompts",
                     "eval.general_text")

    def __init__(self, config: UnlearnConfig, out, overwrite: bool = False):
        if not config.method:
            raise ConfigError(f"no method: pass --method (one of {', '.join(UNLEARNING_METHODS)})")
        self.method = make_method(config.method, config.method_settings)
        if not config.forget.sources:
            raise ConfigError("no forget text: pass --forget FILE (or forget.sources in the config)")
        self.uses_retain = uses_retain(config.method, self.method.config)
        if self.uses_retain and not config.retain.sources:
            hint = " (or --set method.alpha=0 to train without it)" if UNLEARNING_METHODS[config.method] == \
                "optional" else ""
            raise ConfigError(f"method '{config.method}' needs retain text, the knowledge to keep: pass --retain FILE"
                              f"{hint}")
        from obliviate.sharpness import check_sam_launch

        check_sam_launch("train.sam_rho", config.train.sam_rho)
        if config.undo.enabled:
            check_sam_launch("undo.train.sam_rho", config.undo.train.sam_rho)
            if not (config.retain.sources or config.undo.general):
                raise ConfigError("undo.enabled needs text to distil on: pass --retain FILE or set undo.general "
                                  "(never the forget text)")
            self.STAGES, self.DISTRIBUTED, self.CHECKPOINTED = UNDO_STAGES, ("unlearn", "undo"), ("unlearn", "undo")
        if config.retain.sources and not self.uses_retain:
            warnings.warn(f"method '{config.method}' with these settings does not train on retain text: it is only "
                          "used to measure the retain NLL before and after", stacklevel=2)
        super().__init__(config, out, overwrite)

    def blocks(self) -> dict[str, Blocks | None]:
        """Forget and retain blocks (retain None when no retain text is given); checks the data early."""
        out = {}
        for part, c in (("forget", self.config.forget), ("retain", self.config.retain)):
            if part == "retain" and not c.sources:
                out[part] = None
                continue
            out[part] = make_blocks(read_corpus(c.sources, c.text_field), self.tokenizer(), c.context_length,
                                    c.heldout_fraction, c.seed, max_blocks=c.max_blocks)
        if self.config.undo.enabled and self.config.undo.general:  # UNDO's general text, cut as the retain text
            c = self.config.retain
            out["general"] = make_blocks(read_corpus(self.config.undo.general, c.text_field), self.tokenizer(),
                                         c.context_length, c.heldout_fraction, c.seed, max_blocks=c.max_blocks)
        return out

    def prepare(self):
        """Check every input (corpora, model, evaluation files) before any work."""
        c = self.config
        blocks = self.blocks()
        for part in ("forget", "retain"):
            check_context_length(c.model, getattr(c, part).context_length, f"{part}.context_length",
                                 c.trust_remote_code)
        check_eval_inputs(c.eval)
        return blocks

    def describe(self, blocks) -> dict:
        return {"method": self.config.method, "forget_blocks": len(blocks["forget"].train),
                "retain_blocks": len(blocks["retain"].train) if blocks["retain"] else 0}

    def stage_inputs(self, stage: str, blocks) -> dict:
        c, section = self.config, without_reporting_settings(to_dict(self.config))
        if stage == "unlearn":
            return {"settings": settings_hash({k: v for k, v in section.items() if k not in ("eval", "card", "undo")}),
                    "base_model": path_signature(c.model), "forget_sha256": corpus_hash(c.forget.sources),
                    "retain_sha256": corpus_hash(c.retain.sources) if c.retain.sources else ""}
        if stage == "undo":
            return {"settings": settings_hash(section["undo"]),
                    "retain_sha256": corpus_hash(c.retain.sources) if c.retain.sources else "",
                    "general_sha256": corpus_hash(c.undo.general) if c.undo.general else ""}
        return {**eval_inputs(c.eval), "base_model": path_signature(c.model)}

    def manifest_facts(self) -> dict:
        from obliviate.jsonl import display_path

        sources = ", ".join(display_path(s) for s in self.config.forget.sources)
        return {"method": self.config.method, "removed": f"knowledge of the forget corpus {sources}"}

    def _stage_unlearn(self, blocks) -> dict:
        import torch

        from obliviate.models import load_model
        from obliviate.runs import training_device

        c = self.config
        # this process's GPU (not cuda:0 on every process), or the CPU when FSDP/DeepSpeed shards it
        loaded = load_model(c.model, device=training_device(), trust_remote_code=c.trust_remote_code)
        forget, retain = blocks["forget"], blocks["retain"]
        pad = loaded.tokenizer.pad_token_id
        retain_heldout = (retain.heldout or retain.train) if retain else []
        nll = {"forget_heldout_nll": {"before": mean_nll(loaded.model, forget.heldout, pad, c.train.batch_size)},
               "retain_heldout_nll": {"before": mean_nll(loaded.model, retain_heldout, pad, c.train.batch_size)}}
        torch.manual_seed(c.seed)
        model = prepare_unlearning(loaded.model, loaded.tokenizer, self.method, c.lora)
        training_retain = self.uses_retain and retain
        examples = pair_examples(forget.train, retain.train if training_retain else None)
        heldout = pair_examples(forget.heldout, retain_heldout if training_retain else None) if forget.heldout \
            else None
        if hasattr(self.method, "attach_reference"):  # NPO's precomputed reference log-probs (before training)
            examples = self.method.attach_reference(model, examples, pad)
            heldout = self.method.attach_reference(model, heldout, pad) if heldout else None
        result = train(model, self.method, examples, c.train, heldout_examples=heldout, pad_id=pad,
                       log=self.folder.log, checkpoint_dir=self.checkpoint_dir("unlearn"), desc="unlearn",
                       tracker_dir=self.tracker_dir)
        nll["forget_heldout_nll"]["after"] = mean_nll(model, forget.heldout, pad, c.train.batch_size)
        nll["retain_heldout_nll"]["after"] = mean_nll(model, retain_heldout, pad, c.train.batch_size)
        output = "teacher" if c.undo.enabled else "model"  # with UNDO, model/ is the distilled student
        self.folder.save_model(output, lambda tmp: save_model(model, loaded.tokenizer, tmp, c.lora,
                                                              state_dict=result.full_state))
        path = self.folder.stage_path(output)
        saved = "adapter" if is_adapter_dir(path) else "merged" if c.lora.enabled else "full"
        adapter_hash = file_hash(path / "adapter_model.safetensors") if saved == "adapter" else None
        return {"output": output, "saved": saved, "adapter_sha256": adapter_hash, "steps": result.steps,
                "tokens": result.tokens, "tokens_per_s": round(result.tokens_per_s, 1),
                "heldout_loss": result.heldout_loss, "method_resolved": getattr(self.method, "settings_used", {}),
                "resumed_seconds": result.resumed_seconds,
                **nll}

    def _stage_undo(self, blocks) -> dict:
        """UNDO: damage a copy of the unlearned model (``teacher/``) and distil the teacher into it (``model/``)."""
        from obliviate.runs import training_device

        self.require("unlearn")
        teacher = self.unlearned_loader("teacher", device=training_device())()
        text = [*(blocks["retain"].train if blocks["retain"] else []),
                *(blocks["general"].train if blocks.get("general") else [])]
        heldout = [*(blocks["retain"].heldout if blocks["retain"] else []),
                   *(blocks["general"].heldout if blocks.get("general") else [])]
        return run_undo(self, teacher, text, heldout)

    def unlearned_loader(self, output: str = "model", device: str | None = None) -> Callable:
        from obliviate.models import load_model

        device = device or _device()
        path, c = self.folder.stage_path(output), self.config
        if is_adapter_dir(path):
            return lambda: load_with_adapter(c.model, path, device=device, trust_remote_code=c.trust_remote_code)
        return lambda: load_model(str(path), device=device, trust_remote_code=c.trust_remote_code)

    def _stage_eval(self, blocks) -> dict:
        self.require("undo" if self.config.undo.enabled else "unlearn")
        c = self.config
        trained = {"forget": blocks["forget"].train, "retain": blocks["retain"].train if blocks["retain"] else []}
        if blocks.get("general"):  # UNDO's distillation text: the student trained on it too
            trained["general"] = blocks["general"].train
        metrics = evaluate_before_after(self.folder, {"base": c.model, "unlearned": self.unlearned_loader()}, c.eval,
                                        c.trust_remote_code, trained_blocks=trained)
        return {"output": "metrics.json", "metrics": metrics}
