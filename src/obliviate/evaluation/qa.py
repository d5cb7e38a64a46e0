"""Knowledge QA by log-likelihood: does the model still prefer the true answer?

Each choice is scored as the continuation `" " + choice` of the prompt built from the question,
through `obliviate.scoring.continuation_logprobs`, and the prediction is the choice of highest
summed log-prob (`acc`) or highest log-prob per character (`acc_norm`), as lm-evaluation-harness
does for multiple-choice tasks. On the target's trivia, accuracy should fall towards `chance`
after unlearning; on other topics it should stay.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from obliviate.errors import ConfigError, DataError
from obliviate.evaluation.data import limit_items, resolve_data_path
from obliviate.evaluation.metric_math import accuracy_with_chance, length_normalised
from obliviate.evaluation.prompts import reference_continuation
from obliviate.evaluation.result import MetricContext, MetricResult
from obliviate.jsonl import jsonl_objects

__all__ = ["QASpec", "QAItem", "load_qa_file", "qa_accuracy", "compute_qa", "DEFAULT_QA_TEMPLATE"]

DEFAULT_QA_TEMPLATE = "Question: {question}\nAnswer:"


@dataclass
class QASpec:
    name: str
    type: str = "qa"
    group: str = "forget"  # forget: accuracy should fall to chance; retain: it should stay
    data: str = ""  # two-choice or multiple-choice questions: JSONL, JSON, Parquet, Arrow or hf:owner/name[:config]
    template: str = DEFAULT_QA_TEMPLATE
    batch_size: int = 8  # sequences per forward pass
    limit: int | None = None

    def check(self) -> list[tuple]:
        """Rules of the settings: ``(key, holds, rule)`` (obliviate.config convention)."""
        return [
            ("batch_size", self.batch_size >= 1, ">= 1"),
            ("limit", self.limit is None or self.limit >= 1, ">= 1 or null"),
        ]


@dataclass
class QAItem:
    """A question with its answer choices.

    Attributes:
        question: the question text.
        choices: answer texts (at least two).
        answer: index of the correct choice.
        meta: every other key of the JSONL line.
    """

    question: str
    choices: list[str]
    answer: int
    meta: dict = field(default_factory=dict)


def _nonempty_string(value) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _parse_qa_record(record: dict, where: str) -> QAItem:
    question = record.pop("question", None)
    if not _nonempty_string(question):
        raise DataError(f'{where}: "question" is missing or empty; give each line a non-empty question string.')
    if "choices" in record:
        choices, answer = record.pop("choices"), record.pop("answer", None)
        if not isinstance(choices, list) or len(choices) < 2 or not all(_nonempty_string(c) for c in choices):
            raise DataError(f'{where}: "choices" must be a list of at least two non-empty strings, got {choices!r}.')
        if isinstance(answer, bool) or not isinstance(answer, int) or not 0 <= answer < len(choices):
            raise DataError(
                f'{where}: "answer" must be the index (0 to {len(choices) - 1}) of the correct choice, got {answer!r}.'
            )
        return QAItem(question, choices, answer, record)
    if "true_answer" in record or "false_answer" in record:
        true_answer, false_answer = record.pop("true_answer", None), record.pop("false_answer", None)
        if not _nonempty_string(true_answer) or not _nonempty_string(false_answer):
            raise DataError(f'{where}: "true_answer" and "false_answer" must both be non-empty strings.')
        return QAItem(question, [true_answer, false_answer], 0, record)
    raise DataError(
        f'{where}: no answers; give either "true_answer" and "false_answer", or "choices" and "answer" (an index).'
    )


def load_qa_file(path) -> list[QAItem]:
    """Read questions from a JSONL, JSON, Parquet or Arrow file or a hub split; each record is in one
    of two formats.

    - two-choice trivia: `{"question", "true_answer", "false_answer"}` (choices = [true, false],
      answer = 0);
    - multiple choice: `{"question", "choices": [str, ...], "answer": index}` (WMDP's own format).

    Args:
        path: the file (`.jsonl` and unknown suffixes are read as JSON Lines; `.json` may also be
            arrays of objects), or a hub id `hf:owner/name[:config][@split]`.

    Returns:
        One `QAItem` per record, in file order; other keys go to `meta`.

    Raises:
        DataError: the source is missing, unreadable or empty, or a record is malformed; the
            message names the file and line (or row).
    """
    from obliviate.records import RECORD_SUFFIXES, is_hub_id, read_records

    if is_hub_id(path) or Path(path).suffix.lower() in RECORD_SUFFIXES - {".jsonl"}:
        records = read_records(path, "QA file")
    else:
        records = jsonl_objects(Path(path), "QA file", '{"question": ..., "choices": [...], "answer": 0}')
    items = [_parse_qa_record(record, where) for where, record in records]
    if not items:
        raise DataError(f"QA file {path} holds no questions; add one JSON object per line.")
    return items


def _argmax(values: list[float]) -> int:
    return max(range(len(values)), key=lambda i: (values[i], -i))  # ties go to the first, like np.argmax


def _prompt(template: str, question: str) -> str:
    try:
        return template.format(question=question)
    except (KeyError, IndexError, ValueError) as err:
        raise ConfigError(
            f"QA template {template!r} cannot be filled ({err!r}); it may use only the field {{question}} "
            "(write literal braces as {{ and }})."
        ) from err


def qa_accuracy(
    model,
    tokenizer,
    items: list[QAItem],
    template: str = DEFAULT_QA_TEMPLATE,
    batch_size: int = 8,
    progress: bool = False,
) -> dict:
    """Multiple-choice accuracy by log-likelihood of each choice after the question.

    The prompt is `template.format(question=...)`; each choice is scored as its continuation
    `" " + choice` (no space if the prompt ends with whitespace). `acc` picks the choice of highest
    summed log-prob; `acc_norm` divides each sum by the continuation's length in characters
    (leading space included), as lm-eval's `acc_norm`. Ties go to the first choice.

    Args:
        model: Hugging Face causal LM, already on its device.
        tokenizer: its tokenizer.
        items: questions, e.g. from `load_qa_file`.
        template: prompt template with a `{question}` field.
        batch_size: sequences per forward pass.
        progress: show a progress bar.

    Returns:
        `{"acc", "acc_stderr", "acc_norm", "acc_norm_stderr", "chance", "n",
        "per_item": [{"question", "choices", "logprobs", "pred", "pred_norm", "answer"}]}`, where
        `logprobs` are the summed log-probs of the choices and the stderrs are None for one item.

    Raises:
        DataError: `items` is empty.
        ConfigError: the template has a field other than `{question}`.
    """
    from obliviate.scoring import continuation_logprobs

    if not items:
        raise DataError("no QA items to evaluate; load at least one with load_qa_file.")
    pairs, owners = [], []
    for index, item in enumerate(items):
        prompt = _prompt(template, item.question)
        for choice in item.choices:
            pairs.append((prompt, reference_continuation(prompt, choice)))
            owners.append(index)
    token_logprobs = continuation_logprobs(model, tokenizer, pairs, batch_size=batch_size, progress=progress, desc="QA")
    sums: list[list[float]] = [[] for _ in items]
    normalised: list[list[float]] = [[] for _ in items]
    for index, (_, continuation), lps in zip(owners, pairs, token_logprobs):
        sums[index].append(sum(lps))
        normalised[index].append(length_normalised(sum(lps), len(continuation)))

    per_item = []
    for item, item_sums, item_normalised in zip(items, sums, normalised):
        per_item.append(
            {
                "question": item.question,
                "choices": item.choices,
                "logprobs": item_sums,
                "pred": _argmax(item_sums),
                "pred_norm": _argmax(item_normalised),
                "answer": item.answer,
            }
        )
    n_choices = [len(item.choices) for item in items]
    plain = accuracy_with_chance([row["pred"] == row["answer"] for row in per_item], n_choices)
    norm = accuracy_with_chance([row["pred_norm"] == row["answer"] for row in per_item], n_choices)
    return {
        "acc": plain["acc"],
        "acc_stderr": plain["stderr"],
        "acc_norm": norm["acc"],
        "acc_norm_stderr": norm["stderr"],
        "chance": plain["chance"],
        "n": len(items),
        "per_item": per_item,
    }


def compute_qa(model, tokenizer, spec: QASpec, ctx: MetricContext) -> MetricResult:
    """Accuracy on the spec's questions: lower is better in the forget group, higher elsewhere."""
    from obliviate.records import is_hub_id

    source = spec.data if is_hub_id(spec.data) else resolve_data_path(spec.data, ctx.data_dir)
    items = limit_items(load_qa_file(source), spec.limit)
    r = qa_accuracy(model, tokenizer, items, template=spec.template, batch_size=spec.batch_size,
                    progress=ctx.progress)
    details = {k: v for k, v in r.items() if k not in ("acc", "acc_stderr", "n", "per_item")}
    return MetricResult(value=r["acc"], higher_is_better=spec.group != "forget", n=r["n"], stderr=r["acc_stderr"],
                        settings=asdict(spec), details=details, per_item=r["per_item"])
