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
from dataclasses import asdict, dataclass
from pathlib import Path

from obliviate.attacks.gap import gap_table
from obliviate.attacks.plan import AttackPlan, attack_settings_record
from obliviate.errors import SkippedMetric

__all__ = ["FORMAT_VERSION", "Unit", "plan_units", "run_attacks"]

FORMAT_VERSION = 1  # "obliviate_attacks" of attacks.json


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
                            "seed": settings.seed, "schedule": "constant"})
                      for text in plan.texts for lr in settings.learning_rates]
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


def _unattacked(plan: AttackPlan, unit: Unit, model, tokenizer, ctx) -> list[dict]:
    return _metric_records(model, tokenizer, plan.metrics, ctx, {"attack": "none", "variant": "none"})


def _prompt_attack(plan: AttackPlan, unit: Unit, model, tokenizer, ctx) -> list[dict]:
    """The suite's robustness prompts; with TOFU, the forget answers after the original and the paraphrased
    questions (the original ones recorded as the unattacked level)."""
    records = _metric_records(model, tokenizer, plan.prompt_metrics, ctx, {"attack": "prompts", "variant": "prompts"})
    if plan.paraphrases:
        from obliviate.attacks.prompts import answer_probability

        answers = [item.answer for item in plan.paraphrases]
        for attack, variant, questions in (
                ("none", "none", [item.question for item in plan.paraphrases]),
                ("prompts", "paraphrased questions", [item.paraphrased_question for item in plan.paraphrases])):
            records.append({"attack": attack, "variant": variant, "metric": "tofu_forget_answer_prob",
                            "family": "tofu_prompt", "group": "forget", "higher_is_better": False, "n": len(answers),
                            "value": answer_probability(model, tokenizer, questions, answers)})
    return records


def _quantize_attack(plan: AttackPlan, unit: Unit, model, tokenizer, ctx) -> list[dict]:
    from obliviate.attacks.quantize import quantized_copy

    rounded, count = quantized_copy(model, unit.params["scheme"])
    return _metric_records(rounded, tokenizer, plan.metrics, ctx,
                           {"attack": "quantize", "variant": unit.params["scheme"], "matrices": count})


def _probe_attack(plan: AttackPlan, unit: Unit, model, tokenizer, ctx) -> list[dict]:
    from obliviate.attacks.probes import layer_probe_accuracies

    accuracies = layer_probe_accuracies(model, tokenizer, plan.probe_items)
    held_out = 2 * (len(plan.probe_items) // 2)  # a true and a false answer per odd-numbered question
    return [{"attack": "probes", "variant": f"layer {layer}", "layer": layer, "metric": "probe_accuracy",
             "family": "probe", "group": "forget", "value": value, "higher_is_better": False, "n": held_out}
            for layer, value in enumerate(accuracies)]


def _relearn_attack(plan: AttackPlan, unit: Unit, model, tokenizer, ctx) -> list[dict]:
    """One fine-tuning run on a copy (constant learning rate), the metrics at each checkpoint step."""
    import copy

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
            schedule=params["schedule"], desc=f"relearn on {params['text']} text, lr {params['learning_rate']:g}")
    return records


# unit.attack -> run(plan, unit, model, tokenizer, ctx) -> records; each works on copies, never on ``model``
UNIT_RUNNERS = {"none": _unattacked, "prompts": _prompt_attack, "quantize": _quantize_attack,
                "probes": _probe_attack, "relearn": _relearn_attack}


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
    evaluations = sum(len(u.params["steps"]) if u.attack == "relearn" else u.attack != "probes" for u in units)
    print(f"attack: {len(units)} units x {len(plan.models)} models ({', '.join(plan.models)}); "
          f"{evaluations} evaluations of {len(plan.metrics)} metrics per model (fewer: --only, --steps, --limit)",
          file=sys.stderr)
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
                    records = UNIT_RUNNERS[unit.attack](plan, unit, loaded.model, loaded.tokenizer, ctx)
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
