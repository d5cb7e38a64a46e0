"""``obliviate attack``: every attack on the unlearned model and on its controls, resumable.

Each attack is applied to the unlearned model *and* to the reference models: the base it was
unlearned from and, where one is given, the gold model trained without the forget data. The
forgetting metrics of a suite are re-run on every attacked model; the report gives their levels
and the share of the unlearning gap that survives (:func:`obliviate.attacks.gap.surviving_gap`).

The work is cut into units, one per (attack setting, model): ``none`` (the metrics as they are),
``relearn:<text>:<lr>`` (one fine-tuning run, the metrics at each checkpoint step),
``quantize:<scheme>``, ``probes`` and ``prompts``. Each unit's records are written to
``OUT/records/<unit>__<model>.json`` with the hash of its inputs (model weights, attack settings,
metric specs and data); a unit whose file holds the same hash is reused, so an interrupted attack
resumes where it stopped. ``OUT/attacks.json`` gathers every record and the gap table.
"""

from __future__ import annotations

import json
import re
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from obliviate.attacks.gap import surviving_gap
from obliviate.errors import ConfigError, DataError, SkippedMetric

__all__ = ["ATTACKS", "AttackSettings", "AttackPlan", "plan_attacks", "run_attacks", "gap_table", "FORMAT_VERSION"]

FORMAT_VERSION = 1  # "obliviate_attacks" of attacks.json
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
        only: re-run only these metrics of the suite (default: its forget metrics).
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
    chosen = [s for s in specs if s.name in only] if only else [s for s in specs if s.group == "forget"]
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


# ------------------------------------------------------------------------------------ units
@dataclass
class Unit:
    """One attack setting, applied to one model at a time."""

    id: str  # e.g. "relearn:forget:0.0002"
    attack: str
    params: dict


def plan_units(plan: AttackPlan) -> list[Unit]:
    """The attack settings to run on every model, ``none`` (no attack) first."""
    settings = plan.settings
    units = [Unit("none", "none", {})]
    for attack in settings.attacks:
        if attack == "relearn":
            units += [Unit(f"relearn:{text}:{lr:g}", "relearn",
                           {"text": text, "learning_rate": lr, "steps": sorted(set(settings.steps)),
                            "batch_size": settings.batch_size, "context_length": settings.context_length,
                            "seed": settings.seed}) for text in plan.texts for lr in settings.learning_rates]
        elif attack == "quantize":
            units += [Unit(f"quantize:{scheme}", "quantize", {"scheme": scheme}) for scheme in settings.quantizations]
        elif attack == "probes":
            units.append(Unit("probes", "probes", {"source": plan.probe_source, "questions": len(plan.probe_items)}))
        elif attack == "prompts" and (plan.prompt_metrics or plan.paraphrases):
            units.append(Unit("prompts", "prompts", {"tofu_paraphrased_questions": len(plan.paraphrases)}))
    return units


def _unit_file(out: Path, unit: Unit, model: str) -> Path:
    return out / "records" / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', unit.id)}__{model}.json"


def _unit_inputs(plan: AttackPlan, unit: Unit, weights: str) -> str:
    """sha256 of what a unit's records depend on."""
    from obliviate import __version__
    from obliviate.hashing import settings_hash

    payload = {"weights": weights, "unit": asdict(unit), "suite": plan.suite.sha256, "version": __version__}
    if unit.attack == "probes":
        payload["items"] = [asdict(item) for item in plan.probe_items]
    else:
        specs = plan.prompt_metrics if unit.attack == "prompts" else plan.metrics
        payload["metrics"] = [asdict(s) for s in specs]
    if unit.attack == "prompts":
        payload["paraphrases"] = [asdict(item) for item in plan.paraphrases]
    if unit.attack == "relearn":
        payload["texts"] = plan.texts[unit.params["text"]][1]
    return settings_hash(payload)


def _finished(path: Path, inputs: str) -> dict | None:
    if not path.is_file():
        return None
    try:
        done = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None  # a cut file: the unit runs again
    return done if isinstance(done, dict) and done.get("inputs_sha256") == inputs else None


def _metric_records(model, tokenizer, specs, ctx, base: dict) -> list[dict]:
    """One record per metric: ``{**base, "metric", "family", "value", "higher_is_better"}`` (+ TOFU raw)."""
    from obliviate.evaluation.suite import compute_metric

    records = []
    for spec in specs:
        result = compute_metric(model, tokenizer, spec, ctx).to_json()
        record = {**base, "metric": spec.name, "family": result.get("family"), "group": spec.group,
                  "value": result.get("value"), "higher_is_better": result.get("higher_is_better")}
        if "skipped" in result:
            record["skipped"] = result["skipped"]
        elif result.get("family") == "tofu":  # per-item numbers: forget quality against the attacked gold
            record["tofu"] = {"summary": result["details"].get("summary"), "record": result}
        records.append(record)
    return records


def _run_unit(plan: AttackPlan, unit: Unit, model, tokenizer, ctx) -> list[dict]:
    """The records of one unit on one loaded model (never modified: attacks work on copies)."""
    import copy

    if unit.attack == "none":
        return _metric_records(model, tokenizer, plan.metrics, ctx, {"attack": "none", "variant": "none"})
    if unit.attack == "prompts":
        records = _metric_records(model, tokenizer, plan.prompt_metrics, ctx, {"attack": "prompts",
                                                                               "variant": "prompts"})
        if plan.paraphrases:  # TOFU: the same answers after the original and after the paraphrased questions
            from obliviate.attacks.prompts import answer_probability

            answers = [item.answer for item in plan.paraphrases]
            for variant, questions in (("none", [i.question for i in plan.paraphrases]),
                                       ("paraphrased questions", [i.paraphrased_question for i in plan.paraphrases])):
                records.append({"attack": "none" if variant == "none" else "prompts", "variant": variant,
                                 "metric": "tofu_forget_answer_prob", "family": "tofu_prompt", "group": "forget",
                                 "value": answer_probability(model, tokenizer, questions, answers),
                                 "higher_is_better": False, "n": len(answers)})
        return records
    if unit.attack == "quantize":
        from obliviate.attacks.quantize import quantized_copy

        rounded, count = quantized_copy(model, unit.params["scheme"])
        records = _metric_records(rounded, tokenizer, plan.metrics, ctx,
                                  {"attack": "quantize", "variant": unit.params["scheme"], "matrices": count})
        del rounded
        return records
    if unit.attack == "probes":
        from obliviate.attacks.probes import layer_probe_accuracies

        accuracies = layer_probe_accuracies(model, tokenizer, plan.probe_items)
        held = len(plan.probe_items) // 2
        return [{"attack": "probes", "variant": f"layer {layer}", "layer": layer, "metric": "probe_accuracy",
                 "family": "probe", "group": "forget", "value": value, "higher_is_better": False,
                 "n": 2 * held} for layer, value in enumerate(accuracies)]
    # relearn: one fine-tuning run, the metrics at each checkpoint step
    from obliviate.evaluation.relearning import relearn

    params, records = unit.params, []
    attacked = copy.deepcopy(model)
    checkpoints = set(params["steps"])

    def on_step(step: int) -> None:
        if step in checkpoints:
            records.extend(_metric_records(attacked, tokenizer, plan.metrics, ctx, {
                "attack": "relearn", "variant": f"{params['text']} lr={params['learning_rate']:g} step={step}",
                "text": params["text"], "learning_rate": params["learning_rate"], "step": step}))

    relearn(attacked, tokenizer, plan.texts[params["text"]][1], steps=max(checkpoints),
            learning_rate=params["learning_rate"], batch_size=params["batch_size"],
            context_length=params["context_length"], on_step=on_step, seed=params["seed"],
            desc=f"relearn on {params['text']} text, lr {params['learning_rate']:g}")
    del attacked
    return records


def run_attacks(plan: AttackPlan, progress: bool = False) -> dict:
    """Run every unit on every model (finished units reused) and write ``attacks.json``.

    Returns:
        The content of attacks.json.
    """
    import gc

    import torch

    from obliviate.evaluation.result import MetricContext
    from obliviate.evaluation.suite import compute_metric
    from obliviate.models import load_model, resolve_model_path, weights_hash
    from obliviate.runs import atomic_write_json

    units = plan_units(plan)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    ctx = MetricContext(data_dir=plan.suite.data_dir, device=device, progress=progress,
                        specs={s.name: s for s in plan.suite.metrics})
    ctx.compute = lambda m, t, s: compute_metric(m, t, s, ctx)  # noqa: E731
    done: dict[tuple, dict] = {}
    model_hashes = {}
    for name, spec in plan.models.items():
        known = weights_hash(resolve_model_path(spec))
        pending = [u for u in units
                   if known is None or not _finished(_unit_file(plan.out, u, name), _unit_inputs(plan, u, known))]
        loaded = None
        if pending:
            loaded = load_model(spec, device=device, trust_remote_code=plan.trust_remote_code)
            known = known or loaded.weights_hash  # the files' hash when there is one, so the next run can skip loading
        model_hashes[name] = {"spec": spec, "weights_sha256": known}
        for unit in units:
            path, inputs = _unit_file(plan.out, unit, name), _unit_inputs(plan, unit, known)
            finished = _finished(path, inputs)
            if finished is not None:
                print(f"[{unit.id} / {name}] finished record reused", file=sys.stderr)
            else:
                print(f"[{unit.id} / {name}] ...", file=sys.stderr, flush=True)
                start = time.perf_counter()
                try:
                    records = _run_unit(plan, unit, loaded.model, loaded.tokenizer, ctx)
                except SkippedMetric as exc:
                    records = [{"attack": unit.attack, "variant": unit.id, "metric": None, "skipped": str(exc)}]
                finished = {"inputs_sha256": inputs, "unit": asdict(unit), "model": name,
                            "seconds": round(time.perf_counter() - start, 2),
                            "records": [{**r, "model": name} for r in records]}
                atomic_write_json(path, finished)
            done[(unit.id, name)] = finished
        del loaded
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    records = [r for f in done.values() for r in f["records"]]
    result = {"obliviate_attacks": FORMAT_VERSION,
              "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "settings": attack_settings_record(plan),
              "models": model_hashes,
              "seconds": {f"{unit_id} / {model}": f.get("seconds") for (unit_id, model), f in done.items()},
              "records": [{k: v for k, v in r.items() if k != "tofu"} for r in records],
              "gap": gap_table(records, plan.suite)}
    atomic_write_json(plan.out / "attacks.json", result)
    return result


def attack_settings_record(plan: AttackPlan) -> dict:
    """The attack settings as recorded in attacks.json and the manifest."""
    return {**asdict(plan.settings), "suite": {"name": plan.suite.name, "sha256": plan.suite.sha256},
            "metrics": [s.name for s in plan.metrics], "prompt_metrics": [s.name for s in plan.prompt_metrics],
            "relearning_texts": {name: {"source": source, "texts": len(texts)}
                                 for name, (source, texts) in plan.texts.items()},
            "probe_data": plan.probe_source or None, "tofu_paraphrased_questions": len(plan.paraphrases),
            "gold": "gold" in plan.models}


# ------------------------------------------------------------------------------------ gap table
def _prompt_reference(metric: str, records: list[dict], suite) -> str | None:
    """The plain-prompt metric a prompt attack is measured against: the first forget metric of the suite
    of the same family (e.g. other_languages -> familiarity_greedy)."""
    family = next((r["family"] for r in records if r.get("metric") == metric), None)
    names = {r["metric"] for r in records if r.get("attack") == "none" and r.get("family") == family}
    if metric in names:  # the prompt attack's own plain-prompt counterpart (TOFU's original questions)
        return metric
    return next((s.name for s in suite.metrics if s.name in names and s.group == "forget"), None)


def gap_table(records: list[dict], suite=None) -> list[dict]:
    """One row per (attack, variant, metric): the levels of each model and the surviving gap shares.

    ``share_vs_base`` is ``(m(base+A) - m(unlearned+A)) / (m(base) - m(unlearned))``,
    ``share_vs_gold`` the same with gold; None where undefined (no gap, a missing model or value).
    Prompt attacks are measured against the plain-prompt metric of their family; probes have
    levels only. With a gold model, TOFU metrics add ``forget_quality_vs_attacked_gold`` (the
    unlearned model's forget quality against the gold under the same attack).
    """
    levels: dict[tuple, dict] = {}
    raw: dict[tuple, dict] = {}
    meta: dict[tuple, dict] = {}
    for r in records:
        if r.get("metric") is None:
            continue
        key = (r["attack"], r["variant"], r["metric"])
        levels.setdefault(key, {})[r["model"]] = r.get("value")
        meta.setdefault(key, {k: r[k] for k in ("step", "learning_rate", "text", "layer") if k in r})
        if "tofu" in r:
            raw[(key, r["model"])] = r["tofu"]["record"]
    plain = {key[2]: value for key, value in levels.items() if key[0] == "none"}
    rows = []
    for (attack, variant, metric), attacked in levels.items():
        row = {"attack": attack, "variant": variant, "metric": metric, **meta[(attack, variant, metric)],
               "levels": attacked}
        reference = metric
        if attack == "prompts" and suite is not None:
            reference = _prompt_reference(metric, records, suite)
            row["measured_against"] = reference
        before = plain.get(reference, {}) if reference else {}
        if attack != "probes":
            row["levels_without_attack"] = before
            for control in ("base", "gold"):
                if control in attacked or control in before:
                    row[f"share_vs_{control}"] = surviving_gap(attacked.get(control), attacked.get("unlearned"),
                                                               before.get(control), before.get("unlearned"))
        if ((attack, variant, metric), "gold") in raw and ((attack, variant, metric), "unlearned") in raw:
            from obliviate.evaluation.tofu import raw_from_result, tofu_summary

            ours = raw_from_result(raw[((attack, variant, metric), "unlearned")])
            gold = raw_from_result(raw[((attack, variant, metric), "gold")])
            row["forget_quality_vs_attacked_gold"] = tofu_summary(ours, gold).get("forget_quality")
        rows.append(row)
    return rows
