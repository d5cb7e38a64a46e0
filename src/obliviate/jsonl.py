"""Reading text and JSONL data files with errors that name the file and the line."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterator

from obliviate.errors import DataError


def read_bytes(path, kind: str) -> bytes:
    """A file's bytes, or a DataError that names the file and says what to do.

    Args:
        path: the file.
        kind: what the file is, for messages ("corpus file").
    """
    path = Path(path)
    shown = display_path(path)
    if path.is_dir():
        raise DataError(f"{kind} {shown} is a folder, not a file; give the path of a file.")
    if not path.exists():
        raise DataError(f"{kind} {shown} not found; check the path.")
    try:
        return path.read_bytes()
    except PermissionError as err:
        raise DataError(f"cannot read {kind} {shown} (permission denied); check its permissions.") from err
    except OSError as err:
        raise DataError(f"cannot read {kind} {shown} ({err.strerror or err}); check the file.") from err


def text_lines(path, kind: str, missing_hint: str, format_name: str = "text file") -> list[str]:
    """The lines of a UTF-8 text file, or a DataError that names the file and says what it must be.

    Args:
        path: the file.
        kind: what the file is, for messages ("prompt file").
        missing_hint: what to do when the file is missing.
        format_name: what the file must be ("JSONL file"), for an unreadable one.
    """
    path = Path(path)
    shown = display_path(path)
    if not path.exists():
        raise DataError(f"{kind} {shown} not found; {missing_hint}.")
    raw = read_bytes(path, kind)
    if b"\x00" in raw[:8192]:
        raise DataError(f"{kind} {shown} looks like a binary file; it must be a UTF-8 {format_name}.")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise DataError(f"{kind} {shown} is not valid UTF-8 (byte {err.start}); it must be a UTF-8 {format_name} "
                        "(convert it, e.g. `iconv -f latin1 -t utf-8`).") from err
    return text.lstrip("\ufeff").splitlines()


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
        where = f"{display_path(path)}, line {number}"
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


def check_output_file(path, kind: str) -> Path:
    """Refuse, before any work, an output file path that cannot be written.

    Args:
        path: the file to be written (its folders are created if missing).
        kind: what the file is, for messages ("proposal file").

    Returns:
        ``path`` as a Path.

    Raises:
        DataError: the path is empty or an existing folder, or a part of it that must be a
            folder is a file, or the nearest existing folder is not writable.
    """
    if not str(path).strip():
        raise DataError(f"the {kind} path is empty; give a file path with --out.")
    path = Path(path).expanduser()
    shown = display_path(path)
    if path.is_dir():
        raise DataError(f"{kind} {shown} is an existing folder; give a file path with --out.")
    if path.exists() and not path.is_file():
        raise DataError(f"{kind} {shown} exists and is not a regular file; give another path with --out.")
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise DataError(f"cannot write {kind} {shown}: {display_path(folder)} is a file, not a folder; "
                        "give another path with --out.")
    if not os.access(folder, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise DataError(f"cannot write {kind} {shown}: {display_path(folder)} is not writable; "
                        "give a path in a writable folder with --out.")
    return path


def write_text_atomic(path, chunks, kind: str) -> None:
    """Write text via a temporary file in the same folder and ``os.replace``: never half-written.

    The file gets the usual permissions (0666 less the umask), not the temporary file's 0600.

    Args:
        path: the file; its folders are created if needed.
        chunks: the text, as one string or an iterable of strings.
        kind: what the file is, for messages.

    Raises:
        DataError: the file cannot be written (read-only folder, disk full, ...); an older file
            at ``path`` is left as it was.
    """
    import tempfile

    path = check_output_file(path, kind)
    tmp_name = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            for chunk in [chunks] if isinstance(chunks, str) else chunks:
                handle.write(chunk)
            handle.flush()
            os.fsync(handle.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_name, 0o666 & ~umask)
        os.replace(tmp_name, path)
    except OSError as err:
        raise DataError(f"cannot write {kind} {display_path(path)} ({err.strerror or err}); "
                        "free disk space or give a path in a writable folder with --out.") from err
    finally:
        if tmp_name is not None and os.path.exists(tmp_name):
            os.unlink(tmp_name)
