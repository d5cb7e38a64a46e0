"""``obliviate attack``'s inputs: the attack settings and every check made before a model is loaded.

The unlearned model is a run folder of ``obliviate unlearn``, ``whp`` or a qa run (its ``model/``)
or any model spec; the base is the run's ``model`` setting (or ``--base``); the gold model is
optional. The metrics re-run after each attack come from a suite; the relearning texts, probe
questions and TOFU paraphrases from the options, else from the suite.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from obliviate.errors import ConfigError, DataError

__all__ = ["ATTACKS", "MODELS", "AttackSettings", "AttackPlan", "plan_attacks", "attack_settings_record"]

# attack -> what it does (the CLI's help); the one list of attacks
ATTACKS = {
    "relearn": "fine-tune on a slice of forget text and on unrelated text; metrics at each checkpoint step",
    "quantize": "round the weights (GGUF Q8_0/Q4_0 round trips, 8/4-bit round-to-nearest), then the metrics",
    "probes": "per-layer linear probes telling true from false answers (held-out accuracy)",
    "prompts": "the suite's robustness prompts (other languages) and TOFU's paraphrased forget questions",
}
MODELS = ("unlearned", "base", "gold")


@dataclass
class AttackSettings:
    """What the attacks do (recorded in attacks.json and the run's manifest)."""

    attacks: list[str] = field(default_factory=lambda: list(ATTACKS))  # any of ATTACKS
    steps: list[int] = field(default_factory=lambda: [5, 10, 25, 50, 100])  # relearning checkpoints (one run each)
    learning_rates: list[float] = field(default_factory=lambda: [2e-5, 2e-4])  # one relearning run per text and rate
    batch_size: int = 2  # relearning blocks per step
    context_length: int = 256  # relearning tokens per block
    quantizations: list[str] = field(default_factory=lambda: ["gguf_q8_0", "gguf_q4_0", "rtn8", "rtn4"])
    probe_limit: int = 400  # at most this many probe questions (half tune, half held out)
    seed: int = 0  # relearning data order

    def check(self) -> None:
        """Refuse settings no attack can run with.

        Raises:
            ConfigError: naming the setting.
        """
        from obliviate.attacks.quantize import SCHEMES

        unknown = [a for a in self.attacks if a not in ATTACKS]
        if unknown or not self.attacks:
            raise ConfigError(f"unknown attack '{unknown[0] if unknown else ''}': use one or more of "
                              f"{', '.join(ATTACKS)}")
        if not self.steps or any(s < 1 for s in self.steps):
            raise ConfigError(f"--steps must be positive step counts, not {self.steps}")
        if not self.learning_rates or any(not lr > 0 for lr in self.learning_rates):
            raise ConfigError(f"--learning-rates must be positive, not {self.learning_rates}")
        bad = [q for q in self.quantizations if q not in SCHEMES]
        if bad or not self.quantizations:
            raise ConfigError(f"unknown quantization '{bad[0] if bad else ''}': use one or more of {', '.join(SCHEMES)}")
        if self.batch_size < 1 or self.context_length < 16 or self.probe_limit < 4:
            raise ConfigError("--batch-size must be >= 1, --context-length >= 16 and --probe-limit >= 4")


@dataclass
class AttackPlan:
    """Everything checked before any model is loaded."""

    models: dict  # name ("unlearned", "base", "gold") -> model spec
    out: Path
    run_dir: Path | None  # the run folder whose manifest and report get the attacks, if any
    settings: AttackSettings
    suite: object  # obliviate.evaluation.suite.Suite
    metrics: list  # specs re-run after each attack
    prompt_metrics: list  # specs of the prompt attacks (robustness prompts)
    texts: dict = field(default_factory=dict)  # relearning text name -> (description, list of texts)
    probe_items: list = field(default_factory=list)
    probe_source: str = ""
    paraphrases: list = field(default_factory=list)  # TOFU forget questions with their paraphrase (prompt attack)
    trust_remote_code: bool = False


# ------------------------------------------------------------------------------------ planning
def _is_run_folder(path: Path) -> bool:
    return path.is_dir() and ((path / "state.json").is_file() or (path / "config.yaml").is_file())


def _run_base_model(run_dir: Path) -> str | None:
    from obliviate.config import load_yaml

    config = run_dir / "config.yaml"
    value = load_yaml(config).get("model") if config.is_file() else None
    return str(value) if value else None


def _suite_texts(suite, types: tuple, groups: tuple):
    """The ``Texts`` of the first metric of these types and groups (relearning: ``texts``; perplexity: ``texts``)."""
    for spec in suite.metrics:
        if spec.type in types and spec.group in groups and getattr(spec, "texts", None) and spec.texts.files:
            return spec
    return None


def _relearning_texts(suite, forget_text, unrelated_text, text_field: str) -> dict:
    """``{"forget": (description, texts), "unrelated": (...)}`` from the options, else from the suite."""
    from obliviate.corpus import read_corpus
    from obliviate.evaluation.data import read_texts

    texts = {}
    for name, given, spec, hint in (
            ("forget", forget_text, _suite_texts(suite, ("relearning",), ("robustness",)),
             "a slice of the forget text (the suite has no relearning metric)"),
            ("unrelated", unrelated_text, _suite_texts(suite, ("perplexity",), ("utility", "retain")),
             "unrelated text (the suite has no utility perplexity metric), e.g. general/wikitext-2-raw/wiki.test.raw")):
        if given:
            texts[name] = (", ".join(given), read_corpus(given, text_field))
        elif spec is not None:
            texts[name] = (f"suite metric '{spec.name}': {', '.join(spec.texts.files)} span {spec.texts.span}",
                           read_texts(spec.texts, suite.data_dir))
        else:
            raise ConfigError(f"the relearning attack needs --{name}-text: {hint}; or leave relearn out of --attacks")
    return texts


def _probe_items(suite, probe_data: str | None, limit: int):
    """Probe questions from ``--probe-data`` (a QA file, or a TOFU folder), else from the suite:
    its TOFU metric's forget set, or its first forget ``qa`` metric. None when there are none."""
    from obliviate.attacks.probes import probe_items_from_qa, probe_items_from_tofu
    from obliviate.evaluation.data import resolve_data_path
    from obliviate.evaluation.qa import load_qa_file
    from obliviate.tofu import load_sets

    if probe_data:
        path = Path(probe_data)
        if not path.exists():
            raise DataError(f"--probe-data '{probe_data}' does not exist: give a QA file (JSONL with true_answer/"
                            "false_answer or choices/answer) or a TOFU folder")
        if path.is_dir():
            tofu = next((s for s in suite.metrics if s.type == "tofu"), None)
            items = probe_items_from_tofu(load_sets(path, tofu.split if tofu else "forget01")["forget"])
        else:
            items = probe_items_from_qa(load_qa_file(path))
        return items[:limit], str(probe_data)
    for spec in suite.metrics:
        if spec.type == "tofu":
            folder = resolve_data_path(spec.folder, suite.data_dir)
            return probe_items_from_tofu(load_sets(folder, spec.split)["forget"])[:limit], \
                f"suite metric '{spec.name}' ({spec.split} forget questions, true vs perturbed answers)"
        if spec.type == "qa" and spec.group == "forget":
            items = probe_items_from_qa(load_qa_file(resolve_data_path(spec.data, suite.data_dir)), spec.template)
            return items[:limit], f"suite metric '{spec.name}' ({spec.data})"
    return None, ""


def _tofu_paraphrases(suite) -> list:
    """TOFU's paraphrased forget questions, from the suite's first tofu metric (none without one)."""
    from obliviate.attacks.prompts import paraphrased_questions
    from obliviate.evaluation.data import resolve_data_path
    from obliviate.tofu import split_files

    for spec in suite.metrics:
        if spec.type == "tofu":
            path = resolve_data_path(spec.folder, suite.data_dir) / split_files(spec.split).forget_perturbed
            return paraphrased_questions(path, spec.limit)
    return []


def plan_attacks(run: str, *, suite: str, base: str | None = None, gold: str | None = None, only=None,
                 data_dir=None, out=None, settings: AttackSettings | None = None, forget_text=None,
                 unrelated_text=None, text_field: str = "text", probe_data: str | None = None,
                 limit: int | None = None, trust_remote_code: bool = False) -> AttackPlan:
    """Check every input of an attack before any model is loaded.

    Args:
        run: a run folder of ``obliviate unlearn``, ``whp`` or a qa run (its ``model/``), or a model spec.
        suite: the suite whose metrics are re-run (YAML or built-in name).
        base: the base model (default: the run's ``model`` setting).
        gold: the gold model trained without the forget data, if any.
        only: re-run only these metrics of the suite (default: those its relearning metric re-runs, else
            its forget metrics; its robustness prompts are the prompt attacks).
        data_dir: the suite's data folder.
        out: where the attack results go (default ``RUN/attacks``; required for a model spec).
        settings: the attack settings (default :class:`AttackSettings`).
        forget_text / unrelated_text: relearning texts (default: from the suite).
        text_field: field of JSON/JSONL relearning records holding the text (or a template).
        probe_data: QA file or TOFU folder for the probes (default: from the suite).
        limit: at most this many items per metric (quick runs).
        trust_remote_code: allow custom model code.

    Raises:
        ConfigError: unknown attack or metric, no base model, no output folder, missing texts.
        ModelError: a run folder without a model, or a model that does not exist.
        DataError: missing data files.
    """
    from obliviate.errors import ModelError
    from obliviate.evaluation.suite import load_suite
    from obliviate.models import resolve_model_path

    settings = settings or AttackSettings()
    settings.check()
    run_path = Path(run)
    run_dir = run_path if _is_run_folder(run_path) else None
    if run_dir is not None and not ((run_dir / "model" / "config.json").is_file()
                                    or (run_dir / "model" / "adapter_config.json").is_file()):
        raise ModelError(f"run folder '{run}' has no model/: finish the run first (run its command again), "
                         "or pass a model folder with --base")
    base = base or (_run_base_model(run_dir) if run_dir is not None else None)
    if not base:
        raise ConfigError(f"no base model for '{run}': pass --base MODEL (the model it was unlearned from)")
    models = {"unlearned": str(run), "base": base, **({"gold": gold} if gold else {})}
    for name, spec in models.items():
        try:
            resolve_model_path(spec)
        except ModelError as exc:
            raise ModelError(f"{name} model: {exc}") from exc
    if out is None and run_dir is None:
        raise ConfigError(f"'{run}' is a model, not a run folder: pass --out FOLDER for the attack results")
    out = Path(out) if out else run_dir / "attacks"
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out '{out}' is a file: give a folder for the attack results")
    loaded = load_suite(suite, data_dir=data_dir)
    loaded.check_only(only)
    if limit is not None:
        loaded.limit_items(limit)
    from obliviate.evaluation.suite import RERUNNING_TYPES

    specs = [s for s in loaded.metrics if s.type not in RERUNNING_TYPES]
    relearning = next((s for s in loaded.metrics if s.type == "relearning"), None)
    if only:
        chosen = [s for s in specs if s.name in only]
    elif relearning is not None:  # the measures the suite's author re-runs after an attack
        chosen = [s for s in specs if s.name in relearning.metrics]
    else:
        chosen = [s for s in specs if s.group == "forget"]
    metrics = [s for s in chosen if s.group != "robustness"]
    prompt_metrics = [s for s in (chosen if only else specs) if s.group == "robustness"]
    if not metrics:
        raise ConfigError(f"no forgetting metric to re-run after the attacks: name some with --only (suite "
                          f"'{loaded.name}' has {', '.join(s.name for s in specs)})")
    plan = AttackPlan(models=models, out=out, run_dir=run_dir, settings=settings, suite=loaded, metrics=metrics,
                      prompt_metrics=prompt_metrics, trust_remote_code=trust_remote_code)
    if "relearn" in settings.attacks:
        plan.texts = _relearning_texts(loaded, forget_text, unrelated_text, text_field)
    if "probes" in settings.attacks:
        plan.probe_items, plan.probe_source = _probe_items(loaded, probe_data, settings.probe_limit)
        if plan.probe_items is None:
            raise ConfigError(f"the probes attack needs questions with true and false answers: suite '{loaded.name}' "
                              "has no qa or tofu metric; pass --probe-data FILE, or leave probes out of --attacks")
        if len(plan.probe_items) < 4:
            raise DataError(f"the probes need at least 4 questions with a true and a false answer; "
                            f"{plan.probe_source} has {len(plan.probe_items)}")
    if "prompts" in settings.attacks:
        plan.paraphrases = _tofu_paraphrases(loaded)
    if "prompts" in settings.attacks and not (prompt_metrics or plan.paraphrases):
        print(f"note: suite '{loaded.name}' has no robustness prompt metric: no prompt attack", file=sys.stderr)
    return plan


def attack_settings_record(plan: AttackPlan) -> dict:
    """The attack settings as recorded in attacks.json and the manifest."""
    return {**asdict(plan.settings), "suite": {"name": plan.suite.name, "sha256": plan.suite.sha256},
            "metrics": [s.name for s in plan.metrics], "prompt_metrics": [s.name for s in plan.prompt_metrics],
            "relearning_texts": {name: {"source": source, "texts": len(texts)}
                                 for name, (source, texts) in plan.texts.items()},
            "probe_data": plan.probe_source or None, "tofu_paraphrased_questions": len(plan.paraphrases),
            "gold": "gold" in plan.models}
