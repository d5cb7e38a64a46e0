"""Training on question/answer pairs, the loss on answer tokens only: fine-tuning or unlearning.

One run kind, ``qa``, over a run folder with one stage (``train``) that writes ``model/`` (with
``undo.enabled``, a second, ``undo``: the trained model goes to ``teacher/`` and UNDO's distilled
student to ``model/``, as in :mod:`obliviate.unlearn`):

- ``method = "finetune"``: learn the pairs of ``learn`` (TOFU's target and gold retain models);
- an unlearning method (``obliviate.methods.UNLEARNING_METHODS``): forget the pairs of ``forget``,
  each paired with a pair of ``retain`` (cycled) where the method uses retain text.

Each pair is the text ``template.format(question=...) + " " + answer + EOS``; the labels cover the
answer and its EOS, the question is context only (TOFU's own fine-tuning and open-unlearning's
``QADataset`` do the same). QA files are JSON/JSONL in the TOFU layouts (:func:`obliviate.tofu.load_qa`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from obliviate.config import ADDED_SETTING, to_dict
from obliviate.errors import ConfigError, DataError
from obliviate.hashing import path_signature, settings_hash
from obliviate.lora import LoraSettings, apply_lora, save_model
from obliviate.methods.undo import UndoConfig
from obliviate.pipeline import StagedRun
from obliviate.runs import without_reporting_settings
from obliviate.train import TrainConfig, pair_with_retain, train

__all__ = ["QARunConfig", "QARun", "qa_example"]


@dataclass
class QARunConfig:
    """A fine-tuning or unlearning run on question/answer pairs."""

    model: str = "smollm2-135m"  # the model to train: embedded name, HF folder, .gguf file or hub id
    method: str = "finetune"  # "finetune", or an unlearning method (obliviate.methods.UNLEARNING_METHODS)
    method_settings: dict[str, Any] = field(default_factory=dict)  # the method's config fields
    learn: list[str] = field(default_factory=list)  # QA files to learn (method "finetune")
    forget: list[str] = field(default_factory=list)  # QA files to forget (unlearning methods)
    retain: list[str] = field(default_factory=list)  # QA files to keep (methods that use retain text)
    template: str = "Question: {question}\nAnswer:"  # the prompt before " " + answer
    max_length: int = 512  # longest pair kept whole (tokens); longer answers are cut
    train: TrainConfig = field(default_factory=TrainConfig)
    lora: LoraSettings = field(default_factory=LoraSettings)
    trust_remote_code: bool = False  # allow custom model code (only if you trust the source)
    seed: int = 0  # seeds the set-up (LoRA initialisation); data order is train.seed
    # UNDO after unlearning (undo.enabled=true), distilling on the retain pairs and undo.general text
    undo: UndoConfig = field(default_factory=UndoConfig, metadata=ADDED_SETTING)

    def check(self) -> list[tuple[str, bool, str]]:
        """Range rules (see :func:`obliviate.config.validate`)."""
        return [("max_length", self.max_length >= 8, ">= 8 tokens"),
                ("template", "{question}" in self.template, "a prompt with a {question} field")]


def qa_example(tokenizer, question: str, answer: str, template: str, max_length: int = 512) -> dict:
    """Token ids and aligned next-token labels of one pair: ``labels[t]`` is token ``t + 1`` where
    that token belongs to the answer (or its EOS), ``IGNORE_INDEX`` elsewhere.

    Returns:
        ``{"input_ids": [...], "labels": [...]}`` of equal length (at most ``max_length``).
    """
    from obliviate.losses import IGNORE_INDEX

    prompt_ids = tokenizer(template.format(question=question))["input_ids"]
    answer_ids = tokenizer(" " + answer, add_special_tokens=False)["input_ids"]
    if tokenizer.eos_token_id is not None:
        answer_ids = answer_ids + [tokenizer.eos_token_id]
    ids = (prompt_ids + answer_ids)[:max_length]
    labels = ([IGNORE_INDEX] * (len(prompt_ids) - 1) + answer_ids + [IGNORE_INDEX])[:len(ids)]
    labels[-1] = IGNORE_INDEX  # the last position predicts nothing inside the text
    return {"input_ids": ids, "labels": labels}


def _load(files: list[str], tokenizer, config: QARunConfig, what: str) -> list[dict]:
    from obliviate.tofu import load_qa

    examples = []
    for path in files:
        examples += [qa_example(tokenizer, qa.question, qa.answer, config.template, config.max_length)
                     for qa in load_qa(path)]
    if files and not examples:
        raise DataError(f"the {what} files ({', '.join(files)}) hold no question/answer pair")
    return examples


class QARun(StagedRun):
    """One fine-tuning or unlearning run on question/answer pairs (see the module docstring)."""

    KIND = "qa"
    STAGES = ("train",)
    DISTRIBUTED = ("train",)
    CHECKPOINTED = ("train",)
    PATH_SETTINGS = ("model", "learn", "forget", "retain")

    def __init__(self, config: QARunConfig, out, overwrite: bool = False):
        from obliviate.methods import UNLEARNING_METHODS, make_method, uses_retain

        if config.method == "finetune":
            if not config.learn:
                raise ConfigError("method 'finetune' needs question/answer files to learn: set learn")
            if config.forget or config.retain:
                raise ConfigError("method 'finetune' learns the files of 'learn' only: move forget/retain there")
            self.method, self.uses_retain = None, False
        elif config.method in UNLEARNING_METHODS:
            if not config.forget:
                raise ConfigError(f"method '{config.method}' needs question/answer files to forget: set forget")
            self.method = make_method(config.method, config.method_settings)
            self.uses_retain = uses_retain(config.method, self.method.config)
            if self.uses_retain and not config.retain:
                raise ConfigError(f"method '{config.method}' needs retain question/answer files: set retain")
        else:
            raise ConfigError(f"unknown method '{config.method}': use finetune or one of {', '.join(UNLEARNING_METHODS)}")
        if config.undo.enabled:
            from obliviate.sharpness import check_sam_launch

            if self.method is None:
                raise ConfigError("undo.enabled follows unlearning: method 'finetune' unlearns nothing")
            if not (config.retain or config.undo.general):
                raise ConfigError("undo.enabled needs text to distil on: set retain or undo.general "
                                  "(never the forget pairs)")
            check_sam_launch("undo.train.sam_rho", config.undo.train.sam_rho)
            self.STAGES, self.DISTRIBUTED, self.CHECKPOINTED = ("train", "undo"), ("train", "undo"), ("train", "undo")
        super().__init__(config, out, overwrite)

    def prepare(self) -> dict:
        """Read and tokenize every QA file (and UNDO's general text) before any work."""
        c, tok = self.config, self.tokenizer()
        data = {"learn": _load(c.learn, tok, c, "learn"), "forget": _load(c.forget, tok, c, "forget"),
                "retain": _load(c.retain, tok, c, "retain") if self.uses_retain or c.undo.enabled else []}
        if c.undo.enabled and c.undo.general:  # cut into blocks of max_length tokens, a tenth held out
            from obliviate.corpus import make_blocks, read_corpus

            data["general"] = make_blocks(read_corpus(c.undo.general), tok, c.max_length, 0.1, c.seed)
        return data

    def describe(self, data) -> dict:
        return {"method": self.config.method, **{f"{k}_pairs": len(v) for k, v in data.items() if k != "general"}}

    def stage_inputs(self, stage: str, data) -> dict:
        from obliviate.corpus import corpus_hash
        from obliviate.hashing import file_sha256

        section = without_reporting_settings(to_dict(self.config))
        files = {f"{part}:{path}": file_sha256(path) for part in ("learn", "forget", "retain")
                 for path in getattr(self.config, part)}
        if stage == "undo":
            return {"settings": settings_hash(section["undo"]), "data_sha256": settings_hash(files),
                    "general_sha256": corpus_hash(self.config.undo.general) if self.config.undo.general else ""}
        if self.config.undo.enabled:  # the trained model goes to teacher/; UNDO's own settings are its stage's
            section["undo"] = {"enabled": True}
        return {"settings": settings_hash(section), "base_model": path_signature(self.config.model),
                "data_sha256": settings_hash(files)}

    def manifest_facts(self) -> dict:
        from obliviate.jsonl import display_path

        c = self.config
        if c.method == "finetune":
            return {"method": "finetune", "removed": "nothing: a model fine-tuned on "
                    f"{', '.join(display_path(p) for p in c.learn)} (a reference for unlearning, not unlearned)"}
        return {"method": c.method, "removed": f"knowledge of the question/answer pairs "
                f"{', '.join(display_path(p) for p in c.forget)}"}

    def _stage_train(self, data) -> dict:
        import torch

        from obliviate.methods import FineTune
        from obliviate.models import load_model
        from obliviate.runs import training_device
        from obliviate.unlearn import prepare_unlearning

        c = self.config
        loaded = load_model(c.model, device=training_device(), trust_remote_code=c.trust_remote_code)
        pad = loaded.tokenizer.pad_token_id
        torch.manual_seed(c.seed)
        if self.method is None:
            method, model = FineTune(), loaded.model
            model = apply_lora(model, c.lora) if c.lora.enabled else model
            examples = list(data["learn"])
            random.Random(c.seed).shuffle(examples)  # the loop shuffles too; this only fixes ties in order
        else:
            method = self.method
            model = prepare_unlearning(loaded.model, loaded.tokenizer, method, c.lora)
            examples = pair_with_retain(data["forget"], data["retain"] if self.uses_retain else None)
            if hasattr(method, "attach_reference"):  # NPO's precomputed reference log-probs (before training)
                examples = method.attach_reference(model, examples, pad)
        result = train(model, method, examples, c.train, pad_id=pad, log=self.folder.log,
                       checkpoint_dir=self.checkpoint_dir("train"), desc=c.method, tracker_dir=self.tracker_dir)
        output = "teacher" if c.undo.enabled else "model"  # with UNDO, model/ is the distilled student
        self.folder.save_model(output, lambda tmp: save_model(model, loaded.tokenizer, tmp, c.lora,
                                                              state_dict=result.full_state))
        return {"output": output, "steps": result.steps, "tokens": result.tokens,
                "tokens_per_s": round(result.tokens_per_s, 1), "resumed_seconds": result.resumed_seconds,
                "method_resolved": getattr(method, "settings_used", {})}

    def _stage_undo(self, data) -> dict:
        """UNDO on the trained model (``teacher/``): distil it into a damaged copy on the retain pairs (whole
        texts, question and answer; every tenth kept aside to measure the distillation) and ``undo.general``;
        the student is ``model/``."""
        from obliviate.lora import is_adapter_dir, load_with_adapter
        from obliviate.models import load_model
        from obliviate.runs import training_device
        from obliviate.unlearn import run_undo

        self.require("train")
        c, path = self.config, self.folder.stage_path("teacher")
        if is_adapter_dir(path):
            teacher = load_with_adapter(c.model, path, device=training_device(), trust_remote_code=c.trust_remote_code)
        else:
            teacher = load_model(str(path), device=training_device(), trust_remote_code=c.trust_remote_code)
        pairs = [list(e["input_ids"]) for e in data["retain"]]
        kept = len(pairs) // 10  # every tenth pair measures the distillation (before / after NLL), not trained on
        general = data.get("general")
        text = [p for i, p in enumerate(pairs) if not kept or i % 10] + (general.train if general else [])
        heldout = [p for i, p in enumerate(pairs) if kept and not i % 10] + (general.heldout if general else [])
        return run_undo(self, teacher, text, heldout)
