"""The one stage runner behind every run kind (``whp``, ``unlearn``).

A run kind lists its stages and says, per stage, what it reads (``stage_inputs``: content hashes
of files and settings) and how to run it (``_stage_<name>``). The runner owns the rest, once:

1. every input is read and checked (:meth:`StagedRun.prepare`) *before* the run folder is
   written, so a typo never leaves a folder behind that needs ``--overwrite``;
2. the folder is locked against a second process, created or checked to hold the same run, and
   the run kind is recorded in ``state.json``;
3. each stage runs unless it is done, i.e. complete, with the same input hashes as now and its
   output files unchanged; a stage that is no longer done is redone when asked for, and otherwise
   its stale output is removed, so the folder never shows an output of inputs it no longer has;
4. the manifest is rewritten after every stage from what the stages recorded.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

from obliviate.config import from_dict, to_dict, validate
from obliviate.errors import ConfigError, RunFolderError
from obliviate.hashing import settings_hash
from obliviate.runs import RunFolder, broadcast_from_main, is_main_process, main_result, wait_for_everyone

# Keys of a stage's inputs that are not content hashes of files (left out of the manifest's inputs).
_INTERNAL_INPUTS = ("settings", "upstream")


def say(message: str) -> None:
    """A progress line on stderr (main process only)."""
    if is_main_process():
        print(message, file=sys.stderr, flush=True)


def _absolute(value: str, model: bool) -> str:
    """A local path made absolute. A model setting may also be an embedded name or a hub id: it is
    made absolute only when it names an existing local path; a hub dataset id (``hf:...``) stays."""
    from obliviate.records import is_hub_id

    text = str(value)
    if is_hub_id(text):
        return text
    path = Path(text).expanduser()
    if model and not path.exists():
        return text
    return str(path.absolute())


def normalize_paths(config, paths: tuple[str, ...]):
    """A copy of ``config`` whose path settings (``"a.b"`` names) are absolute, so a relative and
    an absolute path to the same file are the same run (settings named ``model`` or ``*.model``
    only where they are local paths)."""
    def update(node, parts, model):
        head, rest = parts[0], parts[1:]
        value = getattr(node, head)
        if rest:
            return dataclasses.replace(node, **{head: update(value, rest, model)})
        if isinstance(value, list):
            return dataclasses.replace(node, **{head: [_absolute(v, model) for v in value]})
        return dataclasses.replace(node, **{head: _absolute(value, model) if value else value})

    for name in paths:
        config = update(config, name.split("."), model=name.split(".")[-1] == "model")
    return config


def check_context_length(model_spec: str, context_length: int, what: str, trust_remote_code: bool = False) -> None:
    """Refuse blocks longer than the model's ``max_position_embeddings``.

    Raises:
        ConfigError: naming the setting and the model's limit.
    """
    from transformers import AutoConfig

    from obliviate.models import resolve_model_path

    try:
        model_config = AutoConfig.from_pretrained(resolve_model_path(model_spec), trust_remote_code=trust_remote_code)
    except (OSError, ValueError):
        return  # the model's own loader gives the clearer error later
    limit = getattr(model_config, "max_position_embeddings", None)
    if limit and context_length > limit:
        raise ConfigError(f"'{what}' is {context_length} but the model reads at most {limit} tokens "
                          f"(max_position_embeddings): set {what} <= {limit}")


def _eval_files(eval_config) -> list[str]:
    files = [eval_config.probe_prompts, eval_config.familiarity_prompts, *eval_config.general_text]
    return [f for f in files if f]


def check_trackers(config) -> None:
    """Every experiment tracker the config's training sections report to is installed.

    Raises:
        ConfigError: naming the tracker and the package to install.
    """
    from obliviate.train import TrainConfig, check_trackers as check

    def trackers(node) -> list[str]:
        if isinstance(node, TrainConfig):
            return list(node.report_to)
        if dataclasses.is_dataclass(node) and not isinstance(node, type):
            return [name for f in dataclasses.fields(node) for name in trackers(getattr(node, f.name))]
        return []

    check(dict.fromkeys(trackers(config)))


def eval_inputs(eval_config) -> dict[str, str]:
    """Inputs of the end-of-run evaluation: its settings and the content of its files."""
    import hashlib

    from obliviate.corpus import expand_sources, source_sha256

    digest = hashlib.sha256()
    for path in _eval_files(eval_config):
        for f in expand_sources(path):
            digest.update(source_sha256(f).encode())
    return {"settings": settings_hash(dataclasses.asdict(eval_config)), "eval_files_sha256": digest.hexdigest()}


class StagedRun:
    """Runs the stages of one run kind over a run folder (see the module docstring).

    Subclasses set ``KIND``, ``STAGES``, ``DISTRIBUTED`` (stages every process of an ``accelerate
    launch`` takes part in), ``CHECKPOINTED`` (training stages that write ``.<stage>.ckpt``) and
    ``PATH_SETTINGS``, and implement ``prepare``, ``stage_inputs``, ``_stage_<name>`` and
    ``manifest_facts``.
    """

    KIND = ""
    STAGES: tuple[str, ...] = ()
    DISTRIBUTED: tuple[str, ...] = ()
    CHECKPOINTED: tuple[str, ...] = ()
    PATH_SETTINGS: tuple[str, ...] = ()

    def __init__(self, config, out, overwrite: bool = False):
        validate(config)
        # every value in its declared type (a default of 3 in a float field becomes 3.0), so the
        # same settings hash the same however they were given (Python, YAML, the folder's config)
        config = from_dict(type(config), to_dict(config))
        self.config = normalize_paths(config, self.PATH_SETTINGS)
        check_trackers(self.config)
        self.folder = RunFolder(out)
        self.overwrite = overwrite
        self._tokenizer = None

    # ---- what a run kind supplies ----
    def prepare(self):
        """Read and check every input; returns what the stages need (e.g. token blocks)."""
        raise NotImplementedError

    def stage_inputs(self, stage: str, data) -> dict[str, str]:
        """``{name: content hash}`` of everything ``stage`` reads besides the earlier stages."""
        raise NotImplementedError

    def manifest_facts(self) -> dict:
        """``{"method": ..., "removed": ...}`` for the manifest."""
        raise NotImplementedError

    def describe(self, data) -> dict:
        """Facts for the ``start`` record of the log."""
        return {}

    # ---- shared ----
    def tokenizer(self):
        """The base model's tokenizer (pad token set to EOS when it has none), without weights."""
        if self._tokenizer is None:
            from obliviate.models import load_tokenizer

            self._tokenizer = load_tokenizer(self.config.model, self.config.trust_remote_code)
        return self._tokenizer

    def checkpoint_dir(self, stage: str) -> Path:
        return self.folder.path / f".{stage}.ckpt"

    @property
    def tracker_dir(self) -> Path:
        """Where the experiment trackers of ``report_to`` write (one folder per training stage)."""
        return self.folder.path / "trackers"

    def require(self, stage: str) -> None:
        """Raise unless ``stage`` is complete (used by a stage that reads another's output)."""
        if not self.folder.stage_info(stage).get("complete"):
            raise RunFolderError(f"stage '{stage}' is not complete in {self.folder.path}: run it first "
                                 f"(`obliviate {self.KIND} --out {self.folder.path}` runs every stage)")

    def run(self, stages=None) -> dict:
        """Run the given stages (default: all) in order; those already done are skipped.

        Returns:
            The evaluations of the ``eval`` stage, if it ran or was done.

        Raises:
            ConfigError, DataError, ModelError: a bad input, before the folder is written.
            RunFolderError: the folder holds another run, is in use, or lacks an earlier stage.
        """
        stages = tuple(stages or self.STAGES)
        unknown = [s for s in stages if s not in self.STAGES]
        if unknown:
            raise ConfigError(f"unknown stage '{unknown[0]}': stages are {', '.join(self.STAGES)}")
        self.folder.check_writable()
        data = self.prepare()
        self._check_prerequisites(stages, data)
        with self.folder.lock():
            self.folder.init(to_dict(self.config), overwrite=self.overwrite, kind=self.KIND)
            self.folder.log({"event": "start", "kind": self.KIND, "stages": list(stages), **self.describe(data)})
            upstream = ""
            for index, stage in enumerate(self.STAGES):
                inputs = {**self.stage_inputs(stage, data), "upstream": upstream}
                # the main process decides, so every process takes the same branch
                done, why = broadcast_from_main(self.folder.stage_status(stage, inputs) if is_main_process()
                                                else None)
                if not done and stage in stages:
                    if self.folder.stage_info(stage):
                        say(f"[{stage}] {why}: running it again")
                    self._execute(stage, inputs, data)
                elif not done:
                    later = [s for s in stages if self.STAGES.index(s) > index]
                    if later:
                        raise self._not_done(stage, why, later[0])
                    self._discard(stage)
                elif stage in stages:
                    say(f"[{stage}] already complete in {self.folder.path}: skipped")
                wait_for_everyone()  # the main process may have rewritten state.json (_discard)
                upstream = self._upstream(stage)
            self._republish_if_card_changed()
        return self.folder.stage_info("eval").get("metrics") or {}

    def _republish_if_card_changed(self) -> None:
        """The card settings (license, ...) change no stage: a complete run given new ones gets a new
        manifest and card, and nothing else is redone (a run given the same ones is left untouched)."""
        import json

        path = self.folder.path / "manifest.json"
        if not is_main_process() or not path.is_file():
            return
        card = getattr(self.config, "card", None)
        if card is None:
            return
        manifest = json.loads(path.read_text(encoding="utf-8"))
        # a manifest written before the card settings existed recorded their defaults
        recorded = (manifest.get("hyperparameters") or {}).get("card", dataclasses.asdict(type(card)()))
        if manifest.get("complete") and recorded != dataclasses.asdict(card):
            say("[card] settings changed: manifest and model card rewritten")
            self.write_manifest()

    def _upstream(self, stage: str) -> str:
        """What a stage hands to the next one's inputs: a hash of its recorded inputs and outputs."""
        info = self.folder.stage_info(stage)
        return settings_hash([info.get("inputs"), info.get("outputs")]) if info.get("complete") else ""

    def _not_done(self, stage: str, why: str, needed_by: str) -> RunFolderError:
        return RunFolderError(f"stage '{stage}' is not done in {self.folder.path} ({why}), and '{needed_by}' needs "
                              f"it: run `obliviate {self.KIND} --out {self.folder.path}` (or that stage) first")

    def _check_prerequisites(self, stages, data) -> None:
        """Before writing anything: the stages before the first requested one must be done."""
        upstream = ""
        for stage in self.STAGES[:min(self.STAGES.index(s) for s in stages)]:
            done, why = self.folder.stage_status(stage, {**self.stage_inputs(stage, data), "upstream": upstream})
            if not done:
                raise self._not_done(stage, why, stages[0])
            upstream = self._upstream(stage)

    def _execute(self, stage: str, inputs: dict, data) -> None:
        main = is_main_process()
        checkpoint = self.checkpoint_dir(stage) if stage in self.CHECKPOINTED else None
        self.folder.start_stage(stage, inputs, checkpoint=checkpoint)
        wait_for_everyone()
        say(f"[{stage}] ...")
        start = time.perf_counter()
        run_stage = lambda: getattr(self, f"_stage_{stage}")(data) or {}  # noqa: E731
        # a distributed stage runs on every process; another on the main one while the rest wait
        info = run_stage() if stage in self.DISTRIBUTED else (main_result(run_stage) or {})
        # a resumed training stage counts the time its earlier attempts spent up to the checkpoint
        info["seconds"] = round(time.perf_counter() - start + info.pop("resumed_seconds", 0.0), 2)
        wait_for_everyone()
        if main:
            self.folder.mark_done(stage, inputs=inputs, **info)
            self.folder.log({"event": "stage_done", "stage": stage,
                             **{k: v for k, v in info.items() if k not in ("metrics", "output")}})
            self.write_manifest()
        wait_for_everyone()

    def _discard(self, stage: str) -> None:
        """A stage that is no longer done and is not being redone: drop its output and completion."""
        if self.folder.invalidate(stage):
            say(f"[{stage}] out of date: its output was removed (run it again to restore it)")
            self.write_manifest()

    def recorded_inputs(self) -> dict:
        """Content hashes the complete stages read, for the manifest."""
        hashes = {}
        for stage in self.STAGES:
            info = self.folder.stage_info(stage)
            if info.get("complete"):
                hashes.update({k: v for k, v in (info.get("inputs") or {}).items() if k not in _INTERNAL_INPUTS})
        return hashes

    def write_manifest(self) -> dict:
        from obliviate.manifest import publish, write_manifest

        facts = self.manifest_facts()
        manifest = write_manifest(self.folder, method=facts["method"], base_model=self.config.model,
                                  config=to_dict(self.config), hashes=self.recorded_inputs(),
                                  removed=facts["removed"], stages=self.STAGES)
        if manifest["complete"]:
            publish(self.folder)
        return manifest
