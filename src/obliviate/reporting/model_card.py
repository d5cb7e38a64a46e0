"""The model card ``model/README.md`` in the Hugging Face layout, from the run folder's files only.

YAML front matter (base_model, library_name, tags, license), then what was removed, how, from
which base, with which results, how to load the model and what the card does not promise.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from obliviate.errors import DataError
from obliviate.hashing import file_hash
from obliviate.reporting.compare import format_number
from obliviate.reporting.results import change_verdict, comparison_rows, load_evaluations
from obliviate.runs import atomic_write_text

__all__ = ["write_model_card"]

# Embedded model names -> the hub model they were converted from (for the card's base_model).
EMBEDDED_BASES = {"smollm2-135m": "HuggingFaceTB/SmolLM2-135M-Instruct"}

MAX_SETTINGS = 40  # hyperparameters listed in the card; manifest.json has all of them


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


def write_model_card(run_dir) -> Path:
    """Write ``run_dir/model/README.md``, the Hugging Face model card of the unlearned model.

    Args:
        run_dir: a run folder with ``model/`` and ``manifest.json`` (``metrics.json`` if present
            gives the evaluation table).

    Returns:
        The path of the card written.

    Raises:
        DataError: ``model/`` or ``manifest.json`` is missing, or a file is malformed.
    """
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
    base = manifest.get("base_model") if isinstance(manifest.get("base_model"), dict) else {}
    spec = str(base.get("spec") or "unknown")
    unlearned = manifest.get("unlearned_model") if isinstance(manifest.get("unlearned_model"), dict) else {}
    front = {
        "base_model": EMBEDDED_BASES.get(spec, spec),
        "library_name": "transformers",
        "tags": ["obliviate", "unlearning", method],
        "license": str(manifest.get("license") or "unknown"),
    }
    name = run_dir.resolve().name

    out = ["---", yaml.safe_dump(front, sort_keys=False, allow_unicode=True).rstrip(), "---", "",
           f"# {name}: {spec} with knowledge removed by obliviate", ""]
    out += ["## What was removed", "", str(manifest.get("removed") or "Not stated in the manifest."), ""]
    inputs = manifest.get("inputs") if isinstance(manifest.get("inputs"), dict) else {}
    if inputs:
        out += ["Inputs (sha256):", ""] + [f"- {key}: `{value}`" for key, value in inputs.items()] + [""]

    out += ["## Method", "", f"`{method}`: {_method_reference(method)}.", ""]
    settings = {k: v for k, v in _flatten(manifest.get("hyperparameters") or {}).items() if v not in (None, [], {})}
    if settings:
        out += ["| setting | value |", "|---|---|"]
        out += [f"| {_md(k)} | {_md(json.dumps(v, ensure_ascii=False) if not isinstance(v, str) else v)} |"
                for k, v in list(settings.items())[:MAX_SETTINGS]]
        if len(settings) > MAX_SETTINGS:
            out.append(f"\n{len(settings) - MAX_SETTINGS} more settings in manifest.json.")
        out.append("")

    out += ["## Base model", "", f"- spec: `{spec}`"]
    if spec in EMBEDDED_BASES:
        out.append(f"- the obliviate embedded model: a GGUF quantisation of `{EMBEDDED_BASES[spec]}`, "
                   "dequantised to float32")
    out.append(f"- weights sha256: `{base.get('weights_sha256') or 'unknown'}`")
    if unlearned.get("weights_sha256"):
        out.append(f"- this model's weights sha256: `{unlearned['weights_sha256']}`")
    out.append("")

    out += ["## Evaluation", ""]
    if (run_dir / "metrics.json").is_file():
        out += [_evaluation_table(load_evaluations(run_dir)), ""]
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

    out += ["## How to load", "", "```python", "from transformers import AutoModelForCausalLM, AutoTokenizer", "",
            'path = "path/to/model"  # this folder, or its hub id once uploaded',
            "model = AutoModelForCausalLM.from_pretrained(path)",
            "tokenizer = AutoTokenizer.from_pretrained(path)", "```", ""]

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
    path = model_dir / "README.md"
    atomic_write_text(path, "\n".join(out))
    return path
