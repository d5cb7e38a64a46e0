"""Provenance: ``manifest.json`` says what was removed, how, from which base, with which results."""

from __future__ import annotations

import json
import platform
import time
from importlib import metadata
from pathlib import Path

from obliviate.hashing import file_hash
from obliviate.runs import RunFolder, atomic_write_json

__all__ = ["file_hash", "package_versions", "write_manifest", "manifest_hash", "publish", "add_attacks_to_manifest"]

PACKAGES = ("obliviate", "torch", "transformers", "accelerate", "peft", "safetensors", "tokenizers", "lm_eval")


def package_versions() -> dict:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions


def _cached_weights_hash(folder: RunFolder, spec: str) -> str | None:
    """Weights hash of a model spec, cached in state.json (hashing 500 MB takes a second or two)."""
    from obliviate.models import resolve_model_path, weights_hash

    state = folder.state()
    cache = state.setdefault("weights_hashes", {})
    if spec not in cache:
        cache[spec] = weights_hash(resolve_model_path(spec))
        atomic_write_json(folder.state_path, state)
    return cache[spec]


def write_manifest(folder: RunFolder, *, method: str, base_model: str, config: dict, hashes: dict, removed: str,
                   stages) -> dict:
    """Write ``manifest.json`` from the run folder's state (complete only when every stage is)."""
    state = folder.state()["stages"]
    metrics_path = folder.path / "metrics.json"
    model_dir = folder.path / "model"
    manifest = {
        "obliviate_manifest": 1,
        "complete": all(state.get(s, {}).get("complete") for s in stages),
        "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "removed": removed,
        "method": method,
        "base_model": {"spec": base_model, "weights_sha256": _cached_weights_hash(folder, base_model)},
        "unlearned_model": {"path": "model", "weights_sha256": _cached_weights_hash(folder, str(model_dir))}
        if (model_dir / "config.json").exists() else None,
        "inputs": hashes,
        "hyperparameters": config,
        "stages": {name: {k: v for k, v in info.items() if k not in ("metrics", "complete")}
                   for name, info in state.items()},
        "metrics": json.loads(metrics_path.read_text()) if metrics_path.exists() else None,
        "meta_search": _search_summary(folder.path / "search.json"),
        "attacks": _attacks_summary(folder.path / "attacks" / "attacks.json"),
        "versions": package_versions(),
    }
    atomic_write_json(folder.path / "manifest.json", manifest)
    return manifest


def _search_summary(path: Path) -> dict | None:
    """The settings search that chose this run's settings (``obliviate meta-search``), if any."""
    if not path.exists():
        return None
    search = json.loads(path.read_text())
    return {"file": "search.json", "sha256": file_hash(path), "best": search.get("best"),
            "trials": len(search.get("trials", [])), "objective": search.get("objective")}


def _attacks_summary(path: Path) -> dict | None:
    """The attacks of ``obliviate attack`` on this run (their settings), if any."""
    if not path.is_file():
        return None
    attacks = json.loads(path.read_text())
    return {"file": str(Path("attacks") / path.name), "sha256": file_hash(path), "settings": attacks.get("settings"),
            "models": attacks.get("models")}


def add_attacks_to_manifest(run_dir, attacks_path) -> None:
    """Record ``obliviate attack``'s settings in a finished run's manifest.json (absent: nothing to do)."""
    path = Path(run_dir) / "manifest.json"
    if path.is_file() and Path(attacks_path).resolve().parent == (Path(run_dir) / "attacks").resolve():
        manifest = json.loads(path.read_text())
        manifest["attacks"] = _attacks_summary(Path(attacks_path))
        atomic_write_json(path, manifest)


def manifest_hash(run_dir) -> str | None:
    """sha256 of a run's manifest.json (cited by the model card)."""
    path = Path(run_dir) / "manifest.json"
    return file_hash(path) if path.exists() else None


def publish(folder: RunFolder) -> None:
    """Once a run is complete: the model card in ``model/README.md`` and ``report.html``."""
    from obliviate.reporting import write_model_card, write_report

    if (folder.path / "model").is_dir():
        write_model_card(folder.path)
    write_report(folder.path)
