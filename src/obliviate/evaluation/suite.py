"""Evaluation suites: load a YAML file (or build a suite in code) and run its metrics on a model.

A suite names metrics and their data; each metric type is registered in
``obliviate.evaluation.registry.METRICS`` with its strict spec (unknown keys are errors) and its
compute function. Data paths are relative to the data folder (``--data-dir``). Results follow
``docs/formats.md``.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from obliviate.errors import ConfigError, DataError, SkippedMetric
from obliviate.evaluation.data import default_data_dir, resolve_data_path
from obliviate.evaluation.result import GROUPS, MetricContext, MetricResult

__all__ = ["Suite", "builtin_suites", "load_suite", "make_suite", "compute_metric", "run_suite"]

# Attack metrics that re-run other metrics of the suite on an attacked copy (named in their ``metrics``).
RERUNNING_TYPES = ("relearning", "quantization")
# Keys a suite file may never set: they decide which secret leaves the machine (see load_suite).
COMMAND_LINE_ONLY = {"judge_api_key_env": "--judge-api-key-env"}


@dataclass
class Suite:
    name: str
    metrics: list
    path: str
    data_dir: Path
    sha256: str

    def limit_items(self, limit: int) -> None:
        """Quick runs: cap the items of every metric that has a ``limit`` (recorded in its settings)."""
        if limit < 1:
            raise ConfigError(f"--limit must be at least 1, not {limit}")
        for spec in self.metrics:
            if hasattr(spec, "limit"):
                spec.limit = min(spec.limit or limit, limit)

    def check_only(self, only: list[str] | None) -> None:
        """Refuse metric names (``--only``) that are not in the suite."""
        unknown = sorted(set(only or ()) - {s.name for s in self.metrics})
        if unknown:
            raise ConfigError(f"--only names '{unknown[0]}', not a metric of suite '{self.name}': use one of "
                              f"{', '.join(s.name for s in self.metrics)}")


def builtin_suites() -> dict[str, Path]:
    """Suites shipped with obliviate: ``{name: path}``."""
    from importlib import resources

    folder = Path(str(resources.files("obliviate").joinpath("resources", "suites")))
    return {p.stem: p for p in sorted(folder.glob("*.yaml"))}


def _data_files(spec) -> list[str]:
    """Every data path a spec names: prompt/question/anchor files, then its texts' sources."""
    if hasattr(spec, "data_files"):  # a spec that derives its files (e.g. tofu: folder + split)
        return spec.data_files()
    files = []
    for key, value in asdict(spec).items():
        if key in ("prompts", "data", "anchors") and value:
            files.append(value)
        elif isinstance(value, dict) and "files" in value:
            files.extend(value["files"])
    return files


def _source_files(path: str, data_dir: Path) -> list | None:
    """The files a data path stands for (a file, a texts folder or glob, or a hub split), None when there are none."""
    from obliviate.corpus import expand_sources
    from obliviate.records import is_hub_id, parse_hub_id

    if is_hub_id(path):
        return [parse_hub_id(path)]
    resolved = resolve_data_path(path, data_dir)
    if resolved.is_file():
        return [resolved]
    try:
        return expand_sources([str(resolved)])
    except DataError:
        return None


def _check_spec(spec, where: str, path: str) -> None:
    """Refuse non-finite numbers and broken ``check()`` rules of a spec and its nested settings (Texts)."""
    import dataclasses
    import math

    for f in dataclasses.fields(spec):
        value = getattr(spec, f.name)
        if dataclasses.is_dataclass(value):
            _check_spec(value, where, f"{path}.{f.name}")
        elif isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{where}: '{path}.{f.name}' must be a finite number, not {value!r}")
    for key, holds, rule in spec.check() if hasattr(spec, "check") else ():
        if not holds:
            raise ConfigError(f"{where}: '{path}.{key}' must be {rule}, not {getattr(spec, key)!r}")


def make_suite(name: str, specs: list, data_dir=None, path: str = "", source: bytes = b"") -> Suite:
    """Check metric specs and hash them with their data into a :class:`Suite`.

    Args:
        name: the suite's name.
        specs: spec dataclasses of registered metric types (``registry.METRICS``).
        data_dir: folder the data paths are relative to (default ``$OBLIVIATE_DATA_DIR``, else ``.``).
        path: the suite file, if any (recorded in the evaluation).
        source: the suite file's bytes (part of the hash); specs built in code hash their fields.

    Raises:
        ConfigError: duplicate names, an unknown group, an out-of-range or non-finite number, or a
            relearning or quantization metric naming no other metric.
        DataError: a data file a spec names is missing.
    """
    where = path or f"suite '{name}'"
    names = set()
    for spec in specs:
        if spec.name in names:
            raise ConfigError(f"{where}: two metrics are named '{spec.name}'")
        if spec.group not in GROUPS:
            raise ConfigError(f"{where}: metric '{spec.name}' has group '{spec.group}': use one of {', '.join(GROUPS)}")
        _check_spec(spec, where, spec.name)
        names.add(spec.name)
    for spec in specs:
        if spec.type in RERUNNING_TYPES:
            missing = [m for m in spec.metrics if m not in names or m == spec.name]
            if missing or not spec.metrics:
                raise ConfigError(f"{where}: {spec.type} metric '{spec.name}' must name other metrics of the suite "
                                  f"to re-run (unknown: {', '.join(missing) or 'none given'})")
    from obliviate.corpus import source_sha256

    data_dir = Path(data_dir) if data_dir else default_data_dir() or Path(".")
    files = {f: _source_files(f, data_dir) for s in specs for f in _data_files(s)}
    missing = [f for f, found in files.items() if not found]
    if missing:
        listed = f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}"
        if not path:  # a suite built in code (the end-of-run evaluation): the paths are the user's own
            raise DataError(f"evaluation '{name}' needs files that are missing: {listed}; check these paths")
        raise DataError(f"suite '{name}' needs files missing under data folder '{data_dir}': {listed} "
                        "(set --data-dir)")
    digest = hashlib.sha256(source or json.dumps([asdict(s) for s in specs], sort_keys=True).encode())
    for f in sorted(files):
        digest.update(f.encode())
        for file in files[f]:
            digest.update(bytes.fromhex(source_sha256(file)))
    return Suite(name=name, metrics=list(specs), path=path, data_dir=data_dir, sha256=digest.hexdigest())


def load_suite(path_or_name, data_dir=None) -> Suite:
    """Read and check a suite file (or a built-in suite by name), resolving data files.

    A suite file is someone else's input: it may not name the environment variable whose value is
    sent to a judge as an API key (only ``obliviate eval --judge-api-key-env`` can).

    Raises:
        ConfigError: malformed suite (unknown metric type or key, duplicate names, bad references,
            a key only the command line may set).
        DataError: a data file it names is missing under the data folder.
    """
    from obliviate.config import from_dict, load_yaml
    from obliviate.evaluation.registry import METRICS

    builtin = builtin_suites()
    path = builtin.get(str(path_or_name), Path(path_or_name))
    if not path.is_file():
        raise ConfigError(f"suite '{path_or_name}' not found: give a YAML file or one of {', '.join(builtin)}")
    raw = load_yaml(path)
    unknown = set(raw) - {"name", "description", "metrics"}
    if unknown:
        raise ConfigError(f"{path}: unknown top-level key '{sorted(unknown)[0]}' (expected name, description, metrics)")
    entries = raw.get("metrics")
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{path}: 'metrics' must be a non-empty list")
    specs = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or "type" not in entry or "name" not in entry:
            raise ConfigError(f"{path}: metric {i + 1} needs a 'name' and a 'type'")
        for key, option in COMMAND_LINE_ONLY.items():
            if key in entry:
                raise ConfigError(f"{path}: metric '{entry['name']}' sets {key}, which a suite file may not choose "
                                  f"(it decides which secret is sent to the judge): remove it and pass {option} "
                                  "VAR on the command line")
        metric = METRICS.get(entry["type"])
        if metric is None:
            raise ConfigError(f"{path}: metric '{entry['name']}' has unknown type '{entry['type']}': "
                              f"types are {', '.join(METRICS)}")
        specs.append(from_dict(metric.spec, entry, where=f"metrics.{entry['name']}"))
    return make_suite(raw.get("name", path.stem), specs, data_dir, path=str(path), source=path.read_bytes())


def compute_metric(model, tokenizer, spec, ctx: MetricContext) -> MetricResult:
    """One metric, stamped with its family, group and time (a SkippedMetric becomes a skipped result)."""
    from obliviate.evaluation.registry import METRICS

    metric = METRICS[spec.type]
    start = time.perf_counter()
    try:
        result = metric.compute(model, tokenizer, spec, ctx)
    except SkippedMetric as exc:
        return MetricResult.skip(str(exc), metric.family, spec.group)
    result.family, result.group = metric.family, spec.group
    result.seconds = round(time.perf_counter() - start, 2)
    return result


def _cache_key(weights_hash: str, spec, suite: Suite, ctx: MetricContext) -> str:
    from obliviate import __version__

    payload = {"weights": weights_hash, "spec": asdict(spec), "suite": suite.sha256, "version": __version__,
               "record": "MetricResult", "judge_url": ctx.judge_url}
    if spec.type in RERUNNING_TYPES:
        payload["relearned"] = [asdict(s) for s in suite.metrics if s.name in spec.metrics]
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def run_suite(model, tokenizer, suite: Suite, weights_hash: str, *, model_spec: str = "", use_cache: bool = True,
              progress: bool = True, only: list[str] | None = None, judge_url: str | None = None,
              judge_api_key_env: str | None = None) -> dict:
    """Evaluate a loaded model on a suite.

    Results of a (model weights, metric, suite data) triple are cached under the obliviate cache
    folder, so the baseline is evaluated once however many runs are compared with it.

    Args:
        model: the loaded causal LM.
        tokenizer: its tokenizer.
        suite: from :func:`load_suite` or :func:`make_suite`.
        weights_hash: the model's weights sha256 (recorded, and the cache key).
        model_spec: how the model was named (recorded).
        use_cache: reuse and store cached results.
        progress: show progress bars.
        only: run only these metrics.
        judge_url: LLM judge URL from the user's command line (overrides the suite's).
        judge_api_key_env: environment variable holding the judge's API key, from the user's
            command line; sent only to ``judge_url``.

    Returns:
        An EVALUATION dict (docs/formats.md): ``{"model", "suite", "seconds", "metrics"}``, each
        metric being ``MetricResult.to_json()`` (plus ``"cached": true`` when reused).
    """
    import torch

    from obliviate.models import cache_root
    from obliviate.runs import atomic_write_json

    suite.check_only(only)
    ctx = MetricContext(data_dir=suite.data_dir, device="cuda" if torch.cuda.is_available() else "cpu",
                        progress=progress, specs={s.name: s for s in suite.metrics}, judge_url=judge_url,
                        judge_api_key_env=judge_api_key_env)
    ctx.compute = lambda m, t, s: compute_metric(m, t, s, ctx)  # noqa: E731 (looked up at call time)
    cache = cache_root() / "metric_cache"
    start = time.perf_counter()
    metrics = {}
    ordered = sorted(suite.metrics, key=lambda s: s.type in RERUNNING_TYPES)  # attacks last
    for spec in ordered:
        if only and spec.name not in only:
            continue
        cached = cache / f"{_cache_key(weights_hash, spec, suite, ctx)}.json"
        if use_cache and cached.exists():
            metrics[spec.name] = {**json.loads(cached.read_text()), "cached": True}
            print(f"[{spec.name}] cached result reused", file=sys.stderr)
        else:
            print(f"[{spec.name}] ...", file=sys.stderr, flush=True)
            metrics[spec.name] = compute_metric(model, tokenizer, spec, ctx).to_json()
            if "skipped" in metrics[spec.name]:
                print(f"[{spec.name}] skipped: {metrics[spec.name]['skipped']}", file=sys.stderr)
            elif use_cache:
                atomic_write_json(cached, metrics[spec.name])
        ctx.results[spec.name] = metrics[spec.name]
    metrics = {s.name: metrics[s.name] for s in suite.metrics if s.name in metrics}  # suite order
    return {"model": {"spec": model_spec, "weights_sha256": weights_hash},
            "suite": {"name": suite.name, "path": suite.path, "sha256": suite.sha256},
            "seconds": round(time.perf_counter() - start, 2), "metrics": metrics}
