"""How much of the unlearning gap survives an attack (pure maths, no model).

An attack A that lifts the unlearned model back towards the base may lift the base itself just
as much (plain learning, not relearning). The control is the base under the same attack: the
share of the gap that survives is ``(m(base+A) - m(unlearned+A)) / (m(base) - m(unlearned))``;
1 means the attack left the whole gap, 0 that it closed it, below 0 that the unlearned model
overtook the attacked base. The same against a gold (retain-only) model uses gold for base.
"""

from __future__ import annotations

import math

__all__ = ["surviving_gap", "gap_table"]


def surviving_gap(reference_attacked, unlearned_attacked, reference, unlearned, tolerance: float = 1e-12):
    """Share of the unlearning gap that survives an attack.

    Args:
        reference_attacked: m(reference + A), the base (or gold) model under the attack.
        unlearned_attacked: m(unlearned + A).
        reference: m(reference) without attack.
        unlearned: m(unlearned) without attack.
        tolerance: a gap no larger than this counts as no gap.

    Returns:
        The share, or None where it is undefined: no gap (``reference == unlearned``) or a
        missing or non-finite value.
    """
    values = (reference_attacked, unlearned_attacked, reference, unlearned)
    if any(v is None or isinstance(v, bool) or not math.isfinite(float(v)) for v in values):
        return None
    gap = float(reference) - float(unlearned)
    if abs(gap) <= tolerance:
        return None
    return (float(reference_attacked) - float(unlearned_attacked)) / gap


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
