"""Where a suite's data files are and how a metric reads its text: shared by every metric family.

Data paths are relative to the data folder (``--data-dir`` or ``$OBLIVIATE_DATA_DIR``);
``obliviate:REL`` names a file shipped in the package's resources; an absolute path is itself.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from obliviate.errors import ConfigError, DataError

__all__ = ["DATA_DIR_ENV", "PACKAGE_PREFIX", "Texts", "resolve_data_path", "default_data_dir", "read_texts",
           "limit_items"]

DATA_DIR_ENV = "OBLIVIATE_DATA_DIR"
PACKAGE_PREFIX = "obliviate:"


@dataclass
class Texts:
    """Text for a metric: files (relative to the data folder) and the share of their text to use."""

    files: list[str] = field(default_factory=list)
    span: list[float] = field(default_factory=lambda: [0.0, 1.0])  # [start, end] fractions of the joined text
    chunk_chars: int = 1500  # chunks: texts are cut into chunks of about this many characters
    max_chunks: int | None = None  # cap on chunks (quick runs)
    split: str = "chunks"  # chunks (of about chunk_chars) | paragraphs (blank-line separated, e.g. WikiText)

    def check(self) -> list[tuple]:
        """Rules of the settings: ``(key, holds, rule)`` (obliviate.config convention)."""
        return [
            ("span", len(self.span) == 2 and 0 <= self.span[0] < self.span[1] <= 1,
             "[start, end] with 0 <= start < end <= 1"),
            ("chunk_chars", self.chunk_chars >= 1, ">= 1"),
            ("max_chunks", self.max_chunks is None or self.max_chunks >= 1, ">= 1 or null"),
            ("split", self.split in ("chunks", "paragraphs"), "chunks or paragraphs"),
        ]


def resolve_data_path(path: str, data_dir: Path) -> Path:
    """A suite data path: ``obliviate:REL`` is a file shipped in the package's resources,
    an absolute path is itself, anything else is relative to the data folder."""
    if str(path).startswith(PACKAGE_PREFIX):
        from importlib import resources

        return Path(str(resources.files("obliviate").joinpath("resources", str(path)[len(PACKAGE_PREFIX):])))
    return Path(data_dir) / path


def default_data_dir() -> Path | None:
    value = os.environ.get(DATA_DIR_ENV)
    return Path(value) if value else None


def _chunks(text: str, chunk_chars: int) -> list[str]:
    chunks, current = [], ""
    for para in text.split("\n"):
        current = f"{current}\n{para}" if current else para
        if len(current) >= chunk_chars:
            chunks.append(current.strip())
            current = ""
    if current.strip():
        chunks.append(current.strip())
    return chunks


def read_texts(texts: Texts, data_dir: Path) -> list[str]:
    """The requested span of the joined files, cut into chunks or paragraphs.

    Raises:
        ConfigError: no files.
        DataError: a file is missing or unreadable, or the span holds no text.
    """
    from obliviate.corpus import read_corpus

    if not texts.files:
        raise ConfigError("a metric needs text files: set texts.files (relative to the data folder)")
    joined = "\n\n".join(read_corpus([str(resolve_data_path(f, data_dir)) for f in texts.files]))
    start, end = (int(len(joined) * x) for x in texts.span)
    joined = joined[start:end]
    if texts.split == "paragraphs":
        chunks = [p.strip() for p in re.split(r"\n\s*\n", joined)]
    else:
        chunks = _chunks(joined, texts.chunk_chars)
    chunks = [c for c in chunks if c]
    if texts.max_chunks:
        chunks = chunks[: texts.max_chunks]
    if not chunks:
        raise DataError(f"no text in span {texts.span} of {', '.join(texts.files)}")
    return chunks


def limit_items(items: list, limit: int | None) -> list:
    """The first ``limit`` items (all of them for None)."""
    return items[:limit] if limit else items
