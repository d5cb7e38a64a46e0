"""Local-file loaders and document functions for the `obliviate_*` lm-evaluation-harness tasks.

This folder stands alone: it needs lm-eval (and the `datasets` package lm-eval installs), not
obliviate. Run it with the stock CLI, pointing the tasks at the folder that holds `benchmarks/`:

    lm_eval --model hf --model_args pretrained=MODEL --include_path THIS_FOLDER \
        --tasks obliviate_general --metadata '{"data_dir": "/path/to/data"}'

Why `custom_dataset` and not `dataset_path: json`: five of the seven local copies are not JSON
records lm-eval could read as they are (HellaSwag is a 6-lines-per-task text file, OpenBookQA a
TSV, PIQA and WinoGrande keep their labels in a separate file, BoolQ has string labels), and the
data folder is only known at run time. lm-eval 0.4.13 calls `custom_dataset(**metadata)` when a
task is built, and the metadata given to `lm_eval --metadata` (or `TaskManager(metadata=...)`)
reaches every task; so the loaders below read `data_dir` from there, falling back to the
`OBLIVIATE_DATA_DIR` environment variable. Nothing touches the Hugging Face hub or its cache.

Each loader returns its documents in the schema of the Hugging Face dataset that lm-eval's own
task reads (`allenai/ai2_arc`, `aps/super_glue` boolq, `Rowan/hellaswag`, `allenai/openbookqa`,
`baber/piqa`, `allenai/winogrande`), so the task YAMLs next to this file can use lm-eval's own
`doc_to_text` / `doc_to_target` / `doc_to_choice` unchanged.

`data_dir` is the data root holding `benchmarks/` (or the `benchmarks/` folder itself).
"""

from __future__ import annotations

import csv
import json
import os
import re
from pathlib import Path

DATA_DIR_ENV = "OBLIVIATE_DATA_DIR"
# How a user of the stock lm-eval CLI gives the data folder (named in every "where is it" message).
HOW_TO_PASS_DATA_DIR = (
    f"""pass it as task metadata (lm_eval --metadata '{{"data_dir": "/path/to/data"}}', or """
    f"""TaskManager(metadata={{"data_dir": ...}}) in Python) or set {DATA_DIR_ENV}"""
)


class BenchmarkDataError(ValueError):
    """A benchmark data folder or file is missing, undecodable or malformed (the message says which, and what to do)."""

# task -> (files under <data_dir>/benchmarks/, lm-eval split the documents go to)
BENCHMARK_FILES = {
    "arc_easy": (("arc_easy/ARC-Easy-Test.jsonl",), "test"),
    "arc_challenge": (("arc_challenge/ARC-Challenge-Test.jsonl",), "test"),
    "boolq": (("boolq/val.jsonl",), "validation"),
    "hellaswag": (("hellaswag/hellaswag_val_full.txt",), "validation"),
    "openbookqa": (("openbookqa/test.tsv",), "test"),
    "piqa": (("piqa/valid.jsonl", "piqa/valid-labels.lst"), "validation"),
    "winogrande": (("winogrande/dev.jsonl", "winogrande/dev-labels.lst"), "validation"),
}


def expected_layout() -> str:
    """The expected file layout under the data folder, one file per line (for error messages)."""
    return "\n".join(f"  <data_dir>/benchmarks/{f}" for files, _ in BENCHMARK_FILES.values() for f in files)


def resolve_data_dir(data_dir=None) -> Path:
    """The data root: `data_dir` if given, else `$OBLIVIATE_DATA_DIR`.

    Raises:
        BenchmarkDataError: neither is set, or the folder does not exist.
    """
    if data_dir is None or str(data_dir) == "":
        data_dir = os.environ.get(DATA_DIR_ENV)
    if not data_dir:
        raise BenchmarkDataError(
            f"No benchmark data folder given: {HOW_TO_PASS_DATA_DIR} to the folder holding benchmarks/. "
            f"Expected layout:\n{expected_layout()}"
        )
    path = Path(data_dir).expanduser()
    if not path.is_dir():
        raise BenchmarkDataError(
            f"Benchmark data folder {path} does not exist: give the folder holding benchmarks/ "
            f"({HOW_TO_PASS_DATA_DIR}). Expected layout:\n{expected_layout()}"
        )
    return path


def benchmark_path(data_dir, relative: str) -> Path:
    """Path of one benchmark file; `data_dir` may be the data root or its `benchmarks/` folder.

    Raises:
        BenchmarkDataError: the file is missing (the message names it and the expected layout).
    """
    root = resolve_data_dir(data_dir)
    base = root / "benchmarks" if (root / "benchmarks").is_dir() else root
    path = base / relative
    if not path.is_file():
        raise BenchmarkDataError(
            f"Benchmark file {path} is missing. Put the local copies under {base} as:\n"
            f"{expected_layout()}\n(README.md next to this file says where each copy comes from)"
        )
    return path


def _read_lines(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise BenchmarkDataError(f"{path} is not UTF-8 ({err}); restore the original file.") from err
    return text.splitlines()


def _read_jsonl(path: Path) -> list[dict]:
    records = []
    for number, line in enumerate(_read_lines(path), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as err:
            raise BenchmarkDataError(f"{path}:{number} is not valid JSON ({err}); restore the original file.") from err
    if not records:
        raise BenchmarkDataError(f"{path} holds no records; restore the original file.")
    return records


def _read_labels(path: Path, count: int, data_path: Path) -> list[str]:
    labels = [line.strip() for line in _read_lines(path) if line.strip()]
    if len(labels) != count:
        raise BenchmarkDataError(
            f"{path} has {len(labels)} labels but {data_path} has {count} records; "
            "they must pair line by line, restore the original files."
        )
    return labels


def _field(record: dict, key: str, path: Path, number: int):
    try:
        return record[key]
    except (KeyError, TypeError):
        raise BenchmarkDataError(f"{path}:{number} has no field {key!r}; restore the original file.") from None


# ------------------------------------------------------------------------------------------ ARC
def read_arc(path: Path) -> list[dict]:
    """ARC-V1-Feb2018 JSONL -> `allenai/ai2_arc` records (question, choices{text,label}, answerKey)."""
    docs = []
    for number, record in enumerate(_read_jsonl(path), start=1):
        question = _field(record, "question", path, number)
        choices = _field(question, "choices", path, number)
        labels = [str(choice["label"]) for choice in choices]
        answer = str(_field(record, "answerKey", path, number))
        if answer not in labels:
            raise BenchmarkDataError(f"{path}:{number}: answerKey {answer!r} is not one of the labels {labels}.")
        docs.append(
            {
                "id": record.get("id", str(number)),
                "question": _field(question, "stem", path, number),
                "choices": {"text": [choice["text"] for choice in choices], "label": labels},
                "answerKey": answer,
            }
        )
    return docs


# ---------------------------------------------------------------------------------------- BoolQ
_BOOLQ_LABELS = {"true": 1, "false": 0, True: 1, False: 0, 1: 1, 0: 0}


def read_boolq(path: Path) -> list[dict]:
    """SuperGLUE BoolQ JSONL (label "true"/"false") -> `super_glue` boolq records (label 1/0).

    The passage keeps its "<title> -- " prefix: the SuperGLUE data lm-eval's `boolq` reads has it too.
    """
    docs = []
    for number, record in enumerate(_read_jsonl(path), start=1):
        raw = _field(record, "label", path, number)
        key = raw.lower() if isinstance(raw, str) else raw
        if key not in _BOOLQ_LABELS:
            raise BenchmarkDataError(f"{path}:{number}: label {raw!r} is not true/false; restore the original file.")
        docs.append(
            {
                "question": _field(record, "question", path, number),
                "passage": _field(record, "passage", path, number),
                "idx": record.get("idx", number - 1),
                "label": _BOOLQ_LABELS[key],
            }
        )
    return docs


# ------------------------------------------------------------------------------------ HellaSwag
# The last sentence fragment of an ActivityNet context: what follows the last sentence end.
_TRAILING_FRAGMENT = re.compile(r"^(.*[.!?][\"']?)\s+(\S[^.!?]*)$", re.DOTALL)


def split_hellaswag_context(ctx: str) -> tuple[str, str]:
    """Recover (ctx_a, ctx_b) from a joined HellaSwag context.

    The text file only keeps `ctx`, which is `ctx_a + " " + ctx_b`; ctx_b is the incomplete noun
    phrase that ActivityNet contexts end with ("... on a roof. he") and is empty for WikiHow
    ones. lm-eval capitalizes ctx_b, so it must be found again: it is taken to be the fragment
    after the last sentence end when that fragment does not start with a capital letter.
    """
    match = _TRAILING_FRAGMENT.match(ctx)
    if match and not match.group(2)[0].isupper():
        return match.group(1), match.group(2)
    return ctx, ""


def read_hellaswag(path: Path) -> list[dict]:
    """klosax 6-lines-per-task text -> `Rowan/hellaswag`-like records, with lm-eval's fields added.

    Lines per task: `activity_label + ": " + ctx`, the gold index (0-3), then the four endings.
    Each record also gets `query`, `choices` and `gold`, built as lm-eval's `hellaswag`
    `process_docs` builds them (done here once rather than on every access to the split).
    """
    lines = _read_lines(path)
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines or len(lines) % 6:
        raise BenchmarkDataError(
            f"{path} has {len(lines)} lines, not a multiple of 6 (context, gold index, 4 endings "
            "per task); restore the original file."
        )
    docs = []
    for start in range(0, len(lines), 6):
        header, gold, *endings = lines[start : start + 6]
        activity_label, sep, ctx = header.partition(": ")
        if not sep or gold.strip() not in {"0", "1", "2", "3"}:
            raise BenchmarkDataError(
                f"{path}:{start + 1}: expected '<activity>: <context>' then a gold index 0-3 on the "
                "next line; restore the original file."
            )
        ctx_a, ctx_b = split_hellaswag_context(ctx)
        doc = {
            "ind": start // 6,
            "activity_label": activity_label,
            "ctx_a": ctx_a,
            "ctx_b": ctx_b,
            "ctx": ctx,
            "endings": endings,
            "label": gold.strip(),
        }
        docs.append(doc | hellaswag_fields(doc))
    return docs


def hellaswag_preprocess(text: str) -> str:
    """lm-eval's HellaSwag text clean-up: drop WikiHow `[...]` markers, collapse double spaces."""
    text = text.strip()
    text = text.replace(" [title]", ". ")
    text = re.sub(r"\[.*?\]", "", text)
    return text.replace("  ", " ")


def hellaswag_fields(doc: dict) -> dict:
    """`query`, `choices` and `gold` of one document, exactly as lm-eval's `hellaswag` builds them."""
    ctx = doc["ctx_a"] + " " + doc["ctx_b"].capitalize()
    return {
        "query": hellaswag_preprocess(doc["activity_label"] + ": " + ctx),
        "choices": [hellaswag_preprocess(ending) for ending in doc["endings"]],
        "gold": int(doc["label"]),
    }


# ----------------------------------------------------------------------------------- OpenBookQA
_OBQA_CHOICE = re.compile(r"\(([A-Z])\) (.*?)(?= \([A-Z]\) |$)")


def read_openbookqa(path: Path) -> list[dict]:
    """OpenBookQA `Main/test.tsv` -> `allenai/openbookqa` main records (question_stem, choices, answerKey)."""
    with path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))
    if not rows or rows[0][:3] != ["ID", "Question Stem", "Choices"]:
        raise BenchmarkDataError(
            f"{path} lacks the header 'ID, Question Stem, Choices, ...'; restore the original file."
        )
    header = rows[0]
    docs = []
    for number, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        record = dict(zip(header, row))
        choices = _OBQA_CHOICE.findall(record.get("Choices", ""))
        labels = [label for label, _ in choices]
        answer = record.get("Answer Key", "").strip()
        if len(choices) < 2 or answer not in labels:
            raise BenchmarkDataError(
                f"{path}:{number}: expected choices written '(A) ... (B) ...' and an answer key among "
                f"them, got {record.get('Choices')!r} / {answer!r}; restore the original file."
            )
        docs.append(
            {
                "id": record["ID"],
                "question_stem": record["Question Stem"],
                "choices": {"text": [text.strip() for _, text in choices], "label": labels},
                "answerKey": answer,
            }
        )
    return docs


# ----------------------------------------------------------------------------------------- PIQA
def read_piqa(path: Path, labels_path: Path) -> list[dict]:
    """PIQA `valid.jsonl` + `valid-labels.lst` -> `baber/piqa` records (goal, sol1, sol2, label)."""
    records = _read_jsonl(path)
    labels = _read_labels(labels_path, len(records), path)
    docs = []
    for number, (record, label) in enumerate(zip(records, labels), start=1):
        if label not in {"0", "1"}:
            raise BenchmarkDataError(
                f"{labels_path}:{number}: label {label!r} is not 0 or 1; restore the original file."
            )
        docs.append(
            {
                "goal": _field(record, "goal", path, number),
                "sol1": _field(record, "sol1", path, number),
                "sol2": _field(record, "sol2", path, number),
                "label": int(label),
            }
        )
    return docs


# ----------------------------------------------------------------------------------- WinoGrande
def read_winogrande(path: Path, labels_path: Path) -> list[dict]:
    """WinoGrande 1.1 `dev.jsonl` (+ `dev-labels.lst`, checked to agree) -> `allenai/winogrande` records."""
    records = _read_jsonl(path)
    labels = _read_labels(labels_path, len(records), path)
    docs = []
    for number, (record, label) in enumerate(zip(records, labels), start=1):
        answer = str(_field(record, "answer", path, number))
        sentence = _field(record, "sentence", path, number)
        if answer not in {"1", "2"} or answer != label or "_" not in sentence:
            raise BenchmarkDataError(
                f"{path}:{number}: needs a sentence with a '_' blank and answer '1' or '2' equal to "
                f"line {number} of {labels_path} (got {answer!r} / {label!r}); restore the original files."
            )
        docs.append(
            {
                "sentence": sentence,
                "option1": _field(record, "option1", path, number),
                "option2": _field(record, "option2", path, number),
                "answer": answer,
            }
        )
    return docs


def winogrande_gold_index(doc) -> int:
    """The gold option's index. lm-eval puts it in `doc_to_text`: an int there means "one context per option"."""
    return {"1": 0, "2": 1}[doc["answer"]]


def winogrande_contexts(doc) -> list[str]:
    """The sentence up to the blank, filled with each option (lm-eval's partial scoring)."""
    blank = doc["sentence"].index("_")
    return [doc["sentence"][:blank] + option for option in (doc["option1"], doc["option2"])]


def winogrande_continuation(doc) -> str:
    """The sentence after the blank: the text scored after each filled-in context."""
    blank = doc["sentence"].index("_")
    return doc["sentence"][blank + 1 :].strip()


# ------------------------------------------------------------------------------ loading by task
_READERS = {
    "arc_easy": read_arc,
    "arc_challenge": read_arc,
    "boolq": read_boolq,
    "hellaswag": read_hellaswag,
    "openbookqa": read_openbookqa,
    "piqa": read_piqa,
    "winogrande": read_winogrande,
}


def load_docs(task: str, data_dir=None) -> list[dict]:
    """All documents of one benchmark (e.g. "arc_easy"), read from the local files.

    Args:
        task: a key of `BENCHMARK_FILES`.
        data_dir: data root holding `benchmarks/`; `None` reads `$OBLIVIATE_DATA_DIR`.

    Returns:
        The documents, in file order, in the schema of the HF dataset lm-eval's task reads.
    """
    files, _ = BENCHMARK_FILES[task]
    return _READERS[task](*(benchmark_path(data_dir, f) for f in files))


def _dataset(task: str, data_dir=None, **_metadata):
    # lm-eval passes every metadata key (version, config_source, ...); only data_dir is ours.
    import datasets

    _, split = BENCHMARK_FILES[task]
    return datasets.DatasetDict({split: datasets.Dataset.from_list(load_docs(task, data_dir))})


def load_arc_easy(**metadata):
    return _dataset("arc_easy", **metadata)


def load_arc_challenge(**metadata):
    return _dataset("arc_challenge", **metadata)


def load_boolq(**metadata):
    return _dataset("boolq", **metadata)


def load_hellaswag(**metadata):
    return _dataset("hellaswag", **metadata)


def load_openbookqa(**metadata):
    return _dataset("openbookqa", **metadata)


def load_piqa(**metadata):
    return _dataset("piqa", **metadata)


def load_winogrande(**metadata):
    return _dataset("winogrande", **metadata)
