"""General ability through lm-evaluation-harness: seven standard benchmarks on local data files.

The scoring is lm-eval's, not ours: the task YAMLs in `obliviate/resources/lm_eval_tasks/` copy
lm-eval's own `arc_easy`, `arc_challenge`, `boolq`, `hellaswag`, `openbookqa`, `piqa` and
`winogrande` prompts, choices and metrics (acc, acc_norm), so the numbers are comparable with
published zero-shot ones. Only the data source differs: the tasks read the local copies under
`<data_dir>/benchmarks/` (shared/data/SOURCES.md section 3), passed to them as lm-eval task
metadata, and nothing is downloaded.

Known difference: the HellaSwag copy keeps only the joined context, so the ActivityNet
fragment that lm-eval capitalizes is found again by a rule (see `utils.split_hellaswag_context`).
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from obliviate.errors import ConfigError, DataError
from obliviate.evaluation.result import MetricContext, MetricResult

__all__ = [
    "GeneralAbilitySpec",
    "compute_general_ability",
    "GENERAL_TASKS",
    "LM_EVAL_TASKS_DIR",
    "benchmark_files",
    "lm_eval_task_name",
    "check_data",
    "check_vocab_coverage",
    "load_benchmark_docs",
    "run_general_ability",
]

GENERAL_TASKS = ("arc_easy", "arc_challenge", "boolq", "hellaswag", "openbookqa", "piqa", "winogrande")
LM_EVAL_TASKS_DIR = Path(__file__).resolve().parents[1] / "resources" / "lm_eval_tasks"


@dataclass
class GeneralAbilitySpec:
    name: str
    type: str = "general_ability"
    group: str = "utility"
    tasks: list[str] = field(default_factory=lambda: list(GENERAL_TASKS))
    limit: int | None = None  # documents per task (None: all)
    num_fewshot: int = 0
    batch_size: int = 8  # lm-eval batch size

    def check(self) -> list[tuple]:
        """Rules of the settings: ``(key, holds, rule)`` (obliviate.config convention)."""
        return [
            ("limit", self.limit is None or self.limit >= 1, ">= 1 or null"),
            ("num_fewshot", self.num_fewshot >= 0, ">= 0"),
            ("batch_size", self.batch_size >= 1, ">= 1"),
        ]


# Above this share of unknown tokens a benchmark's text is not really seen by the model.
MAX_UNK_SHARE = 0.01
# Documents per task whose text is checked for vocabulary coverage (evenly spread).
VOCAB_CHECK_DOCS = 300


@functools.cache
def _task_utils():
    """The task folder's `utils.py` (a resource folder, not a package: loaded from its path)."""
    spec = importlib.util.spec_from_file_location("obliviate_lm_eval_task_utils", LM_EVAL_TASKS_DIR / "utils.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def _as_data_error():
    """The task folder's own `BenchmarkDataError` (it imports nothing of obliviate's) as obliviate's DataError.

    Matched by name: lm-eval loads `utils.py` as a module of its own, so its copy of the class is
    not the one `_task_utils()` holds.
    """
    try:
        yield
    except ValueError as exc:
        if type(exc).__name__ != "BenchmarkDataError":
            raise
        raise DataError(str(exc)) from exc


def _data_root(data_dir) -> Path:
    """`data_dir`, else `$OBLIVIATE_DATA_DIR`, with messages naming obliviate's own options.

    (The task folder's messages name lm-eval's `--metadata` instead: it is also run without obliviate.)
    """
    utils = _task_utils()
    try:
        return utils.resolve_data_dir(data_dir)
    except utils.BenchmarkDataError as exc:  # the task folder's rule, with obliviate's options named
        ours = f"pass --data-dir (Python: data_dir=) or set {utils.DATA_DIR_ENV}"
        raise DataError(str(exc).replace(utils.HOW_TO_PASS_DATA_DIR, ours)) from exc


def lm_eval_task_name(task: str) -> str:
    """The lm-eval task name of one of `GENERAL_TASKS` ("arc_easy" -> "obliviate_arc_easy")."""
    return f"obliviate_{task}"


def _check_task_names(tasks) -> tuple[str, ...]:
    if isinstance(tasks, str):
        tasks = (tasks,)
    tasks = tuple(tasks)
    if not tasks:
        raise ConfigError(f"No general-ability task chosen: pick some of {', '.join(GENERAL_TASKS)}.")
    unknown = [task for task in tasks if task not in GENERAL_TASKS]
    if unknown:
        raise ConfigError(
            f"Unknown general-ability task(s) {', '.join(map(repr, unknown))}: choose from {', '.join(GENERAL_TASKS)}."
        )
    return tuple(dict.fromkeys(tasks))


def benchmark_files(tasks=GENERAL_TASKS) -> list[str]:
    """The files the chosen benchmarks read, relative to the data root (e.g. "benchmarks/piqa/valid.jsonl").

    Args:
        tasks: names from `GENERAL_TASKS`.

    Returns:
        Paths relative to the data root, in task order (for checksums or a manifest).
    """
    utils = _task_utils()
    return [f"benchmarks/{f}" for task in _check_task_names(tasks) for f in utils.BENCHMARK_FILES[task][0]]


def check_data(data_dir, tasks=GENERAL_TASKS) -> None:
    """Check that every file the chosen benchmarks need is present.

    Args:
        data_dir: data root holding `benchmarks/` (or that folder itself); `None` reads
            `$OBLIVIATE_DATA_DIR`.
        tasks: names from `GENERAL_TASKS`.

    Raises:
        ConfigError: an unknown task name.
        DataError: no data folder, or a missing file (named, with the expected layout).
    """
    utils = _task_utils()
    tasks = _check_task_names(tasks)
    root = _data_root(data_dir)
    with _as_data_error():
        for task in tasks:
            files, _ = utils.BENCHMARK_FILES[task]
            for relative in files:
                utils.benchmark_path(root, relative)


def load_benchmark_docs(task: str, data_dir=None) -> list[dict]:
    """Every document of one benchmark, as the lm-eval task sees it (no model involved).

    Args:
        task: a name from `GENERAL_TASKS`.
        data_dir: data root holding `benchmarks/`; `None` reads `$OBLIVIATE_DATA_DIR`.

    Returns:
        The documents in file order, in the schema of the HF dataset lm-eval's own task reads.
    """
    (task,) = _check_task_names((task,))
    root = _data_root(data_dir)
    with _as_data_error():
        return _task_utils().load_docs(task, root)


def check_vocab_coverage(tokenizer, texts, source: str = "the benchmark text") -> None:
    """Refuse text that the tokenizer largely maps to its unknown token.

    A model that cannot see a benchmark's characters would score near chance, and that would be
    read as forgetting; this check makes it an error instead.

    Args:
        tokenizer: a Hugging Face tokenizer.
        texts: the strings the model will be scored on.
        source: what the texts are, for the message (e.g. "obliviate_boolq").

    Raises:
        DataError: more than 1% of the tokens are the unknown token.
    """
    unk_id = getattr(tokenizer, "unk_token_id", None)
    texts = [text for text in texts if text]
    if unk_id is None or not texts:
        return  # byte-level vocabularies have no unknown token: every text is covered
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    total = sum(len(row) for row in ids)
    unknown = sum(token == unk_id for row in ids for token in row)
    if total and unknown / total > MAX_UNK_SHARE:
        raise DataError(
            f"The tokenizer maps {unknown / total:.1%} of {source} ({unknown} of {total} tokens) to its "
            f"unknown token {tokenizer.unk_token!r}: the model's vocabulary does not cover this text, so "
            "its score would be meaningless. Use a model whose tokenizer covers the text, or drop this task."
        )


def _task_texts(task, docs) -> list[str]:
    """Every string the model is scored on for these documents: context(s), choices, target."""
    texts = []
    for doc in docs:
        for part in (task.doc_to_text(doc), task.doc_to_target(doc), *task.doc_to_choice(doc)):
            if isinstance(part, str):
                texts.append(part)
    return texts


def _docs_to_check(task, limit):
    docs = task.eval_docs
    count = len(docs) if limit is None else min(limit, len(docs))
    step = max(1, count // VOCAB_CHECK_DOCS)
    return [docs[i] for i in range(0, count, step)]


class _DropCustomKwargsNotice(logging.Filter):
    # lm-eval warns on every task with a `custom_dataset` that kwargs can come from --metadata:
    # our runner does exactly that, so the notice is noise here.
    def filter(self, record):
        return "Custom kwargs can be passed" not in record.getMessage()


def _metric(task_results: dict, name: str):
    value = task_results.get(f"{name},none")
    if value is None or value == "N/A":
        return None
    value = float(value)
    return None if math.isnan(value) else value


def _check_int(name: str, value, minimum: int, allow_none: bool = False):
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        also = " or None" if allow_none else ""
        raise ConfigError(f"{name} must be a whole number >= {minimum}{also}, got {value!r}.")


def run_general_ability(
    model,
    tokenizer,
    tasks=GENERAL_TASKS,
    data_dir=None,
    limit=None,
    batch_size=8,
    num_fewshot=0,
    progress=False,
) -> dict:
    """Score a loaded causal LM on general-ability benchmarks with lm-evaluation-harness.

    Args:
        model: an already-loaded Hugging Face causal LM (left on its device; put back in its
            train/eval mode afterwards).
        tokenizer: its tokenizer.
        tasks: names from `GENERAL_TASKS`.
        data_dir: data root holding `benchmarks/` (or that folder itself); `None` reads
            `$OBLIVIATE_DATA_DIR`.
        limit: score only the first `limit` documents of each task (None: all of them).
        batch_size: lm-eval batch size.
        num_fewshot: in-context examples, drawn from the same split (published numbers are 0-shot).
        progress: show lm-eval's progress bars for the model calls.

    Returns:
        `{task: {"acc", "acc_stderr", "acc_norm", "acc_norm_stderr", "n", "lm_eval_task", "limit"}}`;
        `acc_norm` and its stderr are None for BoolQ and WinoGrande, which lm-eval scores by acc
        only; a stderr is None when lm-eval cannot give one (a single document).

    Raises:
        ConfigError: unknown task or bad limit / batch_size / num_fewshot.
        DataError: missing data folder or file, malformed file, a vocabulary that does not cover
            a benchmark, or a task that produced no score.
    """
    tasks = _check_task_names(tasks)
    _check_int("limit", limit, 1, allow_none=True)
    _check_int("batch_size", batch_size, 1)
    _check_int("num_fewshot", num_fewshot, 0)
    data_dir = _data_root(data_dir)
    check_data(data_dir, tasks)

    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    names = [lm_eval_task_name(task) for task in tasks]
    notice_filter = _DropCustomKwargsNotice()
    task_logger = logging.getLogger("lm_eval.api.task")
    task_logger.addFilter(notice_filter)
    was_training = model.training
    try:
        task_manager = TaskManager(
            include_path=str(LM_EVAL_TASKS_DIR), include_defaults=False, metadata={"data_dir": str(data_dir)}
        )
        with _as_data_error():  # a malformed file is found when lm-eval builds the task
            loaded = task_manager.load(names)["tasks"]
        for name, task in loaded.items():
            check_vocab_coverage(tokenizer, _task_texts(task, _docs_to_check(task, limit)), source=name)

        lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)
        if not progress:
            lm.loglikelihood = functools.partial(lm.loglikelihood, disable_tqdm=True)
        output = lm_eval.simple_evaluate(
            model=lm,
            tasks=[loaded[name] for name in names],
            task_manager=task_manager,
            num_fewshot=num_fewshot or None,  # None: lm-eval's 0-shot default, without its override notice
            limit=limit,
            log_samples=False,
            # keep the caller's random state: 0-shot scoring draws nothing at random
            random_seed=None,
            numpy_random_seed=None,
            torch_random_seed=None,
        )
    finally:
        task_logger.removeFilter(notice_filter)
        model.train(was_training)

    scores = {}
    for task, name in zip(tasks, names):
        task_results = output["results"].get(name, {})
        n = int(output.get("n-samples", {}).get(name, {}).get("effective", 0))
        acc = _metric(task_results, "acc")
        if acc is None or n == 0:
            raise DataError(
                f"lm-eval returned no accuracy for {name} ({n} documents scored): check the files under "
                f"{data_dir} and the limit ({limit})."
            )
        scores[task] = {
            "acc": acc,
            "acc_stderr": _metric(task_results, "acc_stderr"),
            "acc_norm": _metric(task_results, "acc_norm"),
            "acc_norm_stderr": _metric(task_results, "acc_norm_stderr"),
            "n": n,
            "lm_eval_task": name,
            "limit": limit,
        }
    return scores


def compute_general_ability(model, tokenizer, spec: GeneralAbilitySpec, ctx: MetricContext) -> MetricResult:
    """Mean accuracy over the spec's benchmarks (higher is better); per-task scores in the details."""
    from obliviate.evaluation.metric_math import mean_stderr

    r = run_general_ability(model, tokenizer, tasks=spec.tasks, data_dir=ctx.data_dir, limit=spec.limit,
                            batch_size=spec.batch_size, num_fewshot=spec.num_fewshot, progress=ctx.progress)
    accs = [t["acc"] for t in r.values()]
    mean, _ = mean_stderr(accs)
    # stderr of the mean of independent task accuracies
    stderrs = [t["acc_stderr"] for t in r.values() if t.get("acc_stderr") is not None]
    stderr = (sum(s * s for s in stderrs) ** 0.5) / len(accs) if len(stderrs) == len(accs) else None
    return MetricResult(value=mean, higher_is_better=True, n=sum(t["n"] for t in r.values()), stderr=stderr,
                        settings=asdict(spec), details={"tasks": r})
