"""The target corpus: reading text files, folders, globs, JSON/JSONL, Parquet, Arrow and hub datasets;
cleaning; cutting into blocks."""

from __future__ import annotations

import glob
import hashlib
import json
import math
import os
import random
import re
from dataclasses import dataclass, field
from pathlib import Path

from obliviate.errors import DataError
from obliviate.hashing import file_sha256
from obliviate.jsonl import display_path, read_bytes
from obliviate.records import RECORD_SUFFIXES, HubSource, hub_fingerprint, is_hub_id, parse_hub_id, read_records

_GUTENBERG_START = re.compile(r"^\*{3}\s*START OF (THE|THIS) PROJECT GUTENBERG.*?\*{3}\s*$", re.M | re.I)
_GUTENBERG_END = re.compile(r"^\*{3}\s*END OF (THE|THIS) PROJECT GUTENBERG.*$", re.M | re.I)
MIN_BLOCK = 16  # shortest block kept (tokens)
TEXT_SUFFIXES = {".txt", ".md", ".text", ""}
JSONL_SUFFIXES = {".jsonl", ".json"}
Source = Path | HubSource  # a local file, or a split of a hub dataset
# the metadata `datasets` writes next to its Arrow files (save_to_disk, cache): never corpus text
DATASETS_METADATA = {"dataset_info.json", "state.json", "dataset_dict.json"}


def _in_folder(path: Path) -> bool:
    """Whether a file found in a corpus folder is read: text and record files, not `datasets` metadata
    or its processed `cache-*.arrow` copies."""
    name = path.name
    return (path.is_file() and not name.startswith(".") and path.suffix.lower() in TEXT_SUFFIXES | RECORD_SUFFIXES
            and name not in DATASETS_METADATA and not (name.startswith("cache-") and name.endswith(".arrow")))


def clean_text(text: str) -> str:
    """Remove a byte-order mark, normalise CRLF/CR to LF, and cut a Project Gutenberg header/footer."""
    text = text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    start = _GUTENBERG_START.search(text)
    if start:
        text = text[start.end():]
    end = _GUTENBERG_END.search(text)
    if end:
        text = text[:end.start()]
    return text.strip()


def expand_sources(sources: list[str] | str) -> list[Source]:
    """Files named by paths, folders (recursively: .txt/.md/.json/.jsonl/.parquet/.arrow, so a
    `Dataset.save_to_disk` folder too, without its metadata) and glob patterns, sorted; a hub id
    (`hf:owner/name[:config][@split]`) stands for itself."""
    if isinstance(sources, (str, Path, HubSource)):
        sources = [sources]
    files: list[Source] = []
    for source in sources:
        if is_hub_id(source):
            files.append(parse_hub_id(str(source)))
            continue
        source = str(source)
        shown = display_path(source)
        if not source.strip():
            raise DataError("a corpus path is empty: give a file, folder or glob pattern")
        path = Path(source).expanduser()
        if any(ch in source for ch in "*?["):
            matched = sorted(Path(p) for p in glob.glob(str(path), recursive=True) if Path(p).is_file())
            if not matched:
                raise DataError(f"no file matches '{shown}': check the pattern")
            files.extend(matched)
        elif path.is_dir():
            try:
                found = sorted(p for p in path.rglob("*") if _in_folder(p))
            except OSError as exc:
                raise DataError(f"cannot list folder '{shown}' ({exc.strerror or exc}): check its permissions") from exc
            if not found:
                raise DataError(f"folder '{shown}' holds no .txt, .md, .json, .jsonl, .parquet or .arrow file")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        elif path.exists():
            raise DataError(f"corpus path '{shown}' is not a regular file or folder: give a text or JSONL file")
        else:
            raise DataError(f"corpus file '{shown}' not found: check the path")
    return files


def text_template(text_field: str) -> str:
    """The template that builds a document from a record.

    `text_field` is one field (`text`), several joined by a newline (`question,answer`), or a
    template with `{field}` placeholders (`Question: {question}\nAnswer: {answer}`).
    """
    if "{" in text_field:
        return text_field
    names = [name.strip() for name in text_field.split(",")]
    if not all(names):
        raise DataError(f"text field '{text_field}' names an empty field: give field names separated by commas")
    return "\n".join("{" + name + "}" for name in names)


def _fields(template: str) -> list[str]:
    import string

    try:
        return [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as exc:
        raise DataError(f"text template {template!r} is malformed ({exc}): write fields as {{name}} and literal "
                        "braces as {{{{ and }}}}") from exc


def record_text(record: dict, text_field: str, where: str) -> str:
    """The cleaned document a record holds, per `text_field` (see `text_template`).

    Raises:
        DataError: a field is missing or not a string; the message names it and the record.
    """
    template = text_template(text_field)
    names = _fields(template)
    for name in names:
        if not name or not isinstance(record.get(name), str):
            fields = ", ".join(map(str, record)) or "none"
            raise DataError(f"{where} has no string field '{name}' (fields: {fields[:200]}): "
                            "set the field name with --text-field (several: question,answer)")
    if template == "{" + names[0] + "}":
        return clean_text(record[names[0]])
    return clean_text(template.format_map({name: record[name] for name in names}))


def _read_file(path: Source, text_field: str) -> list[str]:
    if is_hub_id(path) or path.suffix.lower() in RECORD_SUFFIXES - {".jsonl"}:
        return [record_text(record, text_field, where) for where, record in read_records(path, "corpus file")]
    shown = display_path(path)
    raw = read_bytes(path, "corpus file")
    if b"\x00" in raw[:8192]:
        raise DataError(f"'{shown}' looks like a binary file, not text: pass UTF-8 text, JSON(L), Parquet or Arrow")
    try:
        decoded = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"'{shown}' is not valid UTF-8 (byte {exc.start}): convert it, e.g. "
                        f"`iconv -f latin1 -t utf-8`") from exc
    if path.suffix.lower() not in JSONL_SUFFIXES:
        return [clean_text(decoded)]
    texts = []
    for n, line in enumerate(decoded.lstrip("\ufeff").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"'{shown}' line {n} is not valid JSON ({exc.msg}): fix the line so it is one "
                            f'JSON object like {{"{text_field}": "..."}}') from exc
        if not isinstance(record, dict):
            raise DataError(f"'{shown}' line {n} is not a JSON object: give one object per line")
        texts.append(record_text(record, text_field, f"'{shown}' line {n}"))
    return texts


def read_corpus(sources: list[str] | str, text_field: str = "text") -> list[str]:
    """Read documents from files, folders, globs, JSON/JSONL, Parquet, Arrow or hub ids.

    Args:
        sources: paths, folders or glob patterns.
        text_field: the field of a record (JSON, JSONL, Parquet, Arrow, hub row) that holds the text;
            several fields, `question,answer`, are joined by a newline; a value with `{field}`
            placeholders is a template (see `text_template`).

    Returns:
        The cleaned, non-empty documents.

    Raises:
        DataError: missing, binary, undecodable or empty input.
    """
    files = expand_sources(sources)
    docs = [t for f in files for t in _read_file(f, text_field) if t.strip()]
    if not docs:
        shown = ", ".join(str(f) if is_hub_id(f) else display_path(f) for f in files)
        raise DataError(f"the corpus ({shown}) is empty: give a file with text in it")
    return docs


def source_sha256(source: Source) -> str:
    """sha256 of a local file's bytes; for a hub split, of its id and `datasets` fingerprint."""
    if is_hub_id(source):
        return hashlib.sha256(f"{source}\n{hub_fingerprint(source)}".encode()).hexdigest()
    return file_sha256(source)


def corpus_hash(sources: list[str] | str) -> str:
    """sha256 over the bytes of every corpus file (with their names; hub splits: id and fingerprint)."""
    digest = hashlib.sha256()
    for f in expand_sources(sources):
        if is_hub_id(f):
            digest.update(f.spec.encode())
            digest.update(hub_fingerprint(f).encode())
            continue
        digest.update(os.fsencode(f.name))
        digest.update(read_bytes(f, "corpus file"))
    return digest.hexdigest()


@dataclass
class CorpusConfig:
    """The target text to forget."""

    sources: list[str] = field(default_factory=list)  # files, folders, globs, JSON(L)/Parquet/Arrow, hf:owner/name
    text_field: str = "text"  # record field with the text; "question,answer" joins; "{q}\n{a}" a template
    context_length: int = 512  # tokens per block
    heldout_fraction: float = 0.1  # share of blocks held out (never trained on)
    max_blocks: int | None = None  # cap on training blocks: the first N in text order (quick runs)
    seed: int = 0  # held-out split

    def check(self) -> list[tuple[str, bool, str]]:
        """Range rules (see :func:`obliviate.config.validate`)."""
        return [("context_length", self.context_length >= MIN_BLOCK, f">= {MIN_BLOCK} tokens"),
                ("heldout_fraction", 0 <= self.heldout_fraction < 1, "in [0, 1)"),
                ("max_blocks", self.max_blocks is None or self.max_blocks >= 1, ">= 1 (or unset for no cap)")]


@dataclass
class Blocks:
    """Token blocks of a corpus, split into train and held-out parts (lists of token-id lists)."""

    train: list[list[int]]
    heldout: list[list[int]]


def make_blocks(docs: list[str], tokenizer, context_length: int = 512, heldout_fraction: float = 0.1,
                seed: int = 0, min_block: int = MIN_BLOCK, max_blocks: int | None = None) -> Blocks:
    """Tokenize documents and cut them into blocks of ``context_length`` tokens.

    Documents are joined with the EOS token; a final block shorter than ``min_block`` is
    dropped. The held-out split is a seeded, deterministic choice of whole blocks.
    """
    if context_length < min_block:
        raise DataError(f"context_length must be at least {min_block}")
    sep = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    stream: list[int] = []
    for doc in docs:
        stream.extend(tokenizer(doc, add_special_tokens=False)["input_ids"] + sep)
    blocks = [stream[i:i + context_length] for i in range(0, len(stream), context_length)]
    blocks = [b for b in blocks if len(b) >= min_block]
    if not blocks:
        raise DataError(f"the corpus has fewer than {min_block} tokens: give more text")
    order = list(range(len(blocks)))
    random.Random(seed).shuffle(order)
    n_heldout = int(round(len(blocks) * heldout_fraction)) if len(blocks) > 1 else 0
    if heldout_fraction > 0 and len(blocks) > 1:
        n_heldout = max(1, n_heldout)
    heldout_ids = set(order[:n_heldout])
    train = [b for i, b in enumerate(blocks) if i not in heldout_ids]
    heldout = [b for i, b in enumerate(blocks) if i in heldout_ids]
    if max_blocks is not None:  # quick runs: cap the held-out part in proportion too
        train = train[:max_blocks]
        heldout = heldout[:max(1, math.ceil(max_blocks * heldout_fraction))] if heldout else heldout
    return Blocks(train=train, heldout=heldout)
