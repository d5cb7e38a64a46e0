"""Content hashes of files. A bottom-layer module: it imports nothing of obliviate's."""

from __future__ import annotations

import hashlib

__all__ = ["file_hash"]


def file_hash(path) -> str | None:
    """sha256 of a file's bytes (None for no file)."""
    if not path:
        return None
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()
