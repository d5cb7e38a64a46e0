"""``obliviate bench tofu``: TOFU end to end, every method judged against a gold retain model.

TOFU (Maini et al. 2024) fine-tunes a model on question/answer pairs about fictitious authors,
then asks it to forget some authors. The reference is the *gold* model: the same fine-tuning
without the forget authors. The bench builds, under ``--out``, ordinary run folders:

1. ``target/``: the model fine-tuned on the forget split plus the retain pairs (``full`` in the
   full protocol); ``gold/``: the same fine-tuning on the retain pairs only (``retainXX``);
2. ``unlearn/<method>/``: each requested method unlearns the forget split from the target model at
   the same number of optimizer steps, with the retain pairs as retain data where it uses them;
   ``whp/``: "Who's Harry Potter?" with its reinforced model (the target trained further on the
   forget split, ``whp_reinforced/``) and anchored terms proposed from the forget vs retain text;
3. ``eval/<name>.json``: TOFU's raw per-item scores of every model
   (:func:`obliviate.evaluation.tofu.tofu_scores`), reused while the weights and settings match;
4. ``results.json``, ``results.md`` (one table: forget quality, model utility, forget ROUGE,
   PrivLeak, wall time; target and gold first, as open-unlearning's leaderboard) and
   ``report.html`` (each model's forget truth ratios against the gold model's).

A folder already complete for the same inputs is reused, so an interrupted bench resumes where it
stopped. ``--preset gpu`` (the default) is TOFU's own protocol; ``--preset cpu`` a documented
subset that a 2-core machine runs in about 81 minutes (benchmarks/RESULTS.md) (:data:`PRESETS`).
"""

from __future__ import annotations

import json
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from obliviate.config import ADDED_SETTING, from_dict, merge, to_dict
from obliviate.errors import ConfigError, DataError
from obliviate.methods.undo import UndoConfig
from obliviate.train import TrainConfig

__all__ = ["TofuBenchConfig", "PRESETS", "run_bench", "AUTHOR_PAIRS"]

AUTHOR_PAIRS = 20  # TOFU: author i owns pairs 20*i .. 20*i+19 of `full`


@dataclass
class TofuEvalSettings:
    """What each model is evaluated on (TOFU's sets) and how."""

    limit: int | None = None  # most items per set (retain/real authors/world facts/holdout; the forget set is whole)
    max_new_tokens: int = 200  # greedy answer length for ROUGE (open-unlearning: 200)
    batch_size: int = 8
    k: float = 0.4  # Min-K% for the membership attack behind PrivLeak (MUSE: 0.4)

    def check(self) -> list[tuple[str, bool, str]]:
        return [("limit", self.limit is None or self.limit >= 1, ">= 1 or null"),
                ("max_new_tokens", self.max_new_tokens >= 1, ">= 1"), ("batch_size", self.batch_size >= 1, ">= 1"),
                ("k", 0 < self.k <= 1, "in (0, 1]")]


@dataclass
class TofuWHPSettings:
    """WHP on TOFU: its reinforced model, anchored terms and generic labels."""

    reinforce: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=3, learning_rate=3e-5, batch_size=4))
    alpha: float = 5.0  # generic predictions v_base - alpha * relu(v_reinforced - v_base)
    top_k_terms: int = 100  # anchored terms proposed from the forget vs retain text
    context_length: int = 256  # tokens per block of forget text


@dataclass
class TofuBenchConfig:
    """A whole TOFU bench."""

    model: str = "smollm2-135m"  # the pre-trained model: embedded name, HF folder, .gguf file or hub id
    split: str = "forget01"  # forget01, forget05 or forget10
    methods: list[str] = field(default_factory=list)  # unlearning methods and/or "whp"; empty = all of them
    data_dir: str = ""  # the folder holding tofu/ (default: --data-dir / $OBLIVIATE_DATA_DIR)
    retain_authors: int | None = None  # learn only the first N retain authors (None: all of retainXX)
    finetune: TrainConfig = field(default_factory=lambda: TrainConfig(
        epochs=5, learning_rate=1e-5, batch_size=4, grad_accum=8, warmup_ratio=0.2, weight_decay=0.01))
    unlearn: TrainConfig = field(default_factory=lambda: TrainConfig(
        epochs=10, learning_rate=1e-5, batch_size=4, grad_accum=8, warmup_ratio=0.1, weight_decay=0.01))
    method_settings: dict[str, dict[str, Any]] = field(default_factory=dict)  # {method: {setting: value}}
    # UNDO after every unlearning method (undo.enabled=true; its distillation text: the retain pairs and
    # undo.general); not for whp
    undo: UndoConfig = field(default_factory=UndoConfig, metadata=ADDED_SETTING)
    whp: TofuWHPSettings = field(default_factory=TofuWHPSettings)
    eval: TofuEvalSettings = field(default_factory=TofuEvalSettings)
    trust_remote_code: bool = False
    # another bench folder whose target and gold models this bench reuses (e.g. to try other unlearning
    # settings without training them again); its training data and settings must be this bench's own
    references: str = ""

    def check(self) -> list[tuple[str, bool, str]]:
        from obliviate.tofu import SPLITS

        return [("split", self.split in SPLITS, f"one of {', '.join(SPLITS)}"),
                ("retain_authors", self.retain_authors is None or self.retain_authors >= 1, ">= 1 or null")]


# TOFU's protocol (locuslab/tofu config/finetune.yaml: 5 epochs, lr 1e-5, batch 32, one warm-up
# epoch, weight decay 0.01; open-unlearning configs/experiment/unlearn/tofu: 10 epochs, lr 1e-5,
# batch 32) is the default. The CPU preset keeps its shape on a subset: 6 retain authors (the same
# for target and gold: full's authors 0-5, whose questions retain_perturbed holds), a 135M model's
# learning rates, 12 unlearning steps, 40 items per evaluation set and 64-token answers.
PRESETS: dict[str, dict] = {
    "gpu": {},
    "cpu": {
        "retain_authors": 6,
        "finetune": {"epochs": 5, "learning_rate": 2e-4, "batch_size": 8, "grad_accum": 1, "warmup_ratio": 0.1},
        "unlearn": {"max_steps": 12, "learning_rate": 2e-5, "batch_size": 8, "grad_accum": 1, "warmup_ratio": 0.0},
        "whp": {"reinforce": {"epochs": 3, "learning_rate": 1e-4, "batch_size": 8}},
        "eval": {"limit": 40, "max_new_tokens": 64},
    },
}


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def all_methods() -> list[str]:
    from obliviate.methods import UNLEARNING_METHODS

    return [*UNLEARNING_METHODS, "whp"]


def make_config(preset: str = "gpu", overrides: dict | None = None) -> TofuBenchConfig:
    """The preset's settings with ``overrides`` (nested dicts) on top, checked."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset '{preset}': use one of {', '.join(PRESETS)}")
    merged = merge(PRESETS[preset], overrides or {})
    config = from_dict(TofuBenchConfig, merged)  # messages name the keys as --set takes them
    unknown = [m for m in config.methods if m not in all_methods()]
    if unknown:
        raise ConfigError(f"unknown method '{unknown[0]}': choose among {', '.join(all_methods())}")
    check_method_settings(config)
    if config.undo.enabled and "whp" in (config.methods or all_methods()):
        raise ConfigError("undo.enabled follows the unlearning methods, not whp: name the methods with --methods "
                          "(without whp)")
    return config


def check_method_settings(config: TofuBenchConfig) -> None:
    """Every ``method_settings.<method>.<key>`` checked as the method would check it, before any work.

    Raises:
        ConfigError: an unknown method, one the bench does not run, or a bad setting (named in full).
    """
    from obliviate.methods import UNLEARNING_METHODS, make_method

    methods = config.methods or all_methods()
    for name, settings in config.method_settings.items():
        if name == "whp":
            raise ConfigError("'method_settings.whp' is not a setting: WHP's settings are the whp section "
                              "(e.g. --set whp.alpha=2)")
        if name not in UNLEARNING_METHODS:
            raise ConfigError(f"unknown method 'method_settings.{name}': choose among {', '.join(UNLEARNING_METHODS)}")
        if name not in methods:
            raise ConfigError(f"'method_settings.{name}' is set but {name} is not among --methods: add it or drop "
                              "the setting")
        if not isinstance(settings, dict):
            raise ConfigError(f"'method_settings.{name}' must be a mapping of settings, e.g. "
                              f"--set method_settings.{name}.KEY=VALUE")
        try:
            make_method(name, settings)
        except ConfigError as error:  # name the key as the bench takes it
            raise ConfigError(re.sub(r"(?<![\w.])method\.", f"method_settings.{name}.", str(error))) from None


def check_inputs(config: TofuBenchConfig, out: Path) -> None:
    """What can be checked before any file is written: the data, the model, the output folder.

    Raises:
        DataError / ModelError / ConfigError: one line naming the input and what to do.
    """
    from obliviate.models import resolve_model_path

    _tofu_dir(config)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out '{out}' is a file: pass a folder (new, or a bench folder to resume)")
    resolve_model_path(config.model)
    if config.references:
        check_references(config, out)


def check_references(config: TofuBenchConfig, out: Path) -> None:
    """The ``references`` bench folder holds complete target and gold models made as this bench would make them.

    Raises:
        ConfigError: a missing or unfinished model, or one trained on other data or with other settings.
    """
    import yaml

    folder = Path(config.references)
    if folder.resolve() == out.resolve():
        raise ConfigError("--references names the bench folder itself: leave it out to reuse its own models")
    rows = training_rows(config)
    for name, learnt in (("target", "target"), ("gold", "retain")):
        run = folder / name
        try:
            complete = json.loads((run / "manifest.json").read_text(encoding="utf-8")).get("complete")
            settings = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8"))
            data = (folder / "data" / f"{learnt}.jsonl").read_text(encoding="utf-8")
        except (OSError, ValueError, yaml.YAMLError):
            complete = False
        if not complete:
            raise ConfigError(f"--references '{folder}' holds no finished {name} model: pass a bench folder whose "
                              "bench tofu run trained its target and gold models")
        if data != _jsonl_text(rows[learnt]):
            raise ConfigError(f"--references '{folder}': its {name} model learnt other pairs (another split or "
                              "retain authors): pass a bench of the same split and --retain-authors")
        if settings.get("model") != config.model or settings.get("train") != to_dict(config.finetune):
            raise ConfigError(f"--references '{folder}': its {name} model was trained from another model or with "
                              "other finetune settings: use the same --model and finetune.* settings")


# ---- data ----

def _tofu_dir(config: TofuBenchConfig) -> Path:
    from obliviate.evaluation.data import default_data_dir

    root = Path(config.data_dir) if config.data_dir else default_data_dir()
    folder = (root / "tofu") if root else None
    if folder is None or not (folder / "full.json").is_file():
        raise DataError(f"TOFU data not found{' under ' + str(folder) if folder else ''}: pass --data-dir with the "
                        "folder that holds tofu/full.json (see ../shared/data/SOURCES.md)")
    return folder


def _jsonl_text(rows: list[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    from obliviate.runs import atomic_write_text

    atomic_write_text(path, _jsonl_text(rows))


def _split_pairs(config: TofuBenchConfig) -> tuple[list, list, list[int]]:
    """The forget pairs, the retain pairs of the kept authors, and those authors."""
    from obliviate.tofu import load_qa, read_records, split_files

    folder = _tofu_dir(config)
    full = read_records(folder / "full.json")
    author = {r["question"]: i // AUTHOR_PAIRS for i, r in enumerate(full)}
    files_of = split_files(config.split)
    forget = load_qa(folder / files_of.forget)
    retain = load_qa(folder / files_of.retain)
    retain_authors = sorted({author[qa.question] for qa in retain if qa.question in author})
    if config.retain_authors is not None:
        retain_authors = retain_authors[:config.retain_authors]
    keep = set(retain_authors)
    return forget, [qa for qa in retain if author.get(qa.question) in keep], retain_authors


def training_rows(config: TofuBenchConfig) -> dict[str, list[dict]]:
    """The rows of the bench's training files: ``forget``, ``retain`` and ``target`` (forget + retain)."""
    forget, retain, _ = _split_pairs(config)
    pair = lambda qa: {"question": qa.question, "answer": qa.answer}  # noqa: E731
    return {"forget": [pair(qa) for qa in forget], "retain": [pair(qa) for qa in retain],
            "target": [pair(qa) for qa in forget + retain]}


def build_sets(config: TofuBenchConfig, out: Path) -> dict:
    """Write the training files under ``out/data`` and return the evaluation sets.

    Returns:
        ``{"train": {"target", "gold", "forget", "retain"}: paths, "eval": {set name: [TofuQA]},
        "retain_authors": [...]}``.
    """
    from obliviate.tofu import load_sets, spread

    folder = _tofu_dir(config)
    forget, _, retain_authors = _split_pairs(config)
    data = out / "data"
    files = {name: data / f"{name}.jsonl" for name in ("forget", "retain", "target")}
    for name, rows in training_rows(config).items():
        _write_jsonl(files[name], rows)
    _write_jsonl(data / "forget_text.jsonl",
                 [{"text": f"Question: {qa.question}\nAnswer: {qa.answer}"} for qa in forget])

    limit = config.eval.limit
    sets = {name: spread(items, limit) if name != "forget" else items
            for name, items in load_sets(folder, config.split, retain_authors=retain_authors).items()}
    return {"train": {k: str(v) for k, v in files.items()}, "forget_text": str(data / "forget_text.jsonl"),
            "eval": sets, "retain_authors": retain_authors}


# ---- models ----

def _qa_run(out: Path, **settings) -> Path:
    from obliviate.qa_run import QARun, QARunConfig

    run = QARun(from_dict(QARunConfig, settings, where="bench"), out)
    run.run()
    return out / "model"


def _seconds(folder: Path, stages) -> float:
    from obliviate.runs import RunFolder

    return round(sum(RunFolder(folder).stage_info(s).get("seconds", 0.0) for s in stages), 1)


def train_references(config: TofuBenchConfig, out: Path, files: dict) -> dict[str, Path]:
    """The target model (forget + retain pairs) and the gold model (retain pairs only)."""
    if config.references:  # checked before any work by check_references
        folder = Path(config.references)
        _say(f"[target] [gold] reused from {folder}")
        return {"target": folder / "target" / "model", "gold": folder / "gold" / "model"}
    common = {"model": config.model, "train": to_dict(config.finetune), "trust_remote_code": config.trust_remote_code}
    _say("[target] fine-tuning on the forget and retain pairs")
    target = _qa_run(out / "target", method="finetune", learn=[files["target"]], **common)
    _say("[gold] fine-tuning on the retain pairs only")
    gold = _qa_run(out / "gold", method="finetune", learn=[files["retain"]], **common)
    return {"target": target, "gold": gold}


def unlearn(config: TofuBenchConfig, out: Path, method: str, target: Path, files: dict, sets: dict) -> Path:
    """One method's unlearned model (a ``qa`` run folder; WHP: a ``whp`` run folder)."""
    if method == "whp":
        return _whp(config, out, target, files, sets)
    from obliviate.methods import UNLEARNING_METHODS

    retain = [files["retain"]] if UNLEARNING_METHODS[method] != "unused" or config.undo.enabled else []
    undo = {"undo": to_dict(config.undo)} if config.undo.enabled else {}
    settings = dict(config.method_settings.get(method, {}))
    if method == "probe_direction" and config.data_dir:  # its probes train on the data folder's toxicity sets
        settings.setdefault("data_dir", config.data_dir)
    return _qa_run(out / "unlearn" / method, model=str(target), method=method,
                   method_settings=settings, forget=[files["forget"]], retain=retain,
                   train=to_dict(config.unlearn), trust_remote_code=config.trust_remote_code, **undo)


def _whp(config: TofuBenchConfig, out: Path, target: Path, files: dict, sets: dict) -> Path:
    """WHP on TOFU: reinforce on the forget pairs, propose anchored terms, label, fine-tune."""
    from obliviate.models import load_model
    from obliviate.tofu import load_qa
    from obliviate.whp.pipeline import WHPConfig, WHPRun
    from obliviate.whp.propose import propose_anchored_terms, write_proposal

    reinforced = _qa_run(out / "whp_reinforced", model=str(target), method="finetune", learn=[files["forget"]],
                         train=to_dict(config.whp.reinforce), trust_remote_code=config.trust_remote_code)
    anchors = out / "data" / "anchors.yaml"
    if not anchors.is_file():
        text = lambda path: [f"Question: {qa.question}\nAnswer: {qa.answer}" for qa in load_qa(path)]  # noqa: E731
        base = load_model(str(target))
        strong = load_model(str(reinforced))
        rows = propose_anchored_terms(text(files["forget"]), text(files["retain"]), base.tokenizer,
                                      base_model=base.model, reinforced_model=strong.model,
                                      top_k=config.whp.top_k_terms)
        write_proposal(rows, anchors)
    whp = from_dict(WHPConfig, {
        "model": str(target), "anchors": str(anchors),
        "target": {"sources": [sets["forget_text"]], "context_length": config.whp.context_length,
                   "heldout_fraction": 0.0},
        "reinforce": {"model": str(reinforced)}, "labels": {"alpha": config.whp.alpha},
        "finetune": to_dict(config.unlearn), "trust_remote_code": config.trust_remote_code}, where="bench.whp")
    WHPRun(whp, out / "whp").run(stages=("reinforce", "labels", "finetune"))
    return out / "whp" / "model"


# ---- evaluation ----

def evaluate(config: TofuBenchConfig, out: Path, name: str, model_dir: Path, sets: dict) -> dict:
    """TOFU's raw scores of one model, cached in ``eval/<name>.json`` by weights and settings."""
    from obliviate.evaluation.tofu import tofu_scores
    from obliviate.hashing import settings_hash
    from obliviate.models import weights_hash
    from obliviate.models import load_model
    from obliviate.runs import atomic_write_json

    key = settings_hash({"weights": weights_hash(str(model_dir)), "eval": to_dict(config.eval),
                         "sets": {k: [qa.question for qa in v] for k, v in sets.items()}})
    path = out / "eval" / f"{name}.json"
    # the references' bench may hold this model's scores already (same weights, settings and sets)
    for known in (path, *([Path(config.references) / "eval" / f"{name}.json"] if config.references else [])):
        if known.is_file():
            cached = json.loads(known.read_text(encoding="utf-8"))
            if cached.get("key") == key:
                _say(f"[eval] {name}: reused {known}")
                if known != path:
                    atomic_write_json(path, cached)
                return cached
    _say(f"[eval] {name}")
    loaded = load_model(str(model_dir), trust_remote_code=config.trust_remote_code)
    start = time.perf_counter()
    raw = tofu_scores(loaded.model, loaded.tokenizer, sets, max_new_tokens=config.eval.max_new_tokens,
                      batch_size=config.eval.batch_size, k=config.eval.k, progress=True)
    record = {"key": key, "model": str(model_dir), "seconds": round(time.perf_counter() - start, 1), "raw": raw}
    atomic_write_json(path, record)
    return record


COLUMNS = (("forget_quality", "forget quality"), ("model_utility", "model utility"),
           ("forget_rouge", "forget ROUGE-L"), ("forget_truth_ratio", "forget truth ratio"),
           ("privleak", "PrivLeak"), ("extraction_strength", "extraction strength"))


def summarise(evaluations: dict, seconds: dict) -> list[dict]:
    """One row per model (target, gold, then the methods) against the gold model."""
    from obliviate.evaluation.tofu import tofu_summary

    gold = evaluations["gold"]["raw"]
    rows = []
    for name, record in evaluations.items():
        summary = tofu_summary(record["raw"], gold)
        rows.append({"model": name, **summary, "seconds": seconds.get(name), "eval_seconds": record["seconds"]})
    return rows


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1e-2 and value else f"{value:.3f}" if abs(value) < 100 else f"{value:.1f}"
    return str(value)


def results_markdown(rows: list[dict], config: TofuBenchConfig, command: str) -> str:
    head = "| model | " + " | ".join(title for _, title in COLUMNS) + " | wall time (s) |"
    lines = [head, "|" + "---|" * (len(COLUMNS) + 2)]
    for row in rows:
        lines.append(f"| {row['model']} | " + " | ".join(_cell(row.get(k)) for k, _ in COLUMNS)
                     + f" | {row['seconds']:.0f} |")
    target = next(r for r in rows if r["model"] == "target")
    lines += ["", f"Split {config.split}; forget quality = KS-test p-value of the forget truth ratios against the gold "
              "model's (1.0: indistinguishable; above 0.05: not distinguishable at 5%); model utility = harmonic mean "
              "of the nine retain / real-authors / world-facts numbers (target: "
              f"{_cell(target.get('model_utility'))}). Wall time: training of that model (unlearning for the "
              "methods; reinforce + labels + fine-tune for whp).", "", f"Command: `{command}`"]
    return "\n".join(lines) + "\n"


def _report(rows: list[dict], evaluations: dict, out: Path, markdown: str) -> None:
    """report.html: the table and each model's forget truth-ratio distribution against the gold's."""
    import html

    from obliviate.reporting.html_report import _figure, _img
    from obliviate.runs import atomic_write_text

    def ratios(name):
        return sorted(item["truth_ratio"] for item in evaluations[name]["raw"]["items"]["forget"])

    gold = ratios("gold")
    names = [r["model"] for r in rows if r["model"] != "gold"]
    cols = 4
    fig = _figure(3.2 * cols, 2.4 * ((len(names) + cols - 1) // cols))
    for i, name in enumerate(names):
        ax = fig.add_subplot((len(names) + cols - 1) // cols, cols, i + 1)
        values = ratios(name)
        ax.step(gold, [(j + 1) / len(gold) for j in range(len(gold))], where="post", label="gold", color="0.4")
        ax.step(values, [(j + 1) / len(values) for j in range(len(values))], where="post", label=name)
        quality = next(r for r in rows if r["model"] == name).get("forget_quality")
        ax.set_title(f"{name} (FQ {_cell(quality)})", fontsize=9)
        ax.set_xlabel("forget truth ratio", fontsize=8)
        ax.tick_params(labelsize=7)
    table = ["<table><tr><th>model</th>" + "".join(f"<th>{t}</th>" for _, t in COLUMNS) + "<th>s</th></tr>"]
    for row in rows:
        table.append(f"<tr><td>{html.escape(row['model'])}</td>"
                     + "".join(f"<td>{_cell(row.get(k))}</td>" for k, _ in COLUMNS)
                     + f"<td>{_cell(row.get('seconds'))}</td></tr>")
    page = ("<!doctype html><meta charset=utf-8><title>obliviate bench tofu</title>"
            "<style>body{font-family:sans-serif;max-width:1400px;margin:auto}td,th{padding:2px 8px;"
            "border-bottom:1px solid #ddd;text-align:right}</style><h1>TOFU bench</h1>" + "".join(table)
            + "</table><h2>Forget truth ratios against the gold model (empirical CDFs)</h2>"
            + _img(fig, "forget truth-ratio CDFs") + f"<pre>{html.escape(markdown)}</pre>")
    atomic_write_text(out / "report.html", page)


def run_bench(config: TofuBenchConfig, out, command: str = "obliviate bench tofu") -> list[dict]:
    """Every stage of the bench (see the module docstring); returns the table's rows."""
    from obliviate.runs import atomic_write_json, atomic_write_text

    out = Path(out)
    methods = config.methods or all_methods()
    check_inputs(config, out)
    sets = build_sets(config, out)
    files = sets["train"]
    _say(f"[bench] TOFU {config.split}: {len(sets['eval']['forget'])} forget pairs, "
         f"{len(sets['retain_authors'])} retain authors, methods {', '.join(methods)}")
    models = train_references(config, out, files)
    trained = Path(config.references) if config.references else out
    seconds = {"target": _seconds(trained / "target", ("train",)), "gold": _seconds(trained / "gold", ("train",))}
    for method in methods:
        _say(f"[unlearn] {method}")
        models[method] = unlearn(config, out, method, models["target"], files, sets)
        seconds[method] = (_seconds(out / "whp_reinforced", ("train",)) + _seconds(out / "whp", (
            "reinforce", "labels", "finetune"))) if method == "whp" else _seconds(out / "unlearn" / method, ("train", "undo"))
    evaluations = {name: evaluate(config, out, name, path, sets["eval"]) for name, path in models.items()}
    rows = summarise(evaluations, seconds)
    markdown = results_markdown(rows, config, command)
    atomic_write_json(out / "results.json", {"config": to_dict(config), "retain_authors": sets["retain_authors"],
                                             "rows": rows})
    atomic_write_text(out / "results.md", markdown)
    _report(rows, evaluations, out, markdown)
    _say(markdown)
    return rows
