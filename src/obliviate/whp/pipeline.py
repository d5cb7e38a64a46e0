"""The four WHP stages, run in order over a run folder; a stage already complete is skipped.

1. reinforce: fine-tune a copy of the baseline on the target (or take a given reinforced model);
2. anchors: load, prune and check the anchored-terms dictionary against the corpus;
3. labels: generic labels for every block;
4. finetune: train the baseline on the generic labels; then evaluate before/after.

The stage runner (state, resume, lock, hashes, manifest) is :class:`obliviate.pipeline.StagedRun`.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field

from obliviate.config import to_dict
from obliviate.corpus import CorpusConfig, corpus_hash, make_blocks, read_corpus
from obliviate.errors import ConfigError, DataError
from obliviate.evaluation.summary import QuickEvalConfig, check_eval_inputs, evaluate_before_after
from obliviate.lora import LoraSettings, apply_lora, is_adapter_dir, load_with_adapter, save_model
from obliviate.pipeline import StagedRun, check_context_length, eval_inputs
from obliviate.hashing import file_sha256, path_signature, settings_hash
from obliviate.reporting.model_card import CardSettings
from obliviate.runs import atomic_write_json, without_reporting_settings
from obliviate.train import TrainConfig, pair_with_retain, train
from obliviate.whp.labels import LabelConfig, gather_labels, generate_generic_labels, load_labels, save_labels

STAGES = ("reinforce", "labels", "finetune", "eval")


@dataclass
class ReinforceConfig:
    """Stage 1: the reinforced model."""

    model: str | None = None  # an existing reinforced model (skips training)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=3, learning_rate=3e-5, batch_size=4))


@dataclass
class WHPRetainConfig:
    """Optional text on which the fine-tune keeps the baseline's predictions (obliviate's addition
    to the paper): ``weight * KL(baseline || model)`` on its blocks, one per label block. The text
    is general text (``sources``), the target blocks translated to their generic counterparts
    (``translated``: the target's domain without its names), or both, alternating."""

    sources: list[str] = field(default_factory=list)  # files, folders, globs, JSON(L); none: the paper's loss
    text_field: str = "text"  # record field with the text
    weight: float = 1.0  # weight of the KL term (used only with sources or translated)
    max_blocks: int | None = None  # cap on general-text blocks: the first N in text order
    translated: bool = False  # also keep the baseline on the translated target blocks

    @property
    def active(self) -> bool:
        return bool(self.sources) or self.translated

    def check(self) -> list[tuple[str, bool, str]]:
        """Range rules (see :func:`obliviate.config.validate`)."""
        return [("weight", self.weight >= 0, ">= 0"),
                ("max_blocks", self.max_blocks is None or self.max_blocks >= 1, ">= 1 (or unset for no cap)")]


@dataclass
class WHPConfig:
    """A whole "Who's Harry Potter?" run."""

    model: str = "smollm2-135m"  # the baseline: embedded name, HF folder, .gguf file or hub id
    anchors: str | None = None  # anchored-terms dictionary (JSON or YAML)
    target: CorpusConfig = field(default_factory=CorpusConfig)
    reinforce: ReinforceConfig = field(default_factory=ReinforceConfig)
    labels: LabelConfig = field(default_factory=LabelConfig)
    finetune: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=2, learning_rate=1e-5, batch_size=4))
    retain: WHPRetainConfig = field(default_factory=WHPRetainConfig)  # optional KL to the baseline on general text
    lora: LoraSettings = field(default_factory=LoraSettings)  # fine-tune LoRA adapters instead of all weights
    eval: QuickEvalConfig = field(default_factory=QuickEvalConfig)
    trust_remote_code: bool = False  # allow custom model code (only if you trust the source)
    force: bool = False  # continue when no anchored expression occurs in the corpus
    card: CardSettings = field(default_factory=CardSettings)  # the model card's license, languages, datasets


def _device() -> str:
    from obliviate.runs import local_device

    return local_device()


def save_hf(model, tokenizer, folder, state_dict=None) -> None:
    """Save a model (safetensors) and its tokenizer in Hugging Face format (``state_dict``: the
    gathered weights of a sharded model, see :attr:`obliviate.train.TrainResult.full_state`)."""
    save_model(model, tokenizer, folder, LoraSettings(), state_dict=state_dict)


def _sharded_labels(base_model, reinforced_model, blocks, matcher, config, pad_id: int, desc: str) -> dict:
    """Generic labels of ``blocks``, each process labelling its share; every process gets them all."""
    from obliviate.runs import process_index

    rank, processes = process_index()
    share = generate_generic_labels(base_model, reinforced_model, blocks, matcher, config, pad_id, desc=desc,
                                    shard=(rank, processes))
    if processes == 1:
        return share
    from accelerate.utils import gather_object

    return gather_labels(gather_object([share]))


def translated_blocks(blocks: list[list[int]], matcher, context_length: int, seed: int) -> list[list[int]]:
    """Each block with its anchored expressions translated (one counterpart draw per block, seeded
    apart from the labels' draws), cut to ``context_length`` tokens."""
    import random

    return [matcher.translate(b, random.Random(seed * 1_000_003 + 500_009 + i)).translated_ids[:context_length]
            for i, b in enumerate(blocks)]


def interleave(first: list, second: list) -> list:
    """``first[0], second[0], first[1], second[1], ...``, then the rest of the longer list."""
    out = [x for pair in zip(first, second) for x in pair]
    n = min(len(first), len(second))
    return out + first[n:] + second[n:]


class WHPRun(StagedRun):
    """One WHP run over a run folder. ``run()`` executes the stages that are not yet done."""

    KIND = "whp"
    STAGES = STAGES
    DISTRIBUTED = ("reinforce", "labels", "finetune")
    CHECKPOINTED = ("reinforce", "finetune")
    PATH_SETTINGS = ("model", "anchors", "target.sources", "retain.sources", "reinforce.model", "eval.probe_prompts",
                     "eval.familiarity_prompts", "eval.general_text")

    def __init__(self, config: WHPConfig, out, overwrite: bool = False):
        if not config.target.sources:
            raise ConfigError("no target corpus: pass --target FILE (or target.sources in the config)")
        if not config.anchors:
            raise ConfigError("no anchored-terms dictionary: pass --anchors FILE "
                              "(`obliviate anchors propose` can build one)")
        super().__init__(config, out, overwrite)

    # ---- shared inputs, checked before any expensive stage ----
    def blocks(self):
        c = self.config.target
        docs = read_corpus(c.sources, c.text_field)
        return make_blocks(docs, self.tokenizer(), c.context_length, c.heldout_fraction, c.seed,
                           max_blocks=c.max_blocks)

    def retain_blocks(self) -> list[list[int]]:
        """Blocks of the retain text: general text (``retain.sources``, cut as the target is) and,
        with ``retain.translated``, the target's training blocks translated (anchored expressions
        -> generic counterparts, cut back to the context length), alternating; [] when neither."""
        r, c = self.config.retain, self.config.target
        general, translated = [], []
        if r.sources:
            docs = read_corpus(r.sources, r.text_field)
            general = make_blocks(docs, self.tokenizer(), c.context_length, 0.0, c.seed, max_blocks=r.max_blocks).train
            if not general:
                raise DataError(f"retain text {', '.join(r.sources)} gives no block of {c.context_length} tokens: "
                                "give more text or a smaller target.context_length")
        if r.translated:
            translated = translated_blocks(self.blocks().train, self.matcher()[0], c.context_length,
                                           self.config.labels.seed)
        return interleave(translated, general)

    def matcher(self, blocks=None):
        from obliviate.whp.anchors import AnchorMatcher, load_anchored_terms, prune_anchored_terms

        terms, dropped = prune_anchored_terms(load_anchored_terms(self.config.anchors))
        if not terms:
            raise DataError(f"'{self.config.anchors}' has no expression left after pruning: add expressions")
        matcher = AnchorMatcher(self.tokenizer(), terms)
        if blocks is not None:
            counts = matcher.count_occurrences(blocks)
            found = {k: v for k, v in counts.items() if v}
            if not found:
                message = (f"none of the {len(terms)} expressions of '{self.config.anchors}' occurs in the target "
                           "corpus: check that the dictionary matches the text")
                if not self.config.force:
                    raise DataError(message + ", or pass --force to go on anyway")
                warnings.warn(message + " (going on: --force)", stacklevel=2)
            return matcher, {"kept": len(terms), "dropped": dropped, "occurring": len(found),
                             "occurrences": sum(found.values())}
        return matcher, {"kept": len(terms), "dropped": dropped}

    def prepare(self):
        """Check every input (corpus, dictionary, models, evaluation files) before any work."""
        from obliviate.models import check_same_tokenizer, load_tokenizer

        c = self.config
        blocks = self.blocks()
        self.matcher(blocks.train)
        self.retain_blocks()
        check_context_length(c.model, c.target.context_length, "target.context_length", c.trust_remote_code)
        if c.reinforce.model:
            check_same_tokenizer(self.tokenizer(), load_tokenizer(c.reinforce.model, c.trust_remote_code))
        check_eval_inputs(c.eval)
        return blocks

    def describe(self, blocks) -> dict:
        return {"train_blocks": len(blocks.train), "heldout_blocks": len(blocks.heldout)}

    def stage_inputs(self, stage: str, blocks) -> dict:
        c, section = self.config, without_reporting_settings(to_dict(self.config))
        if stage == "reinforce":
            return {"settings": settings_hash([c.model, section["target"], section["reinforce"]]),
                    "base_model": path_signature(c.model), "corpus_sha256": corpus_hash(c.target.sources),
                    "reinforced_model": path_signature(c.reinforce.model) if c.reinforce.model else ""}
        if stage == "labels":
            return {"settings": settings_hash(section["labels"]), "anchors_sha256": file_sha256(c.anchors)}
        if stage == "finetune":
            inputs = {"settings": settings_hash([section["finetune"], section["lora"]])}
            if c.retain.active:  # absent without retain text: runs made before the option keep their hashes
                retain = section["retain"] if c.retain.translated else \
                    {k: v for k, v in section["retain"].items() if k != "translated"}  # older runs' hashes
                inputs.update(retain=settings_hash(retain), retain_sha256=corpus_hash(c.retain.sources))
                if c.retain.translated:  # the translated blocks follow from the target, dictionary and seed
                    inputs.update(retain_translation=settings_hash([section["target"], section["labels"]["seed"]]),
                                  anchors_sha256=file_sha256(c.anchors))
            return inputs
        return {**eval_inputs(c.eval), "base_model": path_signature(c.model)}

    def manifest_facts(self) -> dict:
        from obliviate.jsonl import display_path

        sources = ", ".join(display_path(s) for s in self.config.target.sources)
        return {"method": "whp", "removed": f"knowledge of the target corpus {sources}"}

    def reinforced_path(self) -> str:
        if self.config.reinforce.model:
            return self.config.reinforce.model
        return str(self.folder.stage_path("reinforced"))

    def _stage_reinforce(self, blocks) -> dict:
        from obliviate.methods import FineTune
        from obliviate.models import load_model

        if self.config.reinforce.model:
            return {"output": None, "reinforced_model": self.config.reinforce.model, "trained": False}
        loaded = load_model(self.config.model, trust_remote_code=self.config.trust_remote_code)
        tok = loaded.tokenizer
        examples = [{"input_ids": b} for b in blocks.train]
        heldout = [{"input_ids": b} for b in blocks.heldout]
        result = train(loaded.model, FineTune(), examples, self.config.reinforce.train, heldout_examples=heldout,
                       pad_id=tok.pad_token_id, log=self.folder.log,
                       checkpoint_dir=self.checkpoint_dir("reinforce"), desc="reinforce",
                       tracker_dir=self.tracker_dir)
        self.folder.save_model("reinforced", lambda tmp: save_hf(loaded.model, tok, tmp, result.full_state))
        return {"output": "reinforced", "trained": True, "steps": result.steps, "tokens": result.tokens,
                "tokens_per_s": round(result.tokens_per_s, 1), "heldout_loss": result.heldout_loss,
                "resumed_seconds": result.resumed_seconds}

    def _stage_labels(self, blocks) -> dict:
        """Every process labels its share of the blocks; the main process writes the joined labels."""
        from obliviate.models import check_same_tokenizer, load_model
        from obliviate.runs import is_main_process, local_device, wait_for_everyone

        self.require("reinforce")
        device = local_device()
        base = load_model(self.config.model, device=device, trust_remote_code=self.config.trust_remote_code)
        reinforced = load_model(self.reinforced_path(), device=device,
                                trust_remote_code=self.config.trust_remote_code)
        check_same_tokenizer(base.tokenizer, reinforced.tokenizer)
        matcher, anchor_info = self.matcher(blocks.train)
        pad = base.tokenizer.pad_token_id
        start = time.perf_counter()
        train_labels = _sharded_labels(base.model, reinforced.model, blocks.train, matcher, self.config.labels, pad,
                                       "generic labels")
        seconds = time.perf_counter() - start
        heldout_labels = _sharded_labels(base.model, reinforced.model, blocks.heldout, matcher, self.config.labels,
                                         pad, "generic labels (held out)") if blocks.heldout else None
        if is_main_process():
            tmp = self.folder.tmp_dir("labels")
            save_labels(train_labels["examples"], tmp / "train.safetensors")
            stats = {"train": train_labels["stats"], "anchors": {**anchor_info, "dropped": anchor_info["dropped"]}}
            if heldout_labels:
                save_labels(heldout_labels["examples"], tmp / "heldout.safetensors")
                stats["heldout"] = heldout_labels["stats"]
            atomic_write_json(tmp / "stats.json", stats)
            self.folder.commit_dir("labels", tmp)
        wait_for_everyone()
        tokens = sum(len(b) for b in blocks.train)
        return {"output": "labels", "tokens": tokens, "tokens_per_s": round(tokens / seconds, 1),
                "labelled_positions": train_labels["stats"]["labelled"],
                "changed_positions": train_labels["stats"]["changed"],
                "anchored_occurrences": train_labels["stats"]["anchored_occurrences"]}

    def _stage_finetune(self, blocks) -> dict:
        from obliviate.methods import WHPDistill
        from obliviate.methods.whp_distill import WHPDistillConfig
        from obliviate.models import load_model

        self.require("labels")
        loaded = load_model(self.config.model, trust_remote_code=self.config.trust_remote_code)
        labels_dir = self.folder.stage_path("labels")
        examples = load_labels(labels_dir / "train.safetensors")
        heldout_file = labels_dir / "heldout.safetensors"
        heldout = load_labels(heldout_file) if heldout_file.exists() else None
        retain = self.retain_blocks()
        method = WHPDistill(WHPDistillConfig(alpha=self.config.retain.weight if retain else 0.0))
        if retain:  # each label block with a retain block, cycled (the held-out loss holds both terms too)
            method.prepare(loaded.model)
            retain = [{"input_ids": b} for b in retain]
            examples = pair_with_retain(examples, retain)
            heldout = pair_with_retain(heldout, retain) if heldout else None
        lora = self.config.lora
        model = apply_lora(loaded.model, lora) if lora.enabled else loaded.model
        result = train(model, method, examples, self.config.finetune, heldout_examples=heldout,
                       pad_id=loaded.tokenizer.pad_token_id, log=self.folder.log,
                       checkpoint_dir=self.checkpoint_dir("finetune"), desc="finetune",
                       tracker_dir=self.tracker_dir)
        self.folder.save_model("model", lambda tmp: save_model(model, loaded.tokenizer, tmp, lora,
                                                               state_dict=result.full_state))
        return {"output": "model", "steps": result.steps, "tokens": result.tokens,
                "tokens_per_s": round(result.tokens_per_s, 1), "heldout_loss": result.heldout_loss,
                "resumed_seconds": result.resumed_seconds}

    def _stage_eval(self, blocks) -> dict:
        self.require("finetune")
        path = self.folder.stage_path("model")
        unlearned = str(path)
        if is_adapter_dir(path):  # LoRA saved as an adapter: the base model plus the adapter
            unlearned = lambda: load_with_adapter(self.config.model, path, device=_device(),  # noqa: E731
                                                  trust_remote_code=self.config.trust_remote_code)
        models = {"base": self.config.model, "unlearned": unlearned}
        metrics = evaluate_before_after(self.folder, models, self.config.eval, self.config.trust_remote_code,
                                        trained_blocks={"forget": blocks.train})
        return {"output": "metrics.json", "metrics": metrics}
