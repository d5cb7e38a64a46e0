"""Read ``metrics.json`` files and turn their evaluations into the rows every table shows.

An EVALUATION is the dict documented in ``docs/formats.md`` (``model``, ``suite``, ``metrics``...).
Group summaries (``forget.mean``...) are the mean value of a group's metrics that are not skipped.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from obliviate.errors import DataError
from obliviate.evaluation.result import FORMAT_VERSION, GROUPS, check_metric_record

__all__ = [
    "GROUPS", "MetricRow", "load_evaluations", "combine", "group_summary", "flat_values",
    "comparison_rows", "change_verdict",
]


def _metrics_file(path: Path) -> Path:
    """The ``metrics.json`` of a run folder or eval folder, or ``path`` itself if it is a file."""
    if path.is_dir():
        path = path / "metrics.json"
    if not path.is_file():
        raise DataError(f"'{path}' not found: pass a run folder, an `obliviate eval --out` folder or a metrics.json "
                        "file (run `obliviate eval` to write one)")
    return path


def load_evaluations(path) -> dict[str, dict]:
    """The evaluations of one ``metrics.json``, labelled as in the file.

    Args:
        path: a run folder, an eval folder (both holding ``metrics.json``) or a ``metrics.json`` file.

    Returns:
        ``{label: EVALUATION}`` in file order.

    Raises:
        DataError: the file is missing, is not JSON, is not in the ``obliviate_metrics`` format,
            holds no evaluation, or a metric has neither a value nor a skipped reason. The message
            names the file.
    """
    file = _metrics_file(Path(path))
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"cannot read '{file}' ({err}); it must be a metrics.json written by `obliviate eval`") from err
    if not isinstance(data, dict) or not isinstance(data.get("evaluations"), dict):
        raise DataError(f"'{file}' is not an obliviate metrics file (no \"evaluations\" object); "
                        "write it with `obliviate eval` (format in docs/formats.md)")
    version = data.get("obliviate_metrics", FORMAT_VERSION)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise DataError(f"'{file}' has metrics format {version!r}, newer than this obliviate reads "
                        f"({FORMAT_VERSION}); upgrade obliviate")
    evaluations = data["evaluations"]
    if not evaluations:
        raise DataError(f"'{file}' holds no evaluation; run `obliviate eval` to add one")
    for label, evaluation in evaluations.items():
        where = f"'{file}', evaluation '{label}'"
        if not isinstance(evaluation, dict) or not isinstance(evaluation.get("metrics"), dict):
            raise DataError(f"{where} has no \"metrics\" object; rewrite the file with `obliviate eval`")
        for name, metric in evaluation["metrics"].items():
            check_metric_record(name, metric, where)
    return dict(evaluations)


def _source_names(files: list[Path]) -> list[str]:
    """Shortest distinct folder names for metrics files: ``run_a``, or ``a/run`` and ``b/run`` if needed.

    The same file given twice gets the same name (`combine` numbers the repeated labels).
    """
    parts = {}
    for path in files:
        path = path.resolve()
        # runs/a/metrics.json -> "a"; results/x.json -> "results/x"
        parts[path] = path.parent.parts if path.name == "metrics.json" else path.parent.parts + (path.stem,)
    depth = 1
    while depth < max(len(p) for p in parts.values()):
        if len({p[-depth:] for p in parts.values()}) == len(parts):
            break
        depth += 1
    return ["/".join(parts[path.resolve()][-depth:]).lstrip("/") for path in files]


def combine(paths) -> dict[str, dict]:
    """The evaluations of several ``metrics.json`` files, with unique readable labels.

    One path keeps the file's labels (``base``, ``unlearned``). Several paths label each evaluation
    ``"<folder name>/<label>"`` (``run_a/unlearned``), with as many parent folders as it takes to
    tell the files apart; an evaluation seen twice gets `` (2)``, `` (3)``... appended.

    Args:
        paths: run folders, eval folders or ``metrics.json`` files, in the order wanted (the first
            evaluation is the reference of comparisons).

    Returns:
        ``{label: EVALUATION}`` in the order of ``paths`` then of each file.

    Raises:
        DataError: no path given, or one of them as in `load_evaluations`.
    """
    paths = [Path(p) for p in paths]
    if not paths:
        raise DataError("no metrics file given: pass at least one run folder or metrics.json")
    loaded = [load_evaluations(p) for p in paths]
    if len(paths) == 1:
        return loaded[0]
    combined: dict[str, dict] = {}
    for source, evaluations in zip(_source_names([_metrics_file(p) for p in paths]), loaded):
        for label, evaluation in evaluations.items():
            name, copy = f"{source}/{label}", 2
            while name in combined:
                name, copy = f"{source}/{label} ({copy})", copy + 1
            combined[name] = evaluation
    return combined


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def group_summary(evaluation: dict) -> dict[str, float]:
    """Mean value of each group's metrics that are not skipped.

    Args:
        evaluation: one EVALUATION.

    Returns:
        ``{"forget.mean": ..., "retain.mean": ..., "utility.mean": ..., "robustness.mean": ...}``,
        leaving out groups with no computed metric (other group names get a summary too).
    """
    values: dict[str, list[float]] = {}
    for metric in evaluation.get("metrics", {}).values():
        if "skipped" not in metric and _is_number(metric.get("value")) and metric.get("group"):
            values.setdefault(metric["group"], []).append(float(metric["value"]))
    ordered = [g for g in GROUPS if g in values] + sorted(g for g in values if g not in GROUPS)
    return {f"{g}.mean": sum(values[g]) / len(values[g]) for g in ordered}


def flat_values(evaluation: dict) -> dict[str, float]:
    """Every computed number of an evaluation by name: metric values, then group summaries.

    Args:
        evaluation: one EVALUATION.

    Returns:
        ``{metric name: value, ..., "forget.mean": ..., ...}``; skipped metrics are left out.
    """
    values = {name: float(m["value"]) for name, m in evaluation.get("metrics", {}).items()
              if "skipped" not in m and _is_number(m.get("value"))}
    values.update(group_summary(evaluation))
    return values


@dataclass
class MetricRow:
    """One row of a comparison: a metric (or group summary) across evaluations.

    Attributes:
        name: metric name, or ``"<group>.mean"`` for a summary.
        group: forget / retain / utility / robustness (None if the metric has none).
        family: metric family (``"summary"`` for group summaries).
        higher_is_better: the direction of a successful unlearning; None when unknown or when
            the metrics of a summary disagree.
        cells: per evaluation, the metric dict (``value``, ``stderr`` or ``skipped``), or None when
            the evaluation lacks it.
    """

    name: str
    group: str | None
    family: str | None
    higher_is_better: bool | None
    cells: list = field(default_factory=list)

    @property
    def is_summary(self) -> bool:
        return self.family == "summary"

    def value(self, index: int) -> float | None:
        """The value in evaluation ``index`` (None when absent or skipped)."""
        cell = self.cells[index]
        if cell is None or "skipped" in cell or not _is_number(cell.get("value")):
            return None
        return float(cell["value"])

    def delta(self, index: int, reference: int = 0) -> float | None:
        """value[index] - value[reference] (None when either is missing)."""
        new, old = self.value(index), self.value(reference)
        return None if new is None or old is None else new - old


def change_verdict(delta: float | None, higher_is_better: bool | None, tolerance: float = 1e-12) -> str | None:
    """``"better"``, ``"worse"`` or ``"same"`` for a change, None if the direction is unknown.

    Args:
        delta: new - reference.
        higher_is_better: the metric's direction (None: unknown).
        tolerance: changes at most this large count as ``"same"``.
    """
    if delta is None or math.isnan(delta):
        return None
    if abs(delta) <= tolerance:
        return "same"
    if higher_is_better is None:
        return None
    return "better" if (delta > 0) == higher_is_better else "worse"


def _group_key(group) -> tuple:
    return (GROUPS.index(group), "") if group in GROUPS else (len(GROUPS), str(group or "~"))


def comparison_rows(evaluations: dict[str, dict], summaries: bool = True) -> list[MetricRow]:
    """Rows for a table of metrics x evaluations, grouped forget, retain, utility, robustness, other.

    Within a group, metrics keep the order they first appear in; the group's summary
    (``forget.mean``...) closes the group.

    Args:
        evaluations: ``{label: EVALUATION}``; the first is the reference.
        summaries: add the group-summary rows.

    Returns:
        The rows, each with one cell per evaluation.
    """
    labels = list(evaluations)
    first_seen: dict[str, dict] = {}
    for evaluation in evaluations.values():
        for name, metric in evaluation.get("metrics", {}).items():
            first_seen.setdefault(name, metric)
    by_group: dict = {}
    for name, metric in first_seen.items():
        by_group.setdefault(metric.get("group"), []).append(name)

    rows = []
    for group in sorted(by_group, key=_group_key):
        directions = set()
        for name in by_group[group]:
            cells = [evaluations[label].get("metrics", {}).get(name) for label in labels]
            direction = next((c["higher_is_better"] for c in cells if c and "higher_is_better" in c), None)
            family = next((c.get("family") for c in cells if c and c.get("family")), None)
            rows.append(MetricRow(name, group, family, direction, cells))
            if any(c and "skipped" not in c for c in cells):
                directions.add(direction)
        if summaries and group:
            cells = []
            for label in labels:
                summary = group_summary(evaluations[label])
                metrics = [m for m in evaluations[label].get("metrics", {}).values() if m.get("group") == group]
                if f"{group}.mean" in summary:
                    cells.append({"value": summary[f"{group}.mean"]})
                elif metrics:
                    cells.append({"skipped": f"every {group} metric is skipped"})
                else:
                    cells.append(None)
            direction = directions.pop() if len(directions) == 1 else None
            rows.append(MetricRow(f"{group}.mean", group, "summary", direction, cells))
    return rows
