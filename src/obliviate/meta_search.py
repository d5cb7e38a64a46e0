"""Meta-learned settings for the RMU family: an outer search over the settings that matter.

Our design after Atil, Gupta & Passonneau 2026 (arXiv 2605.26454). Only the paper's abstract is
available to us, so this is not a reproduction: the abstract says the best unlearning objective
differs between language functions, so we let short unlearning runs choose the steering layer,
the retain weight ``alpha`` (and the steering coefficient of the methods that have one) and the
learning rate, instead of fixing them by hand. See ``docs/meta_search.md``.

Each candidate setting is one inner run: a fresh copy of the base model, trained for a few
optimizer steps by the one loop (:func:`obliviate.train.train`) with the method built by
:func:`obliviate.methods.make_method`, then scored on HELD-OUT forget and retain blocks (blocks the
inner runs never train on):

    forget_term = (NLL_forget_after - NLL_forget_base) / NLL_forget_base
    retain_term = max(0, (NLL_retain_after - NLL_retain_base) / NLL_retain_base)
    score       = forget_term - retain_penalty * retain_term            (higher is better)

NLL is the token-weighted mean next-token NLL. The forget term is measured on the model's output,
not on the steered layer's activations, so scores are comparable across layers and methods (a
cosine or MSE at layer 3 says nothing about one at layer 9).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from obliviate.config import to_dict
from obliviate.corpus import Blocks
from obliviate.errors import ConfigError, RunFolderError, TrainingError
from obliviate.methods import METHODS, UNLEARNING_METHODS, make_method, uses_retain
from obliviate.methods._common import check_choice, check_layer, check_layer_setting, check_setting, decoder_layers
from obliviate.runs import RunFolder, atomic_write_json, is_main_process, run_identity
from obliviate.train import TrainConfig, train
from obliviate.unlearn import UnlearnConfig, UnlearnRun, mean_nll, pair_examples, prepare_unlearning

# The method setting searched by MetaSearchConfig.coefficients, per method: each method class's
# `search_coefficient` fact (cosine RMU has none: its 1 - cos forget term is blind to the activation norm).
COEFFICIENT_SETTINGS = {name: cls.search_coefficient for name, (cls, _) in METHODS.items()
                        if cls.unlearning and cls.search_coefficient}
STRATEGIES = ("random", "successive_halving")
MAX_RUNGS = 3  # successive halving starts at inner_steps/4 at the shortest
OBJECTIVE = ("score = forget_term - retain_penalty * retain_term, on held-out blocks the inner runs never train on; "
             "forget_term = relative rise of the held-out forget NLL over the base model's; "
             "retain_term = relative rise of the held-out retain NLL over the base model's, clamped at 0 below; "
             "NLL = token-weighted mean next-token NLL (comparable across layers and methods)")


@dataclass
class MetaSearchConfig:
    """What the outer loop searches, how long each inner run is, and how candidates are culled."""

    trials: int = 8  # candidate settings sampled from the grid (all of it when the grid is smaller)
    inner_steps: int = 20  # optimizer steps of a full inner run (the last rung of successive halving)
    layers: list[int] | None = None  # steered layers tried; None = 3-4 spread over the first two thirds of the depth
    alphas: list[float] = field(default_factory=lambda: [1.0, 10.0, 100.0])  # retain weights tried
    learning_rates: list[float] = field(default_factory=lambda: [1e-5, 5e-5, 1e-4])  # AdamW peak rates tried
    # steering coefficients tried (rmu: steering_coeff, adaptive_rmu: beta); None = the method's setting
    coefficients: list[float] | None = None
    retain_penalty: float = 1.0  # weight of the retain term in the score
    # "random": every candidate runs inner_steps; "successive_halving": all candidates run a short
    # inner run, the better half re-runs with twice the steps, ... up to inner_steps (at most 3 rungs)
    strategy: str = "successive_halving"
    seed: int = 0  # which candidates are sampled, and the set-up seed of every inner run (LoRA initialisation)

    def __post_init__(self):
        check_setting("search.trials", self.trials, minimum=1, integer=True)
        check_setting("search.inner_steps", self.inner_steps, minimum=1, integer=True)
        for name, values in (("layers", self.layers), ("alphas", self.alphas),
                             ("learning_rates", self.learning_rates), ("coefficients", self.coefficients)):
            if values is not None and not values:
                raise ConfigError(f"search.{name} is empty: give at least one value, or leave it unset for the "
                                  "default")
        for i, layer in enumerate(self.layers or []):
            check_layer_setting(f"search.layers[{i}]", layer)
        for i, alpha in enumerate(self.alphas or []):
            check_setting(f"search.alphas[{i}]", alpha, minimum=0)
        for i, rate in enumerate(self.learning_rates or []):
            check_setting(f"search.learning_rates[{i}]", rate, above=0)
        for i, coefficient in enumerate(self.coefficients or []):
            check_setting(f"search.coefficients[{i}]", coefficient, above=0)
        check_setting("search.retain_penalty", self.retain_penalty, minimum=0)
        check_choice("search.strategy", self.strategy, STRATEGIES)


def searchable_methods() -> list[str]:
    """Unlearning methods whose config has both a ``layer`` and an ``alpha`` setting."""
    return [name for name in UNLEARNING_METHODS
            if {"layer", "alpha"} <= {f.name for f in dataclasses.fields(METHODS[name][1])}]


def check_search(method: str, search: MetaSearchConfig) -> None:
    """Raise ConfigError for a method the search cannot tune (the search's own settings are checked when built)."""
    if method not in UNLEARNING_METHODS:
        make_method(method)  # raises the unknown-method error
    if method not in searchable_methods():
        raise ConfigError(f"method '{method}' has no layer/alpha settings to search: meta-search tunes the steered "
                          f"layer and retain weight, so use one of {', '.join(searchable_methods())}")
    if search.coefficients and method not in COEFFICIENT_SETTINGS:
        raise ConfigError(f"method '{method}' has no steering coefficient: drop search.coefficients "
                          f"(it applies to {', '.join(COEFFICIENT_SETTINGS)})")


def default_layers(depth: int) -> list[int]:
    """3-4 layers spread over the first two thirds of a ``depth``-layer model (1/6, 1/3, 1/2, 2/3)."""
    return sorted({min(depth - 1, round(depth * k / 6)) for k in (1, 2, 3, 4)})


def candidate_grid(search: MetaSearchConfig, layers: list[int], coefficient: str | None) -> list[dict]:
    """``search.trials`` seeded samples of layer x alpha (x coefficient) x learning rate.

    Returns:
        ``[{"settings": {"layer", "alpha"[, coefficient]}, "learning_rate": lr}]``; the whole grid
        (in a seeded order) when it has no more than ``search.trials`` points.
    """
    coefficients = search.coefficients if coefficient and search.coefficients else [None]
    grid = []
    for layer in layers:
        for alpha in search.alphas:
            for coef in coefficients:
                for lr in search.learning_rates:
                    settings = {"layer": int(layer), "alpha": float(alpha)}
                    if coef is not None:
                        settings[coefficient] = float(coef)
                    grid.append({"settings": settings, "learning_rate": float(lr)})
    rng = random.Random(search.seed)
    return rng.sample(grid, min(search.trials, len(grid)))


def halving_schedule(candidates: int, inner_steps: int, strategy: str) -> list[tuple[int, int]]:
    """``[(candidates run, steps each)]`` per rung; the last rung always runs ``inner_steps``.

    Successive halving (eta = 2) keeps the better half (rounded up) for the next rung and doubles
    the steps; rungs are at most MAX_RUNGS, and no more than candidates and steps allow halving.
    """
    if strategy == "random":
        return [(candidates, inner_steps)]
    rungs = min(MAX_RUNGS, int(math.log2(candidates)) + 1, int(math.log2(inner_steps)) + 1)
    schedule, n = [], candidates
    for r in range(rungs):
        schedule.append((n, max(1, inner_steps // 2 ** (rungs - 1 - r))))
        n = math.ceil(n / 2)
    return schedule


def relative_rise(after: float, before: float) -> float:
    """``(after - before) / before``: how much a held-out NLL rose, as a share of the base model's."""
    return (after - before) / max(abs(before), 1e-12)


def heldout_score(base: dict, after: dict, retain_penalty: float) -> dict:
    """The search objective from held-out NLLs ``{"forget": nll, "retain": nll}`` (see the module doc)."""
    forget_term = relative_rise(after["forget"], base["forget"])
    retain_term = max(0.0, relative_rise(after["retain"], base["retain"]))
    return {"forget_term": forget_term, "retain_term": retain_term,
            "score": forget_term - retain_penalty * retain_term}


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def format_settings(settings: dict, learning_rate: float | None = None) -> str:
    """``layer=3 alpha=10 lr=1e-05``: a candidate's settings on one line."""
    text = " ".join(f"{k}={v:g}" for k, v in settings.items())
    return text + (f" lr={learning_rate:g}" if learning_rate is not None else "")


def meta_search(base_model, tokenizer, forget_blocks: Blocks, retain_blocks: Blocks, method: str = "cosine_rmu",
                search: MetaSearchConfig | None = None, base_settings: dict | None = None,
                train_config: TrainConfig | None = None, log=None, *, lora=None,
                trust_remote_code: bool = False) -> dict:
    """Search a layer/alpha method's settings by short inner runs scored on held-out text.

    Args:
        base_model: a model spec (loaded once) or a loaded HF causal LM; it is never trained: every
            inner run trains a deep copy.
        tokenizer: the model's tokenizer (for its pad token).
        forget_blocks: forget blocks; inner runs train on ``.train``, the score uses ``.heldout``.
        retain_blocks: retain blocks, split the same way.
        method: an unlearning method with ``layer`` and ``alpha`` settings (rmu, adaptive_rmu, cosine_rmu).
        search: the search space and budget.
        base_settings: the method's other settings (its ``layer``/``alpha`` are replaced by the search's).
        train_config: optimisation settings of the inner runs (learning rate and steps are the search's).
        log: callable taking one dict per finished inner run (e.g. ``RunFolder.log``).
        lora: LoraSettings of the final run, mirrored by the inner runs (None = full fine-tuning).
        trust_remote_code: passed to the model loader when ``base_model`` is a spec.

    Returns:
        ``{"best": {settings..., "learning_rate"}, "best_trial", "trials": [...], "objective",
        "heldout": {"forget_blocks", "retain_blocks"}, "schedule", "search", "method", "base_nll", "seconds"}``.

    Raises:
        ConfigError: the method has no layer/alpha settings, a bad search config, or a corpus too
            small to hold out forget and retain blocks.
        TrainingError: every inner run failed.
    """
    import torch

    search = search or MetaSearchConfig()
    train_config = train_config or TrainConfig()
    base_settings = dict(base_settings or {})
    log = log or (lambda record: None)
    check_search(method, search)
    make_method(method, base_settings)  # a bad base setting fails now, not after loading the model
    if not forget_blocks.heldout or not retain_blocks or not retain_blocks.heldout:
        raise ConfigError("meta-search scores on held-out forget and retain blocks, and one side has none: give "
                          "more text or raise forget.heldout_fraction / retain.heldout_fraction")
    start = time.perf_counter()
    if isinstance(base_model, (str, Path)):
        from obliviate.models import load_model

        device = "cuda" if torch.cuda.is_available() else "cpu"
        base_model = load_model(str(base_model), device=device, trust_remote_code=trust_remote_code).model
    base_model.eval()
    pad, batch_size = tokenizer.pad_token_id, train_config.batch_size
    heldout = {"forget": forget_blocks.heldout, "retain": retain_blocks.heldout}

    def heldout_nll(model) -> dict:
        return {part: mean_nll(model, blocks, pad, batch_size) for part, blocks in heldout.items()}

    layers = search.layers if search.layers is not None else default_layers(len(decoder_layers(base_model)[1]))
    for layer in layers:
        check_layer(base_model, layer, key="search.layers")
    base_nll = heldout_nll(base_model)
    coefficient = COEFFICIENT_SETTINGS.get(method)
    replaced = sorted(set(base_settings) & {"layer", "alpha", *([coefficient] if search.coefficients else [])})
    if replaced:
        _say(f"[meta-search] method.{', method.'.join(replaced)} from the config are replaced by the searched values")
    candidates = candidate_grid(search, layers, coefficient)
    schedule = halving_schedule(len(candidates), search.inner_steps, search.strategy)
    total_runs = sum(n for n, _ in schedule)
    _say(f"[meta-search] {method}: {len(candidates)} candidates, {total_runs} inner runs "
         f"({', '.join(f'{n} x {s} steps' for n, s in schedule)}); held-out blocks: "
         f"{len(heldout['forget'])} forget, {len(heldout['retain'])} retain")

    trials: list[dict] = []
    alive = list(range(len(candidates)))
    for rung, (_, steps) in enumerate(schedule):
        results = {}
        for index in alive:
            candidate = candidates[index]
            trial = _inner_run(base_model, tokenizer, forget_blocks, retain_blocks, method,
                               {**base_settings, **candidate["settings"]}, candidate["learning_rate"], steps,
                               train_config, lora, search.seed, heldout_nll, base_nll, search.retain_penalty)
            trial = {"trial": len(trials), "candidate": index, "rung": rung, "settings": candidate["settings"],
                     "learning_rate": candidate["learning_rate"], **trial}
            trials.append(trial)
            results[index] = trial
            scored = (f"forget {trial['forget_term']:+.4f} retain {trial['retain_term']:+.4f} "
                      f"score {trial['score']:+.4f}") if trial["score"] is not None else f"failed: {trial['error']}"
            _say(f"[meta-search] trial {len(trials)}/{total_runs} (rung {rung + 1}/{len(schedule)}, {steps} steps) "
                 f"{format_settings(candidate['settings'], candidate['learning_rate'])}: {scored} "
                 f"({trial['seconds']:.1f}s)")
            log({"event": "meta_trial", **trial})
        ranked = sorted(alive, key=lambda i: _rank_key(results[i]), reverse=True)
        if rung + 1 < len(schedule):
            alive = ranked[:schedule[rung + 1][0]]
    final = [t for t in trials if t["rung"] == len(schedule) - 1 and t["score"] is not None]
    if not final:
        raise TrainingError("meta-search: every inner run of the last rung failed: lower search.learning_rates")
    best = max(final, key=_rank_key)
    return {"method": method, "best": {**best["settings"], "learning_rate": best["learning_rate"]},
            "best_trial": best["trial"], "best_score": best["score"], "objective": OBJECTIVE,
            "heldout": {"forget_blocks": len(heldout["forget"]), "retain_blocks": len(heldout["retain"]),
                        "note": "inner runs train on the training split only and are scored on the held-out "
                                "split; the final run's held-out NLLs use the same blocks, so they are optimistic"},
            "base_nll": base_nll, "schedule": [{"candidates": n, "steps": s} for n, s in schedule],
            "search": to_dict(search), "layers": list(layers), "trials": trials,
            "seconds": round(time.perf_counter() - start, 2)}


def _rank_key(trial: dict) -> float:
    return trial["score"] if trial["score"] is not None else -math.inf


def _inner_run(base_model, tokenizer, forget_blocks, retain_blocks, method_name, settings, learning_rate, steps,
               train_config, lora, seed, heldout_nll, base_nll, retain_penalty) -> dict:
    """One inner run from a fresh copy of the base model; returns its held-out score (score None if it failed)."""
    import torch

    from obliviate.lora import LoraSettings

    start = time.perf_counter()
    method = make_method(method_name, settings)
    model = copy.deepcopy(base_model)
    torch.manual_seed(seed)
    model = prepare_unlearning(model, tokenizer, method, lora or LoraSettings())
    retain = retain_blocks.train if uses_retain(method_name, method.config) else None
    config = dataclasses.replace(train_config, learning_rate=learning_rate, max_steps=steps, eval_every=0,
                                 checkpoint_every=0, report_to=[])  # only the final run reports to trackers
    try:
        result = train(model, method, pair_examples(forget_blocks.train, retain), config,
                       pad_id=tokenizer.pad_token_id, desc=f"meta-search {method_name}")
    except TrainingError as exc:
        return {"steps": 0, "forget_nll": None, "retain_nll": None, "forget_term": None, "retain_term": None,
                "score": None, "error": str(exc), "seconds": round(time.perf_counter() - start, 2)}
    nll = heldout_nll(model)
    del model, method
    return {"steps": result.steps, "forget_nll": nll["forget"], "retain_nll": nll["retain"],
            **heldout_score(base_nll, nll, retain_penalty),
            "train_loss": result.history[-1]["loss"] if result.history else None,
            "seconds": round(time.perf_counter() - start, 2)}


def best_config(config: UnlearnConfig, best: dict) -> UnlearnConfig:
    """A copy of ``config`` with the search's best settings and learning rate."""
    settings = {k: v for k, v in best.items() if k != "learning_rate"}
    return dataclasses.replace(config, method_settings={**config.method_settings, **settings},
                               train=dataclasses.replace(config.train, learning_rate=best["learning_rate"]))


def _request(config: UnlearnConfig, search: MetaSearchConfig) -> dict:
    """What a search depends on, as plain JSON data (the eval section may change between invocations)."""
    data = {"config": run_identity(to_dict(config)), "search": to_dict(search)}
    return json.loads(json.dumps(data, default=str))


def run_meta_search(config: UnlearnConfig, search: MetaSearchConfig, out, overwrite: bool = False) -> dict:
    """Search the settings, then run the whole unlearning pipeline with the best ones in ``out``.

    The run folder is an ordinary ``obliviate unlearn`` folder whose ``config.yaml`` holds the best
    settings (``method_settings`` and ``train.learning_rate``), plus ``search.json``: every inner
    run, the objective and the held-out block counts. The folder is created only once the search is
    done, then ``search.json`` is written (atomically) before the final run starts, so running the
    same command again reuses the search and resumes the run; a different search or base config in
    the same folder is an error unless ``overwrite``.

    Returns:
        The search result (as in :func:`meta_search`, with the ``request`` it answered).

    Raises:
        ConfigError: see :func:`meta_search`. RunFolderError: ``out`` holds something else.
    """
    run = UnlearnRun(config, out)  # checks method, settings and corpora
    config = run.config  # paths made absolute, values in their declared types: what the final run records
    check_search(config.method, search)
    folder = RunFolder(out)
    search_path = folder.path / "search.json"
    request = _request(config, search)
    previous = json.loads(search_path.read_text()) if search_path.exists() else None
    if previous is not None and previous.get("request") == request:
        _say(f"[meta-search] already complete in {folder.path}: reusing its best settings")
        result = previous
    else:
        if folder.path.exists() and any(folder.path.iterdir()) and not overwrite:
            raise RunFolderError(f"'{folder.path}' holds a different run (not this meta-search): choose another "
                                 "--out, or pass --overwrite to start this one afresh")
        blocks = run.blocks()
        result = meta_search(config.model, run.tokenizer(), blocks["forget"], blocks["retain"], config.method,
                             search, config.method_settings, config.train, lora=config.lora,
                             trust_remote_code=config.trust_remote_code)
        result["request"] = request
    final_config = best_config(config, result["best"])
    with folder.lock():  # from here on the folder is written: one process at a time
        folder.init(to_dict(final_config), overwrite=overwrite, kind=UnlearnRun.KIND)
        if result is not previous and is_main_process():
            atomic_write_json(search_path, result)
            folder.log({"event": "meta_search", "best": result["best"], "best_score": result["best_score"],
                        "inner_runs": len(result["trials"]), "seconds": result["seconds"]})
        settings = {k: v for k, v in result["best"].items() if k != "learning_rate"}
        _say(f"[meta-search] best: {format_settings(settings, result['best']['learning_rate'])} "
             f"(score {result['best_score']:+.4f}); final run with these settings")
        UnlearnRun(final_config, out).run()
    return result


__all__ = ["MetaSearchConfig", "meta_search", "run_meta_search", "best_config", "heldout_score", "relative_rise",
           "format_settings",
           "halving_schedule", "candidate_grid", "default_layers", "searchable_methods", "COEFFICIENT_SETTINGS",
           "OBJECTIVE"]
