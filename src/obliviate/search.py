"""``obliviate search``: Optuna search of any method's settings on the TUNE half of a dev evaluation.

Each trial is an ordinary run folder ``OUT/trials/<n>/`` (a :class:`~obliviate.unlearn.UnlearnRun`
or :class:`~obliviate.whp.pipeline.WHPRun` of the config the user gave, with the trial's settings
layered over it by :func:`obliviate.settings.resolve`), then scored on the suite's tune-half
metrics only (:func:`obliviate.evaluation.halves.half_metrics`); the held-out half is computed
only by :func:`final_evaluation` (``--final``), for the best trial, beside the tune half.

    gain(m)    = (base_m - after_m) / |base_m|  for a metric where lower is better after unlearning
                 (familiarity, cloze, name mass), else (after_m - base_m) / |base_m|
    objective  = mean of gain(m) over the objective metrics                            (maximised)
    feasible   = perplexity rise <= max_perplexity_rise %  and  |change| <= max_retain_change %
                 for every retain metric, both against the base model

Bounds are Optuna constraints (``Trial.set_constraint``, read by the TPE sampler; <= 0 holds), not
a penalty: the objective stays the plain forgetting score, the sampler learns to avoid infeasible
regions, and :func:`best_trial` picks the best COMPLETE feasible trial (never an infeasible one).

Pruning: after a trial's run, its bound metrics are computed, then its objective metrics one by one
(cheapest type first: probabilities, cloze, perplexity, ..., generation last);
after each, the mean gain so far is reported as the intermediate value at step k (k metrics done),
and the pruner (median or successive halving) may stop the trial there. So pruning saves the rest
of a bad trial's evaluation (familiarity generation is the costly part), not its training.

The study lives in ``OUT/search.db`` (Optuna RDB storage on SQLite): the same command again
resumes it (``load_if_exists``) and runs only the trials still missing. See ``docs/meta_search.md``.
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from obliviate.errors import ConfigError, TrainingError

__all__ = ["SEARCH_SPACES", "Param", "SearchConfig", "metric_gain", "objective_value", "bound_violations",
           "check_search", "run_search", "best_trial", "final_evaluation", "STUDY_NAME"]

STUDY_NAME = "obliviate-search"


@dataclass(frozen=True)
class Param:
    """One searched setting: ``kind`` float / int / bool / layer (an int range as fractions of depth)."""

    kind: str
    low: float = 0.0
    high: float = 1.0
    log: bool = False


LEARNING_RATE = Param("float", 1e-6, 1e-3, log=True)
EPOCHS = Param("int", 1, 3)
LORA = Param("bool")
RETAIN_WEIGHT = Param("float", 0.1, 100.0, log=True)
STEERED_LAYER = Param("layer", 1 / 6, 2 / 3)  # the depth range meta-search also tries
_TRAIN = {"train.learning_rate": LEARNING_RATE, "train.epochs": EPOCHS, "lora.enabled": LORA}

# The one table of what is searched, per method (``method.X`` = the method's setting X, as --set).
SEARCH_SPACES = {
    "whp": {"labels.alpha": Param("float", 1.0, 30.0, log=True), "labels.soft": Param("bool"),
            "finetune.learning_rate": LEARNING_RATE, "finetune.epochs": EPOCHS, "lora.enabled": LORA},
    "gradient_ascent": dict(_TRAIN),
    "grad_diff": {**_TRAIN, "method.alpha": RETAIN_WEIGHT, "method.gamma": Param("float", 0.1, 10.0, log=True)},
    "kl_retain": {**_TRAIN, "method.alpha": RETAIN_WEIGHT, "method.gamma": Param("float", 0.1, 10.0, log=True)},
    "npo": {**_TRAIN, "method.alpha": RETAIN_WEIGHT, "method.beta": Param("float", 0.01, 1.0, log=True)},
    "simnpo": {**_TRAIN, "method.alpha": RETAIN_WEIGHT, "method.beta": Param("float", 0.5, 5.0, log=True)},
    "rmu": {**_TRAIN, "method.layer": STEERED_LAYER, "method.alpha": Param("float", 1.0, 1000.0, log=True),
            "method.steering_coeff": Param("float", 1.0, 100.0, log=True)},
    "adaptive_rmu": {**_TRAIN, "method.layer": STEERED_LAYER, "method.alpha": Param("float", 1.0, 1000.0, log=True),
                     "method.beta": Param("float", 1.0, 20.0, log=True)},
    "cosine_rmu": {**_TRAIN, "method.layer": STEERED_LAYER, "method.alpha": Param("float", 1.0, 1000.0, log=True)},
    "probe_direction": {**_TRAIN, "method.alpha": RETAIN_WEIGHT,
                        "method.forget_weight": Param("float", 0.1, 10.0, log=True)},
}
PRUNERS = ("median", "successive_halving", "none")
SCORED_FAMILIES = ("token_probability", "cloze")  # retain metrics taken by default: probabilities
# Objective metrics are scored in this order of metric type (one forward pass per prompt first,
# generation last), so that a pruned trial skips the costly ones.
CHEAP_FIRST = ("token_probability", "cloze", "perplexity")
COSTLY_LAST = ("familiarity", "qa", "toxicity")


@dataclass
class SearchConfig:
    """What is searched, on which metrics, under which bounds."""

    method: str = "whp"  # whp or one of obliviate.methods.UNLEARNING_METHODS
    trials: int = 20  # trials of the study in all (a resumed study runs only the missing ones)
    params: list[str] | None = None  # the settings searched, a subset of SEARCH_SPACES[method]; None = all
    suite: str = "harry_potter"  # built-in suite name or suite YAML
    data_dir: str | None = None  # the suite's data folder (default $OBLIVIATE_DATA_DIR)
    objective: list[str] | None = None  # forgetting metrics; None = the suite's forget-group tune metrics
    perplexity_metric: str | None = None  # None = general_perplexity_tune when the suite has it
    max_perplexity_rise: float = 5.0  # %: the trial's perplexity at most this much above the base's
    retain_metrics: list[str] | None = None  # None = the retain-group tune probability/cloze metrics
    max_retain_change: float = 5.0  # %: each retain metric within this much of the base's (either way)
    pruner: str = "median"  # median, successive_halving or none
    seed: int = 0  # TPE sampler seed
    limit: int | None = None  # cap the items of every metric (quick searches)
    ranges: dict | None = None  # {path: [low, high]}: replaces the table's range of a numeric setting


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---- objective maths (pure) ----

def metric_gain(after: float, base: float, higher_is_better: bool | None) -> float:
    """Relative change of a metric in the direction of successful unlearning (positive = better)."""
    change = (after - base) / max(abs(base), 1e-12)
    return change if higher_is_better else -change


def objective_value(after: dict, base: dict, names: list[str]) -> float:
    """Mean :func:`metric_gain` of ``names``; ``after``/``base``: ``{name: metric record}``."""
    gains = [metric_gain(after[n]["value"], base[n]["value"], base[n].get("higher_is_better")) for n in names]
    return sum(gains) / len(gains)


def bound_violations(after: dict, base: dict, search: SearchConfig, perplexity: str | None,
                     retain: list[str]) -> dict:
    """``{metric: constraint}``: relative change minus its bound (<= 0 holds). Perplexity is one-sided
    (only a rise counts), retain metrics two-sided (``|change|``)."""
    out = {}
    if perplexity:
        rise = (after[perplexity]["value"] - base[perplexity]["value"]) / max(abs(base[perplexity]["value"]), 1e-12)
        out[perplexity] = rise - search.max_perplexity_rise / 100
    for name in retain:
        change = (after[name]["value"] - base[name]["value"]) / max(abs(base[name]["value"]), 1e-12)
        out[name] = abs(change) - search.max_retain_change / 100
    return out


# ---- checks, before any work ----

def run_kind(method: str) -> str:
    """``whp`` or ``unlearn`` for a searchable method name."""
    if method not in SEARCH_SPACES:
        raise ConfigError(f"unknown method '{method}' for search: use one of {', '.join(SEARCH_SPACES)}")
    return "whp" if method == "whp" else "unlearn"


def check_search(search: SearchConfig, suite=None) -> dict:
    """Refuse a bad search before any work; returns the metric plan (needs the suite for metric names).

    Returns:
        ``{"space": {path: Param}, "objective", "perplexity", "retain", "tune"}`` (metric names).
    """
    run_kind(search.method)
    if not isinstance(search.trials, int) or search.trials < 1:
        raise ConfigError(f"search trials must be an integer >= 1, not {search.trials!r}")
    space = SEARCH_SPACES[search.method]
    unknown = [p for p in search.params or [] if p not in space]
    if unknown:
        raise ConfigError(f"'{unknown[0]}' is not in the search space of {search.method}: use some of "
                          f"{', '.join(space)}")
    if search.params is not None and not search.params:
        raise ConfigError("--params is empty: name at least one setting to search")
    if search.pruner not in PRUNERS:
        raise ConfigError(f"pruner must be one of {', '.join(PRUNERS)}, not '{search.pruner}'")
    for key in ("max_perplexity_rise", "max_retain_change"):
        value = getattr(search, key)
        if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ConfigError(f"search {key} must be a number >= 0 (percent), not {value!r}")
    space = {p: space[p] for p in (search.params or space)}
    space = {**space, **_ranged(space, search.ranges or {})}
    if suite is None:
        return {"space": space}
    from obliviate.evaluation.halves import half_metrics

    names = {s.name: s for s in suite.metrics}
    tune, heldout = half_metrics(suite, "tune"), set(half_metrics(suite, "heldout"))
    allowed = tune or [n for n in names if n not in heldout]  # a suite without halves: all its metrics

    def named(option: str, given: list[str]) -> list[str]:
        for name in given:
            if name not in names:
                raise ConfigError(f"--{option} names '{name}', not a metric of suite '{suite.name}': use one of "
                                  f"{', '.join(allowed)}")
            if name not in allowed:
                raise ConfigError(f"--{option} names '{name}', which is not in the tune half: a search may read "
                                  f"only {', '.join(allowed)}")
        return list(given)

    objective = named("objective", search.objective) if search.objective is not None else \
        [n for n in allowed if names[n].group == "forget"]
    if not objective:
        raise ConfigError(f"suite '{suite.name}' has no forget-group tune metric: name the objective with --objective")
    if search.perplexity_metric is not None:
        perplexity = named("perplexity-metric", [search.perplexity_metric])[0]
    else:
        perplexity = "general_perplexity_tune" if "general_perplexity_tune" in allowed else None
    retain = named("retain-metrics", search.retain_metrics) if search.retain_metrics is not None else \
        [n for n in allowed if names[n].group == "retain" and names[n].type in SCORED_FAMILIES]
    return {"space": space, "objective": objective, "perplexity": perplexity, "retain": retain, "tune": allowed}


def _check_config_method(config_file, kind: str, method: str) -> None:
    from obliviate.config import load_yaml

    given = load_yaml(config_file).get("method", "whp")
    if given != method:
        raise ConfigError(f"--config '{config_file}' describes a '{given}' run, not '{method}': pass --method "
                          f"{given}, or a config of a {method} run")


def _ranged(space: dict, ranges: dict) -> dict:
    """The searched settings whose range ``ranges`` replaces (``{path: [low, high]}``), checked."""
    out = {}
    for path, bounds in ranges.items():
        if path not in space:
            raise ConfigError(f"--range {path}: not a searched setting; search it (--params) or use one of "
                              f"{', '.join(space)}")
        p = space[path]
        if p.kind == "bool":
            raise ConfigError(f"--range {path}: a true/false setting has no range; fix it with --set instead")
        try:
            low, high = (float(b) for b in bounds)
        except (TypeError, ValueError):
            raise ConfigError(f"--range {path}: give LOW:HIGH as two numbers, not {bounds!r}") from None
        if not (math.isfinite(low) and math.isfinite(high)) or low > high:
            raise ConfigError(f"--range {path}={low:g}:{high:g}: LOW must be at most HIGH")
        if p.kind == "layer" and not 0 <= low <= high <= 1:
            raise ConfigError(f"--range {path}: a layer range is a fraction of the depth, between 0 and 1")
        if p.kind == "int" and (low != int(low) or high != int(high) or low < 1):
            raise ConfigError(f"--range {path}: give whole numbers of at least 1, not {low:g}:{high:g}")
        if p.log and low <= 0:
            raise ConfigError(f"--range {path}: searched on a log scale, so LOW must be above 0")
        out[path] = Param(p.kind, low, high, p.log)
    return out


def _request(search: SearchConfig, config) -> dict:
    """What a study answers, as plain JSON data: a resumed study must answer the same (``trials``,
    ``pruner`` and the ``eval`` section may change between invocations)."""
    from dataclasses import asdict

    from obliviate.config import to_dict
    from obliviate.runs import run_identity

    data = {"search": {k: v for k, v in asdict(search).items() if k not in ("trials", "pruner")},
            "config": {k: v for k, v in run_identity(to_dict(config)).items() if k != "eval"}}
    return json.loads(json.dumps(data, default=str))


def _check_overrides(overrides, space: dict) -> None:
    for item in overrides or ():
        key = item.split("=", 1)[0].strip()
        if key in space:
            raise ConfigError(f"--set {key} is searched: drop it, or leave it out of --params to fix it")


# ---- trials ----

def _sample(trial, space: dict, depth: int | None) -> dict:
    settings = {}
    for path, p in space.items():
        if p.kind == "bool":
            settings[path] = trial.suggest_categorical(path, [False, True])
        elif p.kind == "int":
            settings[path] = trial.suggest_int(path, int(p.low), int(p.high))
        elif p.kind == "layer":
            low = max(0, round(depth * p.low))
            settings[path] = trial.suggest_int(path, low, max(low, min(depth - 1, round(depth * p.high))))
        else:
            settings[path] = trial.suggest_float(path, p.low, p.high, log=p.log)
    return settings


def _options(kind: str, method: str, settings: dict) -> dict:
    """Searched settings as a nested options layer for :func:`obliviate.settings.resolve`."""
    from obliviate.config import merge

    options = {"method": method} if kind == "unlearn" else {}
    for path, value in settings.items():
        parts = path.split(".")
        if kind == "unlearn" and parts[0] == "method":
            parts = ["method_settings", *parts[1:]]
        node = value
        for part in reversed(parts):
            node = {part: node}
        options = merge(options, node)
    return options


def _evaluate(model_spec, suite, names: list[str], trust_remote_code: bool, on_metric=None) -> dict:
    """``{name: metric record}`` of ``names`` (only these run), calling ``on_metric(results)`` after each."""
    import torch

    from obliviate.evaluation import suite as suite_api
    from obliviate.models import load_model

    loaded = load_model(str(model_spec), device="cuda" if torch.cuda.is_available() else "cpu",
                        trust_remote_code=trust_remote_code)
    results = {}
    for name in names:
        evaluation = suite_api.run_suite(loaded.model, loaded.tokenizer, suite, loaded.weights_hash,
                                         model_spec=loaded.spec, only=[name], progress=False)
        record = evaluation["metrics"][name]
        if "skipped" in record:
            raise ConfigError(f"metric '{name}' was skipped ({record['skipped']}): choose metrics that run")
        results[name] = record
        if on_metric:
            on_metric(results)
    return results


def _numbers(results: dict) -> dict:
    return {name: record["value"] for name, record in results.items()}


def best_trial(study):
    """The COMPLETE feasible trial of highest objective, or None (infeasible trials are never chosen)."""
    import optuna

    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE and t.user_attrs.get("feasible")]
    return max(done, key=lambda t: t.value) if done else None


def _trial_record(t) -> dict:
    return {"trial": t.number, "state": t.state.name.lower(), "settings": t.params,
            "objective": t.value if t.value is not None else t.user_attrs.get("partial_objective"),
            "feasible": t.user_attrs.get("feasible"), "constraints": t.user_attrs.get("bounds"),
            "tune_metrics": t.user_attrs.get("metrics", {}), "intermediate": {str(k): v for k, v in
                                                                             t.intermediate_values.items()},
            "seconds": t.user_attrs.get("seconds"), "run": t.user_attrs.get("run"),
            **({"error": t.user_attrs["error"]} if "error" in t.user_attrs else {})}


def write_trials(study, out: Path) -> None:
    """``OUT/trials.jsonl``: one line per finished trial, rewritten whole from the study (atomic)."""
    import optuna

    from obliviate.runs import atomic_write_text

    finished = [t for t in study.trials if t.state != optuna.trial.TrialState.RUNNING]
    atomic_write_text(out / "trials.jsonl", "".join(json.dumps(_trial_record(t)) + "\n" for t in finished))


def _best_yaml(trial, out: Path, kind: str) -> None:
    """``OUT/best.yaml``: the best trial's own config.yaml, loadable by ``obliviate run`` / ``--config``."""
    import yaml

    from obliviate.config import load_yaml
    from obliviate.runs import atomic_write_text

    data = load_yaml(Path(trial.user_attrs["run"]) / "config.yaml")
    data.pop("trust_remote_code", None)
    data = {"method": "whp", **data} if kind == "whp" else data
    header = (f"# best feasible trial {trial.number} of `obliviate search` (objective {trial.value:+.4f} on the tune "
              f"half): obliviate run {out / 'best.yaml'} --out runs/NAME\n")
    atomic_write_text(out / "best.yaml", header + yaml.safe_dump(data, sort_keys=False))


def _make_pruner(name: str):
    import optuna

    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)
    if name == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=2)
    return optuna.pruners.NopPruner()


def run_search(search: SearchConfig, out, *, config_file=None, options: dict | None = None, overrides=(),
               trust_remote_code: bool = False, final: bool = False, pruner=None) -> dict:
    """Run (or resume) the study, write trials.jsonl and best.yaml, and optionally the final evaluation.

    Args:
        search: what to search and how.
        out: the search folder (``search.db``, ``base.json``, ``trials/<n>/``, ``trials.jsonl``, ``best.yaml``).
        config_file, options, overrides: the base run config, as :func:`obliviate.settings.resolve` takes them.
        trust_remote_code: the user's own flag.
        final: evaluate the best trial on both halves afterwards (``final.json``).
        pruner: an Optuna pruner object instead of ``search.pruner`` (tests force one).

    Returns:
        ``{"best": trial number or None, "best_settings", "objective", "trials": [records], "final"}``.

    Raises:
        ConfigError: bad method, parameter, metric or trial count (before any model is loaded).
    """
    from obliviate.evaluation.suite import load_suite
    from obliviate.runs import RunFolder
    from obliviate.settings import resolve

    kind = run_kind(search.method)
    plan = check_search(search)
    _check_overrides(overrides, plan["space"])
    suite = load_suite(search.suite, data_dir=search.data_dir)
    if search.limit is not None:
        suite.limit_items(search.limit)
    plan = check_search(search, suite)
    if config_file:
        _check_config_method(config_file, kind, search.method)
    method_options = {"method": search.method} if kind == "unlearn" else {}
    base_config = resolve(kind, config_file=config_file, options={**(options or {}), **method_options},
                          overrides=overrides, trust_remote_code=trust_remote_code)
    out = Path(out)
    (out / "trials").mkdir(parents=True, exist_ok=True)
    with RunFolder(out).lock():  # one process per search folder: a second one gets one clear error
        return _run_study(search, out, suite, plan, base_config, config_file, options, overrides, trust_remote_code,
                          final, pruner)


def _run_study(search: SearchConfig, out: Path, suite, plan: dict, base_config, config_file, options, overrides,
               trust_remote_code: bool, final: bool, pruner) -> dict:
    """:func:`run_search` once its inputs are checked and the folder is held."""
    import optuna

    from obliviate.runs import atomic_write_json
    from obliviate.settings import resolve, run_classes

    kind = run_kind(search.method)
    _, run_class = run_classes(kind)
    bounds = ([plan["perplexity"]] if plan["perplexity"] else []) + plan["retain"]
    types = {spec.name: spec.type for spec in suite.metrics}
    by_cost = sorted(plan["objective"], key=lambda n: CHEAP_FIRST.index(types[n]) if types[n] in CHEAP_FIRST
                     else len(CHEAP_FIRST) + (types[n] in COSTLY_LAST))  # pruning then skips the costly ones
    names = list(dict.fromkeys(bounds + by_cost))  # bounds first: their values are needed whatever
    _say(f"[search] {search.method}: {search.trials} trials over {', '.join(plan['space'])}; objective "
         f"{', '.join(plan['objective'])}; bounds {plan['perplexity'] or 'none'} <= +{search.max_perplexity_rise:g}%, "
         f"{', '.join(plan['retain']) or 'none'} within {search.max_retain_change:g}%")

    study = optuna.create_study(
        study_name=STUDY_NAME, storage=f"sqlite:///{(out / 'search.db').resolve()}", load_if_exists=True,
        direction="maximize", pruner=pruner or _make_pruner(search.pruner))
    # seeded, and offset by the trials already made, so that a resumed study does not replay the
    # seeded random start-up draws of its first trials (the same settings again)
    study.sampler = optuna.samplers.TPESampler(seed=search.seed + len(study.trials),
                                               n_startup_trials=min(10, search.trials))
    request = _request(search, base_config)
    if study.user_attrs.get("request", request) != request:
        raise ConfigError(f"'{out}' holds a search with other settings (method, space, suite, bounds or base "
                          "config): choose another --out, or delete the folder to start afresh")
    study.set_user_attr("request", request)
    base_path = out / "base.json"
    base = json.loads(base_path.read_text()) if base_path.exists() else {}
    if set(names) - set(base):
        base = {**base, **_evaluate(base_config.model, suite, [n for n in names if n not in base], trust_remote_code)}
        atomic_write_json(base_path, base)
    depth = _depth(base_config) if any(p.kind == "layer" for p in plan["space"].values()) else None

    for stale in [t for t in study.trials if t.state == optuna.trial.TrialState.RUNNING]:
        study.tell(stale.number, state=optuna.trial.TrialState.FAIL)  # a run interrupted mid-trial
        _say(f"[search] trial {stale.number} was interrupted: marked failed, a new trial takes its place")
    reinforced = {}  # whp: the first trial's reinforced model serves every later trial, resumed ones too
    for t in study.trials if kind == "whp" and not base_config.reinforce.model else ():
        if t.user_attrs.get("run") and (Path(t.user_attrs["run"]) / "reinforced").is_dir():
            reinforced["path"] = str(Path(t.user_attrs["run"]) / "reinforced")
            break

    def objective(trial) -> float:
        start = time.perf_counter()
        settings = _sample(trial, plan["space"], depth)
        trial_options = _options(kind, search.method, settings)
        if kind == "whp" and not base_config.reinforce.model and reinforced.get("path"):
            trial_options.setdefault("reinforce", {})["model"] = reinforced["path"]
        config = resolve(kind, config_file=config_file, options={**(options or {}), **trial_options},
                         overrides=overrides, trust_remote_code=trust_remote_code)
        folder = out / "trials" / str(trial.number)
        trial.set_user_attr("run", str(folder.resolve()))
        _say(f"[search] trial {trial.number}: " + " ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                                                            for k, v in settings.items()))
        run = run_class(config, folder)
        try:
            run.run()
        except TrainingError as exc:  # e.g. a non-finite loss at a large learning rate: a bad trial, not a bad search
            trial.set_user_attr("error", str(exc))
            trial.set_user_attr("seconds", round(time.perf_counter() - start, 2))
            _say(f"[search] trial {trial.number} failed: {exc}")
            raise
        if kind == "whp" and not base_config.reinforce.model:
            reinforced.setdefault("path", run.reinforced_path())

        def report(results: dict) -> None:
            trial.set_user_attr("metrics", _numbers(results))
            done = [n for n in plan["objective"] if n in results]
            if not done:
                return
            value = objective_value(results, base, done)
            trial.set_user_attr("partial_objective", value)
            trial.report(value, len(done))
            if trial.should_prune():
                trial.set_user_attr("seconds", round(time.perf_counter() - start, 2))
                _say(f"[search] trial {trial.number} pruned after {len(done)} objective metric(s): {value:+.4f}")
                raise optuna.TrialPruned()

        results = _evaluate(folder, suite, names, trust_remote_code, on_metric=report)
        violations = bound_violations(results, base, search, plan["perplexity"], plan["retain"])
        value = objective_value(results, base, plan["objective"])
        trial.set_user_attr("bounds", violations)
        for name, excess in violations.items():
            trial.set_constraint(name, excess)  # <= 0 holds; the TPE sampler steers away from > 0
        trial.set_user_attr("feasible", all(v <= 0 for v in violations.values()))
        trial.set_user_attr("seconds", round(time.perf_counter() - start, 2))
        broken = [n for n, v in violations.items() if v > 0]
        _say(f"[search] trial {trial.number}: objective {value:+.4f}"
             + (f", infeasible ({', '.join(broken)} out of bounds)" if broken else ", feasible"))
        return value

    # trials that count: finished ones, failed ones included, but not the interrupted (no "error")
    finished = len([t for t in study.trials if t.state != optuna.trial.TrialState.FAIL or "error" in t.user_attrs])
    missing = max(0, search.trials - finished)
    if finished:
        _say(f"[search] resuming study in {out / 'search.db'}: {finished} trial(s) done, {missing} to run")
    study.optimize(objective, n_trials=missing, catch=(TrainingError,), callbacks=[lambda s, t: write_trials(s, out)])
    write_trials(study, out)
    best = best_trial(study)
    if best is None:
        _say("[search] no feasible trial: loosen --max-perplexity-rise / --max-retain-change or run more trials; "
             "no best.yaml written")
    else:
        _best_yaml(best, out, kind)
    result = {"best": best.number if best else None, "best_settings": best.params if best else None,
              "objective": best.value if best else None, "plan": {k: v for k, v in plan.items() if k != "space"},
              "trials": [_trial_record(t) for t in study.trials], "final": None}
    if final and best is not None:
        result["final"] = final_evaluation(out, suite, base_config.model, best, plan, trust_remote_code)
    return result


def _depth(config) -> int:
    """Decoder layers of the run's model (the range of a searched steered layer)."""
    from obliviate.methods._common import decoder_layers
    from obliviate.models import load_model

    return len(decoder_layers(load_model(config.model, trust_remote_code=config.trust_remote_code).model)[1])


def heldout_name(name: str, suite) -> str | None:
    """The held-out counterpart of a tune metric (``X_tune`` -> ``X_heldout``), if the suite has it."""
    names = {s.name for s in suite.metrics}
    twin = name[: -len("_tune")] + "_heldout" if name.endswith("_tune") else None
    return twin if twin in names else None


def final_evaluation(out: Path, suite, base_model: str, best, plan: dict, trust_remote_code: bool) -> dict:
    """The best trial and the base model on both halves, side by side (``OUT/final.json``).

    The only place a search computes held-out metrics; nothing here feeds back into the study.
    """
    from obliviate.runs import atomic_write_json

    tune = list(dict.fromkeys(plan["objective"] + ([plan["perplexity"]] if plan["perplexity"] else [])
                              + plan["retain"]))
    pairs = {name: heldout_name(name, suite) for name in tune}
    names = tune + [h for h in pairs.values() if h]
    models = {"base": base_model, "best": best.user_attrs["run"]}
    values = {label: _numbers(_evaluate(spec, suite, names, trust_remote_code)) for label, spec in models.items()}
    rows = {}
    for name, twin in pairs.items():
        stem = name[: -len("_tune")] if name.endswith("_tune") else name
        rows[stem] = {label: {"tune": values[label][name], "heldout": values[label].get(twin) if twin else None}
                      for label in models}
    final = {"trial": best.number, "settings": best.params, "metrics": rows}
    atomic_write_json(out / "final.json", final)
    return final
