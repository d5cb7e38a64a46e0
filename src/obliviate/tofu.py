"""TOFU data: the fictitious-author QA benchmark of Maini et al. 2024 (arXiv 2401.06121).

Reads the TOFU files (``/work/shared/data/SOURCES.md`` section 4; layout of locuslab/TOFU on the
Hub) into :class:`TofuQA` items and names the files of each forget split. No model, no torch: the
metrics built on these items live in ``obliviate.evaluation.tofu``.

In ``full.json`` author ``i`` owns records ``20 i .. 20 i + 19``; ``forget01`` is the last two
authors (198-199), ``forget05`` the last 10, ``forget10`` the last 20.
"""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass, field
from pathlib import Path

from obliviate.errors import ConfigError, DataError

__all__ = [
    "PROMPT_TEMPLATE", "QUESTIONS_PER_AUTHOR", "SPLITS", "TofuQA", "TofuFiles", "prompt", "answer_continuation",
    "read_records", "load_qa", "split_files", "author_of", "SET_NAMES", "load_sets",
]

PROMPT_TEMPLATE = "Question: {question}\nAnswer:"
QUESTIONS_PER_AUTHOR = 20
SPLITS = ("forget01", "forget05", "forget10")
# forgetXX is paired with the retain set that holds every other author (TOFU's retain(100-XX)).
_RETAIN_OF = {"forget01": "retain99", "forget05": "retain95", "forget10": "retain90"}


def prompt(question: str) -> str:
    """The prompt a TOFU question is asked with; the answer follows as ``" " + answer``."""
    return PROMPT_TEMPLATE.format(question=question)


def answer_continuation(answer: str) -> str:
    """The continuation an answer is scored (and trained) as, after :func:`prompt`."""
    return " " + answer


@dataclass
class TofuQA:
    """One TOFU question.

    Attributes:
        question: the question.
        answer: its true answer.
        paraphrased_answer: the true answer reworded (forget and retain sets only).
        perturbed_answers: wrong answers in the answer's style (TOFU ``perturbed_answer``).
        author: index of the fictitious author in ``full.json`` (None when unknown).
    """

    question: str
    answer: str
    paraphrased_answer: str | None = None
    perturbed_answers: list[str] = field(default_factory=list)
    author: int | None = None


@dataclass(frozen=True)
class TofuFiles:
    """The file names of one forget split, relative to the TOFU folder."""

    forget: str
    forget_perturbed: str
    retain: str
    holdout: str


def split_files(split: str) -> TofuFiles:
    """The files of a forget split: ``forget01`` -> forget01.json, forget01_perturbed.json,
    retain99.json, holdout01.json.

    Raises:
        ConfigError: ``split`` is not one of :data:`SPLITS`.
    """
    if split not in SPLITS:
        raise ConfigError(f"TOFU split '{split}' does not exist: use one of {', '.join(SPLITS)}")
    percent = split[len("forget"):]
    return TofuFiles(forget=f"{split}.json", forget_perturbed=f"{split}_perturbed.json",
                     retain=f"{_RETAIN_OF[split]}.json", holdout=f"holdout{percent}.json")


def read_records(path) -> list[dict]:
    """The JSON objects of a TOFU file: one array, several arrays one per line, or JSONL.

    Raises:
        DataError: the file is missing, unreadable, not JSON in one of these layouts, or holds
            something other than objects.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        reason = err.strerror if isinstance(err, OSError) and err.strerror else err
        raise DataError(f"cannot read TOFU file '{path}' ({reason}); check the path and --data-dir") from err
    try:
        whole = json.loads(text)
        chunks = [whole]
    except json.JSONDecodeError:
        chunks = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                chunks.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise DataError(f"{path}: line {number} is not JSON ({err.msg}); expected one array, "
                                "one array per line, or one object per line") from err
    records = []
    for chunk in chunks:
        for record in chunk if isinstance(chunk, list) else [chunk]:
            if not isinstance(record, dict):
                raise DataError(f"{path}: record {len(records)} is a {type(record).__name__}, not a JSON object")
            records.append(record)
    if not records:
        raise DataError(f"{path}: no records; expected question/answer objects")
    return records


def _text(record: dict, keys: tuple[str, ...], where: str) -> str:
    for key in keys:
        value = record.get(key)
        if isinstance(value, str) and value.strip():
            return value
    raise DataError(f"{where}: needs a non-empty \"{keys[0]}\" string (or \"{keys[1]}\")")


def _perturbed_list(value, where: str) -> list[str]:
    """TOFU's ``perturbed_answer``: a list of strings, or (in some exports) a string holding one."""
    if isinstance(value, str):
        try:
            value = ast.literal_eval(value)  # a literal only: never eval
        except (ValueError, SyntaxError) as err:
            raise DataError(f"{where}: \"perturbed_answer\" is a string but not a Python list literal") from err
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v.strip() for v in value):
        raise DataError(f"{where}: \"perturbed_answer\" must be a non-empty list of non-empty strings")
    return value


def load_qa(path) -> list[TofuQA]:
    """TOFU questions of a file, with their paraphrased and perturbed answers when it has them.

    Args:
        path: a TOFU JSON file (question/answer or prompt/response records).

    Returns:
        One :class:`TofuQA` per record, ``author`` unset (see :func:`author_of`).

    Raises:
        DataError: unreadable file, or a record without a question or answer, or with a malformed
            perturbed list or paraphrase; the message names the file and record.
    """
    items = []
    for index, record in enumerate(read_records(path)):
        where = f"{path}: record {index}"
        question = _text(record, ("question", "prompt"), where)
        answer = _text(record, ("answer", "response"), where)
        paraphrased = record.get("paraphrased_answer")
        if paraphrased is not None and not (isinstance(paraphrased, str) and paraphrased.strip()):
            raise DataError(f"{where}: \"paraphrased_answer\" must be a non-empty string")
        perturbed = record.get("perturbed_answer")
        perturbed = [] if perturbed is None else _perturbed_list(perturbed, where)
        items.append(TofuQA(question, answer, paraphrased, perturbed))
    return items


def author_of(questions: list[str], full_records: list[dict]) -> list[int | None]:
    """The author of each question: its index in ``full.json`` // 20 (None if not there).

    Args:
        questions: question texts.
        full_records: the records of ``full.json`` (:func:`read_records`), in file order.
    """
    first_index: dict[str, int] = {}
    for index, record in enumerate(full_records):
        first_index.setdefault(record.get("question") or record.get("prompt"), index)
    return [None if q not in first_index else first_index[q] // QUESTIONS_PER_AUTHOR for q in questions]


SET_NAMES = ("forget", "retain", "real_authors", "world_facts", "holdout")


def load_sets(folder, split: str = "forget01", retain_authors: list[int] | None = None,
              limit: int | None = None) -> dict[str, list[TofuQA]]:
    """The five evaluation sets of a forget split, as TOFU / open-unlearning evaluate them.

    ``forget``: ``forgetXX_perturbed.json``; ``retain``: ``retain_perturbed.json`` (the 400
    questions of authors 0-19 of ``full.json``); ``real_authors`` / ``world_facts``: their
    ``*_perturbed.json``; ``holdout``: ``holdoutXX.json`` (the non-members of the
    membership-inference attack). Forget and retain
    items get their ``author`` from ``full.json`` when the folder has it.

    Args:
        folder: the TOFU folder.
        split: one of :data:`SPLITS`.
        retain_authors: keep only the retain items of these authors (None: all); needs ``full.json``.
        limit: keep ``limit`` items of each set, spread over it (:func:`spread`; None: all).

    Raises:
        ConfigError: unknown split, or ``limit`` below 1.
        DataError: a file is missing or malformed, ``retain_authors`` without ``full.json``, or no
            retain item left after the author filter.
    """
    if limit is not None and limit < 1:
        raise ConfigError(f"limit must be at least 1, got {limit}")
    folder = Path(folder)
    files = split_files(split)
    sets = {
        "forget": load_qa(folder / files.forget_perturbed),
        "retain": load_qa(folder / "retain_perturbed.json"),
        "real_authors": load_qa(folder / "real_authors_perturbed.json"),
        "world_facts": load_qa(folder / "world_facts_perturbed.json"),
        "holdout": load_qa(folder / files.holdout),
    }
    full_path = folder / "full.json"
    if full_path.is_file():
        full = read_records(full_path)
        for name in ("forget", "retain"):
            for item, author in zip(sets[name], author_of([i.question for i in sets[name]], full)):
                item.author = author
    elif retain_authors is not None:
        raise DataError(f"retain_authors needs '{full_path}' to know each question's author; add full.json "
                        "or drop retain_authors")
    if retain_authors is not None:
        wanted = set(retain_authors)
        sets["retain"] = [item for item in sets["retain"] if item.author in wanted]
        if not sets["retain"]:
            raise DataError(f"no retain_perturbed question belongs to authors {sorted(wanted)}; "
                            "retain_perturbed.json covers authors 0-19")
    if limit is not None:
        sets = {name: spread(items, limit) for name, items in sets.items()}
    return sets


def spread(items: list, limit: int | None) -> list:
    """At most ``limit`` of ``items``, taken at even steps through the list (every author of a set
    ordered by author stays represented); all of them when ``limit`` is None or not below their number."""
    if limit is None or len(items) <= limit:
        return items
    step = len(items) / limit
    return [items[int(i * step)] for i in range(limit)]
