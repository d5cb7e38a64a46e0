"""The model card ``model/README.md`` in the Hugging Face layout, from the run folder's files.

Hub metadata (``huggingface_hub.ModelCardData``): ``base_model`` and its relation, ``license``,
``library_name``, ``tags``, ``datasets``, ``language``, ``pipeline_tag`` and a ``model-index``
with the run's evaluation results (one ``EvalResult`` per measured metric of the unlearned model).
Then, in plain language, what was removed, how well and what it cost, and the method, base model,
evaluation table, provenance, how to load it and what the card does not promise.

Every number comes from ``manifest.json`` and ``metrics.json``. The base model's own card (its
license and languages) is read where the base is: a local folder's ``README.md``, the hub cache, or
the table of embedded models.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from obliviate.errors import DataError
from obliviate.hashing import file_hash
from obliviate.reporting.compare import format_number
from obliviate.reporting.results import change_verdict, comparison_rows, load_evaluations
from obliviate.runs import atomic_write_text

__all__ = ["CardSettings", "BaseModelFacts", "base_model_facts", "card_eval_results", "write_model_card"]

MAX_SETTINGS = 40  # hyperparameters listed in the card; manifest.json has all of them
TASK = {"task_type": "text-generation", "task_name": "Machine unlearning"}  # the model-index task of every result
_LICENSE = re.compile(r"[a-z0-9][a-z0-9.+-]*")  # Hub license ids: apache-2.0, mit, cc-by-4.0, llama3.1, other
_LANGUAGE = re.compile(r"[A-Za-z]{2,3}([-_][A-Za-z0-9]+)*")  # ISO 639 codes, optionally with a region
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")

# What each metric family measures, in plain words, for the "how well / what it cost" section.
FAMILY_WORDS = {
    "familiarity": ("the share of completions that show the knowledge", "prompts"),
    "token_probability": ("the probability the model gives the reference answers", "prompts"),
    "qa": ("the accuracy on questions, scored by log-likelihood", "questions"),
    "perplexity": ("the perplexity on text, how poorly the model predicts it", "tokens"),
    "general": ("the accuracy on general-ability benchmarks", "items"),
    "toxicity": ("the toxicity of continuations", "prompts"),
}


@dataclass
class CardSettings:
    """What the model card says that a run cannot find out itself (``card:`` in a config, ``--set card.X=V``).

    Changing them rewrites the card of a finished run and redoes no stage.
    """

    license: str = ""  # Hub license id of the unlearned model (apache-2.0, mit, other...); empty: the base model's
    language: list[str] = field(default_factory=list)  # its languages (ISO 639 codes, e.g. en); empty: the base's
    datasets: list[str] = field(default_factory=list)  # Hub ids of the datasets trained on; empty: those whose
    # files were read from the Hugging Face cache (datasets--ORG--NAME folders), if any

    def check(self) -> list[tuple[str, bool, str]]:
        """Format rules (see :func:`obliviate.config.validate`)."""
        return [("license", not self.license or bool(_LICENSE.fullmatch(self.license)),
                 "a Hub license id such as apache-2.0, mit or other (lower case, no spaces)"),
                ("language", all(_LANGUAGE.fullmatch(x) for x in self.language), "a list of ISO 639 codes such as en"),
                ("datasets", all(_HUB_ID.fullmatch(x) for x in self.datasets), "a list of Hub ids such as org/name")]


@dataclass
class BaseModelFacts:
    """What the card can say about the base model beyond its spec."""

    hub_id: str | None = None  # the base's Hub id: the card's base_model (never a local path)
    license: str | None = None
    license_name: str | None = None  # for license "other": its name and link
    license_link: str | None = None
    language: list[str] = field(default_factory=list)
    source: str = ""  # where these facts were read, for the card


def _front_matter(path: Path) -> dict:
    """The YAML metadata of a model card file (``{}`` when it has none or it does not parse)."""
    from huggingface_hub import metadata_load

    try:
        data = metadata_load(path)
    except Exception:  # a card we cannot read says nothing: the card then states the license is unknown
        return {}
    return data if isinstance(data, dict) else {}


def _hub_cache_id(path: Path, kind: str) -> str | None:
    """``org/name`` of a file or folder inside the Hugging Face cache (``{kind}s--org--name/snapshots/...``)."""
    for part in Path(path).parts:
        if part.startswith(f"{kind}s--"):
            return part[len(kind) + 3:].replace("--", "/")
    return None


def _hub_card(repo_id: str) -> Path | None:
    """The base's README.md from the hub cache, else downloaded (where the hub is reachable)."""
    from huggingface_hub import hf_hub_download, try_to_load_from_cache

    try:
        cached = try_to_load_from_cache(repo_id, "README.md")
        if isinstance(cached, str):
            return Path(cached)
        return Path(hf_hub_download(repo_id, "README.md", etag_timeout=5))
    except Exception:  # offline, gated or missing: the license stays unknown (settable with --license)
        return None


def _gguf_license(path: Path) -> str | None:
    """``general.license`` of a GGUF file's metadata, if it has one."""
    try:
        from gguf import GGUFReader

        found = GGUFReader(str(path)).fields.get("general.license")
        return bytes(found.parts[found.data[0]]).decode("utf-8") if found else None
    except Exception:  # not readable as GGUF: nothing known
        return None


def _as_list(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value] if isinstance(value, list) else []


def base_model_facts(spec: str) -> BaseModelFacts:
    """Hub id, license and languages of a base model spec, from wherever its card is.

    An embedded name: the model it was converted from (:data:`obliviate.models.EMBEDDED_ORIGINS`).
    A local folder (or run folder): its ``README.md`` front matter, and its Hub id only when the folder
    lies in the Hugging Face cache. A ``.gguf`` file: its ``general.license``. A hub id: its card in the
    hub cache (downloaded where the hub is reachable). Nothing found leaves a field empty.
    """
    from obliviate.models import EMBEDDED_ORIGINS

    spec = str(spec)
    if spec in EMBEDDED_ORIGINS:
        origin = EMBEDDED_ORIGINS[spec]
        return BaseModelFacts(hub_id=origin["hub_id"], license=origin["license"], language=list(origin["language"]),
                              source=f"the model card of {origin['hub_id']} (obliviate's embedded '{spec}')")
    path = Path(spec).expanduser()
    card = None
    if path.exists():
        hub_id = _hub_cache_id(path, "model")
        if path.is_file():
            license = _gguf_license(path) if path.suffix == ".gguf" else None
            return BaseModelFacts(hub_id=hub_id, license=license,
                                  source="the GGUF file's general.license" if license else "")
        card = next((c for c in (path / "README.md", path / "model" / "README.md") if c.is_file()), None)
    elif _HUB_ID.fullmatch(spec) and not spec.startswith((".", "~")):
        hub_id = spec
        card = _hub_card(spec)
    else:
        return BaseModelFacts()
    front = _front_matter(card) if card else {}
    license = front.get("license")
    return BaseModelFacts(hub_id=hub_id, license=str(license) if license else None,
                          license_name=front.get("license_name"), license_link=front.get("license_link"),
                          language=_as_list(front.get("language")),
                          source="the base model's README.md" if front else "")


def _flatten(data, prefix: str = "") -> dict:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists of scalars kept as lists."""
    flat = {}
    if isinstance(data, dict):
        for key, value in data.items():
            flat.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    else:
        flat[prefix] = data
    return flat


def _method_reference(method: str) -> str:
    """What the method does and its paper, from the method registry (each method class's facts)."""
    from obliviate.methods import METHODS, method_reference  # the methods import torch: only when a card is written

    return method_reference(method) if method in METHODS else "see the obliviate documentation"


def _md(text) -> str:
    """A markdown table cell: pipes escaped, one line."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def _evaluation_table(evaluations: dict) -> str:
    labels = list(evaluations)
    header = ["metric", "group", "goal", labels[0]]
    for label in labels[1:]:
        header += [label, f"change vs {labels[0]}"]
    lines = ["| " + " | ".join(_md(h) for h in header) + " |", "|" + "---|" * len(header)]
    for row in comparison_rows(evaluations):
        def cell(i):
            c = row.cells[i]
            if c is None:
                return "-"
            if "skipped" in c:
                return "skipped"
            text = format_number(float(c["value"]))
            stderr = c.get("stderr")
            return text + (f" ± {format_number(float(stderr))}" if isinstance(stderr, (int, float)) else "")

        name = f"*{row.name}*" if row.is_summary else row.name
        goal = {True: "higher", False: "lower"}.get(row.higher_is_better, "")
        cells = [name, row.group or "", goal, cell(0)]
        for i in range(1, len(labels)):
            delta = row.delta(i)
            verdict = change_verdict(delta, row.higher_is_better)
            change = format_number(delta, signed=True) + (f" ({verdict})" if verdict else "") if delta is not None else ""
            cells += [cell(i), change]
        lines.append("| " + " | ".join(_md(c) for c in cells) + " |")
    skipped = [f"- {label} / {row.name}: {_md(c['skipped'])}" for row in comparison_rows(evaluations)
               for label, c in zip(labels, row.cells) if c and "skipped" in c and not row.is_summary]
    notes = ["", f"*goal*: the direction of a successful unlearning; *change*: value minus `{labels[0]}`; "
             "group means (in italics) average the group's computed metrics."]
    if skipped:
        notes += ["", "Skipped metrics:", *skipped]
    return "\n".join(lines + notes)


def _before_after(evaluations: dict) -> tuple[str | None, str]:
    """Labels of the base and the unlearned evaluation (``base``/``unlearned``; else first/last)."""
    labels = list(evaluations)
    after = "unlearned" if "unlearned" in evaluations else labels[-1]
    before = "base" if "base" in evaluations and after != "base" else (labels[0] if labels[0] != after else None)
    return before, after


def _measured(metric) -> bool:
    return isinstance(metric, dict) and "skipped" not in metric and isinstance(metric.get("value"), (int, float)) \
        and not isinstance(metric.get("value"), bool) and math.isfinite(metric["value"])


def card_eval_results(evaluation: dict) -> list:
    """The model-index results of one evaluation: an ``EvalResult`` per measured metric.

    Task: text generation, named "Machine unlearning"; dataset: the suite (its name, and its sha256
    as the revision); metric: its name (type and name), value, group (config) and ``n``, ``stderr``,
    ``higher_is_better`` (args). Skipped metrics and non-finite values are left out.
    """
    from huggingface_hub import EvalResult

    suite = evaluation.get("suite") if isinstance(evaluation.get("suite"), dict) else {}
    suite_name = str(suite.get("name") or "unknown")
    results = []
    for name, metric in (evaluation.get("metrics") or {}).items():
        if not _measured(metric):
            continue
        args = {k: metric[k] for k in ("n", "stderr", "higher_is_better") if metric.get(k) is not None}
        results.append(EvalResult(**TASK, dataset_type=suite_name, dataset_name=suite_name,
                                  dataset_revision=suite.get("sha256") or None, metric_type=name, metric_name=name,
                                  metric_value=float(metric["value"]), metric_config=metric.get("group"),
                                  metric_args=args or None))
    return results


def _metric_line(name: str, before: dict | None, after: dict) -> str:
    """``- familiarity (the share of ...; lower is better): 0.8 before, 0.2 after (change -0.6, better), over 2 prompts.``"""
    words, unit = FAMILY_WORDS.get(after.get("family"), ("", "items"))
    aim = "more forgotten" if after.get("group") == "forget" else "better"
    goal = {True: f"higher is {aim}", False: f"lower is {aim}"}.get(after.get("higher_is_better"), "")
    about = "; ".join(x for x in (words, goal) if x)
    text = f"- **{_md(name)}**" + (f" ({about})" if about else "") + ": "
    value = format_number(float(after["value"]))
    if before is not None and _measured(before):
        delta = float(after["value"]) - float(before["value"])
        verdict = change_verdict(delta, after.get("higher_is_better"))
        text += (f"{format_number(float(before['value']))} before, {value} after "
                 f"(change {format_number(delta, signed=True)}{', ' + verdict if verdict else ''})")
    else:
        text += f"{value} after (not measured before)"
    n = after.get("n")
    if isinstance(n, int) and not isinstance(n, bool):
        text += f", over {n} {unit if n != 1 else unit[:-1]}"
    if after.get("training_overlap"):
        text += "; measured partly on text the model trained on (`training_overlap` in metrics.json)"
    return text + "."


def _training_lines(manifest: dict) -> list[str]:
    lines = []
    for stage, info in (manifest.get("stages") or {}).items():
        if not isinstance(info, dict) or not isinstance(info.get("steps"), int):
            continue
        facts = [f"{info['steps']} optimizer steps"]
        if isinstance(info.get("tokens"), int):
            facts.append(f"{info['tokens']:,} tokens")
        if isinstance(info.get("seconds"), (int, float)):
            facts.append(f"{info['seconds']:g} s")
        lines.append(f"- **training, stage `{_md(stage)}`**: " + ", ".join(facts) + ".")
    return lines


def _removal_section(manifest: dict, method: str, evaluations: dict | None) -> list[str]:
    """"What was removed, how well, and what it cost", in plain language, from the run's files only."""
    out = ["## What was removed, how well, and what it cost", "",
           f"**What was removed:** {manifest.get('removed') or 'not stated in the manifest'}, with the method "
           f"`{method}`: {_method_reference(method)}.", ""]
    if not evaluations:
        training = _training_lines(manifest)
        out += ["**How well, and what it cost:** not measured: the run folder has no metrics.json.", ""]
        return out + training + ([""] if training else [])
    before_label, after_label = _before_after(evaluations)
    after = evaluations[after_label]
    before = evaluations.get(before_label, {}) if before_label else {}
    suite = after.get("suite") if isinstance(after.get("suite"), dict) else {}
    measured = f"`{after_label}` (this model)" + (f" against `{before_label}` (the base model)" if before_label else "")
    out += [f"Measured by obliviate on the suite `{suite.get('name') or 'unknown'}` "
            + (f"(sha256 `{suite['sha256']}`) " if suite.get("sha256") else "") + f"for {measured}; "
            "every number below is in this run's metrics.json.", ""]
    groups = {"how": ("forget", "robustness"), "cost": ("retain", "utility")}
    for key, title in (("how", "**How well** (forget and robustness metrics):"),
                       ("cost", "**What it cost** (retain and utility metrics, and the training):")):
        lines = [_metric_line(name, (before.get("metrics") or {}).get(name), metric)
                 for name, metric in (after.get("metrics") or {}).items()
                 if _measured(metric) and metric.get("group") in groups[key]]
        if key == "cost":
            lines += _training_lines(manifest)
        out += [title, ""] + (lines or ["- no such metric was measured."]) + [""]
    skipped = [f"{_md(name)} ({_md(m['skipped'])})" for name, m in (after.get("metrics") or {}).items()
               if isinstance(m, dict) and "skipped" in m]
    if skipped:
        out += ["Not measured: " + "; ".join(skipped) + ".", ""]
    return out


def _front(manifest: dict, run_dir: Path, method: str, settings: CardSettings, base: BaseModelFacts,
           evaluations: dict | None, adapter: bool):
    """The card's Hub metadata."""
    from huggingface_hub import ModelCardData

    config = manifest.get("hyperparameters") if isinstance(manifest.get("hyperparameters"), dict) else {}
    sources = [s for part in ("target", "forget", "retain")
               for s in _as_list((config.get(part) or {}).get("sources") if isinstance(config.get(part), dict) else [])]
    datasets = settings.datasets or sorted({d for s in sources if (d := _hub_cache_id(Path(s), "dataset"))})
    results = card_eval_results(evaluations[_before_after(evaluations)[1]]) if evaluations else []
    tags = ["obliviate", "machine-unlearning", method] + (["lora"] if (config.get("lora") or {}).get("enabled") else [])
    license = settings.license or base.license or "unknown"
    other = not settings.license and license == "other"
    return ModelCardData(
        model_name=run_dir.resolve().name if results else None, base_model=base.hub_id,
        base_model_relation=("adapter" if adapter else "finetune") if base.hub_id else None,
        license=license, license_name=base.license_name if other else None,
        license_link=base.license_link if other else None,
        library_name="peft" if adapter else "transformers", pipeline_tag="text-generation", tags=tags,
        datasets=datasets or None, language=settings.language or base.language or None,
        eval_results=results or None)


def _card_settings(manifest: dict) -> CardSettings:
    from obliviate.config import from_dict
    from obliviate.errors import ConfigError

    data = (manifest.get("hyperparameters") or {}).get("card") if isinstance(manifest.get("hyperparameters"),
                                                                               dict) else None
    try:
        return from_dict(CardSettings, data or {}, where="card")
    except ConfigError as err:
        raise DataError(f"manifest.json: {err}") from err


def write_model_card(run_dir) -> Path:
    """Write ``run_dir/model/README.md``, the Hugging Face model card of the unlearned model.

    Args:
        run_dir: a run folder with ``model/`` and ``manifest.json`` (``metrics.json`` if present
            gives the results: the model-index and the evaluation table).

    Returns:
        The path of the card written (``huggingface_hub.ModelCard.load`` reads it).

    Raises:
        DataError: ``model/`` or ``manifest.json`` is missing, or a file is malformed.
    """
    from huggingface_hub import ModelCard

    run_dir = Path(run_dir)
    model_dir = run_dir / "model"
    manifest_path = run_dir / "manifest.json"
    if not model_dir.is_dir():
        raise DataError(f"'{model_dir}' not found: the model card describes the unlearned model; "
                        "finish the run's training stage first")
    if not manifest_path.is_file():
        raise DataError(f"'{manifest_path}' not found: finish the run (its last stage writes the manifest), "
                        "then write the card")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"cannot read '{manifest_path}' ({err}); rerun the run's last stage to rewrite it") from err
    if not isinstance(manifest, dict):
        raise DataError(f"'{manifest_path}' is not a JSON object; rerun the run's last stage to rewrite it")

    method = str(manifest.get("method") or "unknown")
    base_record = manifest.get("base_model") if isinstance(manifest.get("base_model"), dict) else {}
    spec = str(base_record.get("spec") or "unknown")
    unlearned = manifest.get("unlearned_model") if isinstance(manifest.get("unlearned_model"), dict) else {}
    adapter = (model_dir / "adapter_config.json").is_file() and not (model_dir / "config.json").is_file()
    settings = _card_settings(manifest)
    base = base_model_facts(spec) if spec != "unknown" else BaseModelFacts()
    evaluations = load_evaluations(run_dir) if (run_dir / "metrics.json").is_file() else None
    front = _front(manifest, run_dir, method, settings, base, evaluations, adapter)
    local = base.hub_id is None and Path(spec).expanduser().is_absolute()
    shown = base.hub_id or (f"{Path(spec).name} (a local model)" if local else spec)
    name = run_dir.resolve().name

    out = [f"# {name}: {shown} with knowledge removed by obliviate", ""]
    out += _removal_section(manifest, method, evaluations)
    inputs = manifest.get("inputs") if isinstance(manifest.get("inputs"), dict) else {}
    inputs = {key: value for key, value in inputs.items() if value}  # an unused input (no retain text) has ""
    if inputs:
        out += ["Inputs (sha256):", ""] + [f"- {key}: `{value}`" for key, value in inputs.items()] + [""]

    out += ["## Method", "", f"`{method}`: {_method_reference(method)}.", ""]
    hyperparameters = {k: v for k, v in _flatten(manifest.get("hyperparameters") or {}).items()
                       if v not in (None, [], {}, "")}
    if hyperparameters:
        out += ["| setting | value |", "|---|---|"]
        out += [f"| {_md(k)} | {_md(json.dumps(v, ensure_ascii=False) if not isinstance(v, str) else v)} |"
                for k, v in list(hyperparameters.items())[:MAX_SETTINGS]]
        if len(hyperparameters) > MAX_SETTINGS:
            out.append(f"\n{len(hyperparameters) - MAX_SETTINGS} more settings in manifest.json.")
        out.append("")

    out += ["## Base model", "", f"- spec: `{spec}`"]
    if base.hub_id:
        out.append(f"- on the Hugging Face Hub: [{base.hub_id}](https://huggingface.co/{base.hub_id})"
                   + (" (obliviate's embedded model: a GGUF quantisation of it, dequantised to float32)"
                      if spec != base.hub_id and not local else ""))
    if settings.license:
        out.append(f"- license of this model: `{settings.license}`, as set by the run (card.license)")
    elif base.license:
        out.append(f"- license: `{base.license}`, from {base.source}")
    else:
        out.append("- license: unknown (the base model's card states none): set it with `--license ID` "
                   "(or `card.license` in the config) and run the same command again")
    out.append(f"- weights sha256: `{base_record.get('weights_sha256') or 'unknown'}`")
    if unlearned.get("weights_sha256"):
        out.append(f"- this model's weights sha256: `{unlearned['weights_sha256']}`")
    out.append("")

    out += ["## Evaluation", ""]
    if evaluations:
        out += [_evaluation_table(evaluations), ""]
    else:
        out += ["No metrics.json in the run folder: this model was not evaluated by obliviate.", ""]

    versions = manifest.get("versions") if isinstance(manifest.get("versions"), dict) else {}
    out += ["## Provenance", "", f"- manifest.json sha256: `{file_hash(manifest_path)}`"]
    if manifest.get("written"):
        out.append(f"- written: {manifest['written']}")
    if manifest.get("complete") is False:
        out.append("- the manifest marks this run as **incomplete**")
    if versions:
        out.append("- versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    out.append("")

    out += ["## How to load", "", "```python"]
    if adapter:
        out += ["from peft import PeftModel", "from transformers import AutoModelForCausalLM, AutoTokenizer", "",
                f'base = AutoModelForCausalLM.from_pretrained("{base.hub_id or "path/to/the/base/model"}")',
                'path = "path/to/model"  # this folder (a LoRA adapter), or its hub id once uploaded',
                "model = PeftModel.from_pretrained(base, path)",
                "tokenizer = AutoTokenizer.from_pretrained(path)"]
    else:
        out += ["from transformers import AutoModelForCausalLM, AutoTokenizer", "",
                'path = "path/to/model"  # this folder, or its hub id once uploaded',
                "model = AutoModelForCausalLM.from_pretrained(path)",
                "tokenizer = AutoTokenizer.from_pretrained(path)"]
    out += ["```", ""]

    out += ["## Limitations", "",
            "- Unlearning here is approximate: the model was trained to stop producing the removed knowledge, "
            "not retrained without it. Traces may remain in its weights and can come back under other "
            "prompts, in other languages, or after a little fine-tuning (relearning).",
            "- The evaluation above is the whole evidence: it covers the prompts and metrics listed, not every way "
            "of asking. Check skipped metrics and robustness results before relying on the removal.",
            "- General ability can drop, on the removed topic's neighbours first; compare the retain and utility "
            "rows with the base model.",
            "- Everything else about the base model (its data, biases, license and intended use) still applies.",
            ""]
    card = ModelCard(f"---\n{front.to_yaml()}\n---\n\n" + "\n".join(out))
    path = model_dir / "README.md"
    atomic_write_text(path, str(card))
    return path
