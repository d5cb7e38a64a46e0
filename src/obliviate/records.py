"""Records (one dict per row) from JSON, Parquet and Arrow files and from Hugging Face hub datasets.

Local files are read with the standard library (JSON) and pyarrow (Parquet, Arrow), the readers
`datasets` itself uses underneath, without copying them into the `datasets` cache; `datasets`'
JSON builder also refuses TOFU's `full.json`, which is several JSON arrays one per line. Hub ids
(`hf:owner/name[:config][@split]`) go through `datasets.load_dataset`, after a bounded check that
the hub answers, so an offline machine gets one clear line instead of a minute of retries.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from obliviate.errors import DataError
from obliviate.jsonl import display_path, text_lines

__all__ = ["HUB_PREFIX", "RECORD_SUFFIXES", "HubSource", "is_hub_id", "parse_hub_id", "read_records",
           "hub_fingerprint"]

HUB_PREFIX = "hf:"
RECORD_SUFFIXES = {".json", ".jsonl", ".parquet", ".arrow"}
HUB_PROBE_SECONDS = 5.0  # how long to wait for the hub to answer before calling it unreachable
_LOADED: dict[str, object] = {}  # hub spec -> datasets.Dataset, for this process (read, then hashed)


@dataclass(frozen=True)
class HubSource:
    """A dataset on the Hugging Face hub: `hf:owner/name[:config][@split]` (split default: train)."""

    repo: str
    config: str | None = None
    split: str = "train"

    @property
    def spec(self) -> str:
        return f"{HUB_PREFIX}{self.repo}{':' + self.config if self.config else ''}@{self.split}"

    def __str__(self) -> str:
        return self.spec


def is_hub_id(source) -> bool:
    """Whether a source string names a hub dataset (`hf:...`) rather than a local path."""
    return isinstance(source, HubSource) or str(source).startswith(HUB_PREFIX)


def parse_hub_id(source: str) -> HubSource:
    """`hf:owner/name[:config][@split]` as a HubSource.

    Raises:
        DataError: the id is not of that shape.
    """
    if isinstance(source, HubSource):
        return source
    body = str(source)[len(HUB_PREFIX):]
    body, _, split = body.partition("@")
    repo, _, config = body.partition(":")
    if repo.count("/") != 1 or not all(repo.split("/")) or any(c.isspace() for c in repo) or (_ and not config) \
            or ("@" in str(source) and not split):
        raise DataError(f"'{source}' is not a hub dataset id: write hf:owner/name[:config][@split], "
                        "e.g. hf:locuslab/TOFU:forget01@train")
    return HubSource(repo=repo, config=config or None, split=split or "train")


def _offline() -> bool:
    return any(os.environ.get(v, "").strip().lower() in ("1", "on", "yes", "true")
               for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))


def _hub_answers(endpoint: str, seconds: float) -> bool:
    """Whether the hub endpoint gives any HTTP answer within `seconds` (proxies honoured, DNS bounded too)."""
    import urllib.error
    import urllib.request

    answered = []

    def probe():
        try:
            urllib.request.urlopen(urllib.request.Request(endpoint, method="HEAD"), timeout=seconds)
            answered.append(True)
        except urllib.error.HTTPError:  # an HTTP error status is still an answer
            answered.append(True)
        except (OSError, ValueError):
            pass

    worker = threading.Thread(target=probe, daemon=True)
    worker.start()
    worker.join(seconds)
    return bool(answered)


def _load_hub(source: HubSource):
    """The hub dataset's split, loaded once per process."""
    if source.spec in _LOADED:
        return _LOADED[source.spec]
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
    if _offline():
        where = "the hub is switched off (HF_HUB_OFFLINE/HF_DATASETS_OFFLINE)"
    elif not _hub_answers(endpoint, HUB_PROBE_SECONDS):
        raise DataError(f"cannot reach the Hugging Face hub ({endpoint}) to load '{source.spec}': connect, or set "
                        "HF_HUB_OFFLINE=1 to use a copy already in the datasets cache, or download the files "
                        "and pass their local paths")
    else:
        where = f"the hub ({endpoint})"
    try:
        import datasets

        dataset = datasets.load_dataset(source.repo, source.config, split=source.split)
    except ImportError as err:
        raise DataError(f"reading '{source.spec}' needs the `datasets` package: pip install datasets") from err
    except Exception as err:  # datasets raises ConnectionError, FileNotFoundError, ValueError... by case
        reason = " ".join(str(err).split()) or type(err).__name__
        if _offline() and isinstance(err, (ConnectionError, FileNotFoundError)):
            raise DataError(f"'{source.spec}' is not in the local datasets cache and {where}: unset "
                            "HF_HUB_OFFLINE/HF_DATASETS_OFFLINE on a connected machine, or download the files "
                            "and pass their local paths") from err
        raise DataError(f"cannot load '{source.spec}' from {where} ({reason[:300]}): check the dataset id, "
                        "config and split") from err
    _LOADED[source.spec] = dataset
    return dataset


def hub_fingerprint(source: HubSource) -> str:
    """The `datasets` fingerprint of a hub split (it follows the files' revisions), for hashes."""
    return _load_hub(source)._fingerprint


def _json_records(path: Path, kind: str) -> Iterator[tuple[str, dict]]:
    """Records of a JSON file: JSON Lines, one array of objects, or several arrays (one per line)."""
    shown = display_path(path)
    text = "\n".join(text_lines(path, kind, "check the path", "JSON file"))
    decoder, position = json.JSONDecoder(), 0
    while True:
        while position < len(text) and text[position].isspace():
            position += 1
        if position >= len(text):
            return
        line = text.count("\n", 0, position) + 1
        try:
            value, position = decoder.raw_decode(text, position)
        except json.JSONDecodeError as err:
            raise DataError(f"'{shown}' line {err.lineno} is not valid JSON ({err.msg}): fix it so the file is "
                            "JSON Lines or JSON arrays of objects") from err
        rows = value if isinstance(value, list) else [value]
        for index, record in enumerate(rows):
            where = f"'{shown}' line {line}" + (f" item {index + 1}" if isinstance(value, list) else "")
            if not isinstance(record, dict):
                raise DataError(f"{where}: expected a JSON object (one record), got {type(record).__name__}")
            yield where, record


def _arrow_table(path: Path, kind: str):
    """A Parquet or Arrow (IPC stream, as `datasets` writes, or IPC file) table."""
    import pyarrow as pa

    shown = display_path(path)
    if not path.is_file():
        raise DataError(f"{kind} '{shown}' not found; check the path.")
    try:
        if path.suffix.lower() == ".parquet":
            import pyarrow.parquet as pq

            return pq.read_table(path)
        with pa.memory_map(str(path)) as source:
            try:
                return pa.ipc.open_stream(source).read_all()
            except pa.ArrowInvalid:
                source.seek(0)
                return pa.ipc.open_file(source).read_all()
    except (pa.ArrowException, OSError) as err:
        reason = " ".join(str(err).split())[:200]
        raise DataError(f"{kind} '{shown}' is not a readable {path.suffix[1:].capitalize()} file ({reason}): "
                        "check the file, or rewrite it with datasets/pandas") from err


def read_records(source, kind: str) -> Iterator[tuple[str, dict]]:
    """Yield `(where, record)` for every row of a record source.

    Args:
        source: a `.json`/`.jsonl` file (JSON Lines, an array of objects, or several arrays), a
            `.parquet` or `.arrow` file, or a hub id (`hf:owner/name[:config][@split]` or a HubSource).
        kind: what the source is, for messages ("corpus file", "QA file").

    Raises:
        DataError: the source is missing, unreadable or malformed, or a hub id cannot be loaded;
            the message names it (and the line or row) and says what to do.
    """
    if is_hub_id(source):
        hub = parse_hub_id(source)
        for index, record in enumerate(_load_hub(hub)):
            yield f"'{hub.spec}' row {index + 1}", dict(record)
        return
    path = Path(source)
    if path.suffix.lower() in (".parquet", ".arrow"):
        shown = display_path(path)
        for index, record in enumerate(_arrow_table(path, kind).to_pylist()):
            yield f"'{shown}' row {index + 1}", record
        return
    yield from _json_records(path, kind)
