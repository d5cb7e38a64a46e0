"""Compare evaluations side by side, and check pass/fail requirements on them.

The first evaluation is the reference (usually ``base``); every other one is compared with it.
Requirement syntax (also in ``docs/compare.md``)::

    [KIND:]KEY OP NUMBER        OP: >=  <=  >  <

    utility.mean>=-0.01         (delta, the default) value - reference value
    delta:utility.mean>=-0.01   the same, explicit
    value:familiarity<=0.1      the value itself
    rel:perplexity<=0.1         relative change (value - reference) / |reference value|

KEY is a metric name or a group summary (``forget.mean``, ``retain.mean``, ``utility.mean``,
``robustness.mean``). A requirement must hold for every evaluation after the first.
"""

from __future__ import annotations

import math
import operator
import re
from dataclasses import dataclass

from obliviate.errors import ConfigError
from obliviate.evaluation.overlap import overlap_notes
from obliviate.reporting.results import change_verdict, comparison_rows, flat_values

__all__ = ["compare_table", "format_number", "Requirement", "parse_requirement", "check_requirements"]

KINDS = ("delta", "value", "rel")
OPERATORS = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt}
EXPECTED_FORM = ("expected [delta:|value:|rel:]KEY OP NUMBER with OP one of >=, <=, >, <, "
                 "e.g. 'utility.mean>=-0.01' or 'value:familiarity<=0.1'")
_REQUIREMENT = re.compile(
    r"^\s*(?:(?P<kind>[A-Za-z]+)\s*:)?\s*(?P<key>[^<>=\s](?:[^<>=]*[^<>=\s])?)\s*"
    r"(?P<op>>=|<=|>|<)\s*(?P<bound>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$"
)


def format_number(x: float | None, signed: bool = False) -> str:
    """Four significant digits (``0.4213``, ``23.46``, ``1.2e-05``); ``+`` on changes."""
    if x is None:
        return ""
    if math.isnan(x):
        return "nan"
    return f"{x:+.4g}" if signed else f"{x:.4g}"


def _value_cell(cell) -> str:
    if cell is None:
        return "-"
    if "skipped" in cell:
        return "skipped"
    text = format_number(float(cell["value"]))
    if isinstance(cell.get("stderr"), (int, float)):
        text += f" ± {format_number(float(cell['stderr']))}"
    return text


def _goal(higher_is_better) -> str:
    return {True: "higher", False: "lower"}.get(higher_is_better, "")


def compare_table(evaluations: dict[str, dict]) -> str:
    """A terminal table of every metric (and group summary) across evaluations.

    Rows are grouped forget / retain / utility / robustness; columns are the evaluations, each one
    after the first followed by its change from the first and whether that change goes the way
    a successful unlearning should (``better`` / ``worse`` / ``same``, from ``higher_is_better``).
    Skipped metrics read ``skipped`` (reasons listed under the table), absent ones ``-``.

    Args:
        evaluations: ``{label: EVALUATION}`` (e.g. from `load_evaluations` or `combine`); the
            first is the reference.

    Returns:
        The table as text, columns aligned, no trailing newline.
    """
    labels = list(evaluations)
    rows = comparison_rows(evaluations)
    header = ["metric", "goal", labels[0]]
    for label in labels[1:]:
        header += [label, "change", ""]
    lines: list[list[str]] = []
    group = object()
    for row in rows:
        if row.group != group:
            group = row.group
            lines.append([str(group or "other")])
        line = ["  " + row.name, _goal(row.higher_is_better), _value_cell(row.cells[0])]
        for i in range(1, len(labels)):
            delta = row.delta(i)
            change = format_number(delta, signed=True) if delta is not None else (
                "n/a" if row.cells[i] is not None or row.cells[0] is not None else "")
            line += [_value_cell(row.cells[i]), change, change_verdict(delta, row.higher_is_better) or ""]
        lines.append(line)

    widths = [max(len(r[c]) for r in [header] + [l for l in lines if len(l) > 1]) for c in range(len(header))]
    widths[0] = max([widths[0]] + [len(l[0]) for l in lines])
    left_aligned = {0, 1} | {c for c in range(len(header)) if c >= 3 and (c - 3) % 3 == 2}  # name, goal, verdicts

    def render(cells: list[str]) -> str:
        out = [cell.ljust(widths[c]) if c in left_aligned else cell.rjust(widths[c]) for c, cell in enumerate(cells)]
        return "  ".join(out).rstrip()

    text = [render(header), "  ".join("-" * w for w in widths).rstrip()]
    text += [render(l) if len(l) > 1 else l[0] for l in lines]
    notes = []
    if len(labels) > 1:
        notes.append(f"change = evaluation - '{labels[0]}'; goal = the direction of a successful unlearning; "
                     "better/worse = the change goes that way or against it")
    for row in rows:
        for label, cell in zip(labels, row.cells):
            if cell and "skipped" in cell and not row.is_summary:
                notes.append(f"skipped: {label} / {row.name}: {cell['skipped']}")
    for label, evaluation in evaluations.items():
        notes += overlap_notes(label, evaluation.get("metrics", {}))
    return "\n".join(text + ([""] + notes if notes else []))


@dataclass(frozen=True)
class Requirement:
    """A pass/fail requirement on one number of every evaluation after the first.

    Attributes:
        key: a metric name or group summary (``utility.mean``).
        op: one of ``>=``, ``<=``, ``>``, ``<``.
        bound: the number compared with.
        kind: ``delta`` (value - reference value, the default), ``value`` (the value itself) or
            ``rel`` ((value - reference) / |reference|).
    """

    key: str
    op: str
    bound: float
    kind: str = "delta"

    def __str__(self) -> str:
        return f"{'' if self.kind == 'delta' else self.kind + ':'}{self.key}{self.op}{format_number(self.bound)}"

    def holds(self, number: float) -> bool:
        return OPERATORS[self.op](number, self.bound)


def parse_requirement(text: str) -> Requirement:
    """Parse ``[delta:|value:|rel:]KEY OP NUMBER`` (spaces allowed around parts).

    Args:
        text: e.g. ``"utility.mean>=-0.01"``, ``"value:familiarity <= 0.1"``, ``"rel:perplexity<0.2"``.

    Returns:
        The `Requirement` (kind ``delta`` when no prefix is given).

    Raises:
        ConfigError: the text does not have that form, or the prefix is not delta, value or rel.
    """
    match = _REQUIREMENT.match(text or "")
    if not match:
        raise ConfigError(f"bad requirement '{text}': {EXPECTED_FORM}")
    kind = (match["kind"] or "delta").lower()
    if kind not in KINDS:
        raise ConfigError(f"bad requirement '{text}': unknown prefix '{match['kind']}:'; {EXPECTED_FORM}")
    return Requirement(key=match["key"], op=match["op"], bound=float(match["bound"]), kind=kind)


def _metric_key(key: str, values: dict, evaluation: dict) -> str:
    """``NAME.value`` is accepted for the metric ``NAME``."""
    if key not in values and key not in evaluation.get("metrics", {}) and key.endswith(".value"):
        return key[: -len(".value")]
    return key


def check_requirements(evaluations: dict[str, dict], requirements) -> list[str]:
    """Check requirements on every evaluation after the first (the reference).

    ``delta`` and ``rel`` requirements compare each later evaluation with the first one; ``value``
    requirements apply to each later evaluation's own value (to the only one if there is one).
    A requirement that cannot be checked (unknown key, skipped or absent metric, a single
    evaluation for a delta) is a failure too, so a gate never passes by accident.

    Args:
        evaluations: ``{label: EVALUATION}``, the reference first.
        requirements: `Requirement` objects or strings for `parse_requirement`.

    Returns:
        One message per failure; empty when every requirement holds (the CLI exits non-zero
        otherwise).

    Raises:
        ConfigError: a requirement string is malformed.
    """
    requirements = [r if isinstance(r, Requirement) else parse_requirement(r) for r in requirements]
    labels = list(evaluations)
    if not labels:
        return ["no evaluation to check: pass a metrics.json with at least one evaluation"]
    flat = {label: flat_values(evaluations[label]) for label in labels}
    known = sorted(set().union(*flat.values(), *(e.get("metrics", {}) for e in evaluations.values())))
    reference = labels[0]
    failures = []
    for req in requirements:
        if req.kind != "value" and len(labels) < 2:
            failures.append(f"{req}: needs two evaluations to compare (only '{reference}' given); "
                            f"use 'value:{req.key}...' for a bound on the value itself")
            continue
        targets = labels[1:] or labels
        for label in targets:
            key = _metric_key(req.key, flat[label], evaluations[label])
            if key not in known:
                failures.append(f"{req}: unknown key '{req.key}'; available keys: {', '.join(known)}")
                break
            needed = [label] if req.kind == "value" else [reference, label]
            missing = [lab for lab in needed if key not in flat[lab]]
            if missing:
                metric = evaluations[missing[0]].get("metrics", {}).get(key)
                why = f"skipped ({metric['skipped']})" if metric and "skipped" in metric else "absent"
                failures.append(f"{req}: '{key}' is {why} in '{missing[0]}', cannot check it")
                continue
            value = flat[label][key]
            if req.kind == "value":
                number, shown = value, f"value {format_number(value)}"
            else:
                old = flat[reference][key]
                delta = value - old
                if req.kind == "delta":
                    number = delta
                    shown = f"change {format_number(delta, True)} ({format_number(old)} -> {format_number(value)})"
                elif old == 0:
                    failures.append(f"{req}: relative change of '{key}' in '{label}' is undefined "
                                    f"(reference '{reference}' is 0); use a delta: requirement")
                    continue
                else:
                    number = delta / abs(old)
                    shown = (f"relative change {format_number(number, True)} "
                             f"({format_number(old)} -> {format_number(value)})")
            if not req.holds(number):
                failures.append(f"{req}: failed for '{label}': {shown} is not {req.op} {format_number(req.bound)}")
    return failures
