"""Reading text and JSONL data files with errors that name the file and the line."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterator

from obliviate.errors import DataError


def text_lines(path, kind: str, missing_hint: str, format_name: str = "text file") -> list[str]:
    """The lines of a UTF-8 text file, or a DataError that names the file and says what it must be.

    Args:
        path: the file.
        kind: what the file is, for messages ("prompt file").
        missing_hint: what to do when the file is missing.
        format_name: what the file must be ("JSONL file"), for an unreadable one.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{kind} {path} not found; {missing_hint}.")
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"cannot read {kind} {path} ({err}); it must be a UTF-8 {format_name}.") from err


def jsonl_objects(path, kind: str, example: str) -> Iterator[tuple[str, dict]]:
    """Yield ``(where, record)`` for every non-blank line of a JSONL file of objects.

    Args:
        path: the file.
        kind: what the file is, for messages ("prompt file", "QA file").
        example: an example line, shown when a line is not a JSON object.

    Raises:
        DataError: the file is missing or unreadable, or a line is not a JSON object.
    """
    path = Path(path)
    lines = text_lines(path, kind, f"check the path (a JSONL file with lines like {example})", "JSONL file")
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}, line {number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"{where}: invalid JSON ({err.msg}); fix the line so it is one JSON object.") from err
        if not isinstance(record, dict):
            raise DataError(f"{where}: expected a JSON object like {example}.")
        yield where, record


def display_path(path) -> str:
    """A path as text that JSON, YAML and a UTF-8 terminal can all take.

    File names that are not valid UTF-8 (e.g. ``b'caf\\xe9.txt'`` on Linux) come into Python as
    lone surrogates, which no UTF-8 writer can encode; their bytes are written as ``\\xe9``
    escapes instead. Valid names are returned unchanged.

    Args:
        path: a ``str``, ``bytes`` or ``os.PathLike`` path.
    """
    return os.fsencode(path).decode("utf-8", "backslashreplace")
