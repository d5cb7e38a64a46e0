"""Content hashes of files, folders and settings. A bottom-layer module: it imports nothing of obliviate's."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

__all__ = ["file_hash", "file_sha256", "tree_hashes", "settings_hash", "path_signature"]


def file_hash(path) -> str | None:
    """sha256 of a file's bytes (None for no file)."""
    return file_sha256(path) if path else None


_HASHED: dict[tuple, str] = {}  # (path, size, mtime, ctime, inode) -> sha256, for this process


def file_sha256(path) -> str:
    """sha256 of a file's bytes.

    A file is read once per process while it is unchanged (same size, modification and change
    times and inode): a run checks its stages' outputs, writes its manifest and signs the same
    weights, and a 7B model is 14 GB to read each time.
    """
    st = os.stat(path)
    key = (os.path.abspath(path), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
    if key not in _HASHED:
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 22), b""):
                digest.update(chunk)
        _HASHED[key] = digest.hexdigest()
    return _HASHED[key]


def tree_hashes(path) -> dict[str, str]:
    """``{relative path: sha256}`` of every file in a folder (or of one file), sorted."""
    path = Path(path)
    if path.is_file():
        return {path.name: file_sha256(path)}
    return {str(f.relative_to(path)): file_sha256(f) for f in sorted(path.rglob("*")) if f.is_file()}


def settings_hash(data) -> str:
    """sha256 of plain data (a config section) in a canonical JSON form."""
    text = json.dumps(data, sort_keys=True, ensure_ascii=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def path_signature(spec: str) -> str:
    """A cheap fingerprint of a local model path (names, sizes and modification times of its
    files), or of the spec itself when it is not a local path (embedded name, hub id)."""
    path = Path(str(spec)).expanduser()
    if not path.exists():
        return settings_hash(str(spec))
    if (path / "model" / "config.json").is_file() or (path / "model" / "adapter_config.json").is_file():
        path = path / "model"  # a run folder: its model, not its log and reports
    # the model card (README.md) is rewritten when a run is published, and C2PA sidecars (*.c2pa) are
    # added when it is signed: neither is part of the weights
    files = [path] if path.is_file() else sorted(f for f in path.rglob("*") if f.is_file() and f.name != "README.md"
                                                  and not f.name.startswith(".") and f.suffix != ".c2pa")
    return settings_hash([[str(f), f.stat().st_size, f.stat().st_mtime_ns] for f in files])
