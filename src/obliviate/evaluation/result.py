"""The one result type of every metric, and the one writer of ``metrics.json`` and ``samples.jsonl``.

Every metric function returns a :class:`MetricResult`; the suite runner stamps it with its family,
group and timing and stores ``result.to_json()`` in an EVALUATION (``docs/formats.md``).
:func:`write_evaluations` is the only code that writes a run's ``metrics.json`` and
``samples.jsonl``; :func:`check_metric_record` is the shape the report, ``compare`` and the model
card rely on. This module imports nothing heavy (no torch), so reporting can use it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from obliviate.errors import DataError, RunFolderError

__all__ = [
    "FORMAT_VERSION", "GROUPS", "REPORTED_ITEM_FIELDS", "MetricResult", "MetricContext",
    "check_metric_record", "samples_rows", "write_evaluations",
]

FORMAT_VERSION = 1  # "obliviate_metrics" of metrics.json
GROUPS = ("forget", "retain", "utility", "robustness")

# Per-item fields that report.html reads, by metric family (docs/formats.md, "Per-item details").
REPORTED_ITEM_FIELDS = {
    "token_probability": ("prompt", "reference", "probability", "tokens"),
    "familiarity": ("prompt", "completion", "familiar", "hits"),
    "toxicity": ("prompt", "prompt_kind", "samples", "scores", "max_toxicity"),
}


@dataclass
class MetricResult:
    """What one metric measured on one model.

    Attributes:
        value: the headline number (None only for a skipped metric).
        higher_is_better: direction of a *successful unlearning* (False for forget metrics such as
            familiarity, True for accuracy on general tasks).
        n: items the value is computed over (prompts, questions, scored tokens...).
        stderr: standard error of ``value`` when the metric has one.
        settings: what produced the number (the spec's fields).
        details: sub-values (per task, per attack...); JSON-serialisable.
        per_item: one dict per scored item; stored as ``details.per_item`` and in samples.jsonl.
        family: the metric family (set by the suite runner from the registry).
        group: forget / retain / utility / robustness (set by the suite runner from the spec).
        seconds: time taken (set by the suite runner).
        skipped: why the metric could not be computed (then ``value`` is None).
    """

    value: float | None
    higher_is_better: bool | None = None
    n: int = 0
    stderr: float | None = None
    settings: dict = field(default_factory=dict)
    details: dict = field(default_factory=dict)
    per_item: list[dict] = field(default_factory=list)
    family: str | None = None
    group: str | None = None
    seconds: float | None = None
    skipped: str | None = None

    @classmethod
    def skip(cls, reason: str, family: str | None = None, group: str | None = None) -> MetricResult:
        """A metric that could not be computed, with the reason."""
        return cls(value=None, family=family, group=group, skipped=reason)

    def to_json(self) -> dict:
        """The metric's record in metrics.json (docs/formats.md); per-items go to ``details.per_item``."""
        if self.skipped is not None:
            return {"family": self.family, "group": self.group, "skipped": self.skipped}
        details = dict(self.details)
        if self.per_item:
            details["per_item"] = self.per_item
        record = {"family": self.family, "group": self.group, "value": self.value,
                  "higher_is_better": self.higher_is_better, "stderr": self.stderr, "n": self.n,
                  "settings": self.settings, "details": details}
        if self.seconds is not None:
            record["seconds"] = self.seconds
        return record

    @classmethod
    def from_json(cls, record: dict) -> MetricResult:
        """The inverse of :meth:`to_json` (keys it does not know, e.g. ``cached``, are dropped)."""
        if "skipped" in record:
            return cls.skip(record["skipped"], record.get("family"), record.get("group"))
        details = dict(record.get("details") or {})
        per_item = details.pop("per_item", None) or []
        return cls(value=record.get("value"), higher_is_better=record.get("higher_is_better"), n=record.get("n", 0),
                   stderr=record.get("stderr"), settings=record.get("settings") or {}, details=details,
                   per_item=per_item, family=record.get("family"), group=record.get("group"),
                   seconds=record.get("seconds"))


@dataclass
class MetricContext:
    """What a metric function gets besides the model and its spec.

    Attributes:
        data_dir: folder the suite's data paths are relative to.
        device: where the model runs ("cpu", "cuda").
        progress: show progress bars.
        specs: every metric spec of the suite by name (the relearning attack re-runs some).
        results: metric records computed so far, by name.
        compute: ``compute(model, tokenizer, spec) -> MetricResult``, the runner's own (relearning).
        judge_url: the LLM judge's URL given on the command line (overrides the suite's).
        judge_api_key_env: environment variable whose value is sent to ``judge_url`` as a bearer
            token. Only the user's command line sets it, never a suite file.
    """

    data_dir: Path
    device: str = "cpu"
    progress: bool = False
    specs: dict = field(default_factory=dict)
    results: dict = field(default_factory=dict)
    compute: Callable | None = None
    judge_url: str | None = None
    judge_api_key_env: str | None = None


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_metric_record(name: str, record, where: str, strict: bool = False) -> None:
    """Check one metric record of metrics.json.

    Args:
        name: the metric's name.
        record: its record.
        where: the file and evaluation, for the message.
        strict: check the whole shape ``MetricResult.to_json`` writes (family, group, direction,
            n, settings, details, the per-item fields the report reads); otherwise only what every
            reader needs (a numeric ``value`` or a ``skipped`` reason), so older files still load.

    Raises:
        DataError: the record does not have that shape; the message names the metric.
    """
    def bad(what: str):
        return DataError(f"{where}: metric '{name}' {what}; rewrite the file with `obliviate eval`")

    if not isinstance(record, dict):
        raise bad("must be a JSON object")
    if "skipped" in record:
        if strict and not (isinstance(record["skipped"], str) and record["skipped"]):
            raise bad("has an empty \"skipped\" reason")
        return
    if not _is_number(record.get("value")) or math.isnan(record["value"]):
        raise bad("has neither a numeric \"value\" nor a \"skipped\" reason")
    if not strict:
        return
    if not isinstance(record.get("family"), str) or record.get("group") not in GROUPS:
        raise bad(f"needs a \"family\" and a \"group\" (one of {', '.join(GROUPS)})")
    if not isinstance(record.get("higher_is_better"), bool):
        raise bad("needs \"higher_is_better\": true or false")
    if isinstance(record.get("n"), bool) or not isinstance(record.get("n"), int) or record["n"] < 1:
        raise bad("needs \"n\", the number of items scored (at least 1)")
    if record.get("stderr") is not None and not _is_number(record["stderr"]):
        raise bad("has a non-numeric \"stderr\"")
    if not isinstance(record.get("settings"), dict) or not isinstance(record.get("details"), dict):
        raise bad("needs \"settings\" and \"details\" objects")
    per_item = record["details"].get("per_item", [])
    if not isinstance(per_item, list) or not all(isinstance(item, dict) for item in per_item):
        raise bad("has a \"details.per_item\" that is not a list of objects")
    needed = REPORTED_ITEM_FIELDS.get(record["family"], ())
    if needed and not per_item:
        raise bad(f"({record['family']}) has no details.per_item, which the report shows")
    for index, item in enumerate(per_item):
        missing = [key for key in needed if key not in item]
        if missing:
            raise bad(f"item {index} lacks {', '.join(missing)}, which the report reads")
    if record["family"] == "token_probability":
        for item in per_item:
            tokens = item["tokens"]
            if not tokens or not all(isinstance(t, dict) and isinstance(t.get("token"), str)
                                     and _is_number(t.get("probability")) for t in tokens):
                raise bad("has per-item \"tokens\" that are not [{\"token\", \"probability\"}, ...]")


def samples_rows(label: str, evaluation: dict) -> list[dict]:
    """Rows of samples.jsonl for one evaluation: ``{"evaluation", "metric", "index", **item}``."""
    rows = []
    for name, metric in evaluation.get("metrics", {}).items():
        for index, item in enumerate((metric.get("details") or {}).get("per_item") or []):
            rows.append({"evaluation": label, "metric": name, "index": index, **item})
    return rows


def write_evaluations(folder, evaluations: dict[str, dict]) -> tuple[Path, Path]:
    """Write ``metrics.json`` and ``samples.jsonl`` of ``{label: EVALUATION}`` into ``folder``.

    The only writer of these two files (``obliviate eval``, the pipelines' end-of-run evaluation).
    Both are written atomically.

    Args:
        folder: the run folder or ``obliviate eval --out`` folder (created if needed).
        evaluations: ``{label: EVALUATION}`` as ``run_suite`` returns them, in display order.

    Returns:
        The paths of metrics.json and samples.jsonl.

    Raises:
        RunFolderError: ``folder`` is a file, or the files cannot be written (read-only, disk full).
    """
    from obliviate.runs import atomic_write_json, atomic_write_text

    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise RunFolderError(f"'{folder}' is a file: give a folder for metrics.json and samples.jsonl")
    metrics_path, samples_path = folder / "metrics.json", folder / "samples.jsonl"
    rows = [row for label, evaluation in evaluations.items() for row in samples_rows(label, evaluation)]
    try:
        atomic_write_json(metrics_path, {"obliviate_metrics": FORMAT_VERSION, "evaluations": evaluations})
        atomic_write_text(samples_path, "".join(json.dumps(row, default=str) + "\n" for row in rows))
    except OSError as err:
        raise RunFolderError(f"cannot write the evaluation into '{folder}' ({err.strerror or err}): check that the "
                             "folder is writable and the disk has room") from err
    return metrics_path, samples_path
