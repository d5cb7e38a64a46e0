"""``report.html``: one self-contained page about a run, written from its run folder's files only.

Plots are embedded as base64 PNG and the CSS is inline, so the page opens offline and can be
mailed as one file. Each section says so when its data is absent instead of failing.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

from obliviate.errors import DataError
from obliviate.evaluation.overlap import overlap_notes
from obliviate.hashing import file_hash
from obliviate.reporting.compare import format_number
from obliviate.reporting.results import (
    change_verdict, combine, comparison_rows, group_summary, load_evaluations,
)
from obliviate.runs import atomic_write_text

__all__ = ["write_report"]

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 1100px;
       padding: 0 1rem; color: #222; line-height: 1.4; }
h1 { margin-bottom: .2rem; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2rem; margin-top: 2.2rem; }
.subtitle { color: #555; margin-top: 0; }
nav a { margin-right: 1rem; }
table { border-collapse: collapse; margin: .6rem 0; font-size: .9rem; }
th, td { border: 1px solid #ddd; padding: .25rem .5rem; vertical-align: top; }
th { background: #f3f3f3; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.group td { background: #fafafa; font-weight: bold; }
tr.summary td { font-style: italic; }
.better { color: #1a7f37; } .worse { color: #c62828; } .skipped { color: #888; font-style: italic; }
.note { color: #666; font-style: italic; }
.familiar { background: #fde2e2; } .unfamiliar { background: #e3f4e6; }
.charts img { margin: .3rem; border: 1px solid #eee; }
code, pre { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: .85rem; }
pre { background: #f7f7f7; padding: .6rem; overflow-x: auto; }
.completion { white-space: pre-wrap; max-width: 28rem; }
"""

# One colour per evaluation, the same in every chart (matplotlib's tab10).
COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
          "#17becf"]


def _e(text) -> str:
    return html.escape(str(text), quote=True)


def _note(text: str) -> str:
    return f'<p class="note">{_e(text)}</p>'


def _read_json(path: Path):
    """A JSON file's content, None when the file is absent."""
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"cannot read '{path}' ({err}); it must be a JSON file written by obliviate") from err


def _read_log(path: Path) -> tuple[list[dict], int]:
    """Records of ``log.jsonl`` and the number of unreadable lines (a killed run may cut the last one)."""
    records, bad = [], 0
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            bad += 1
            continue
        if isinstance(record, dict):
            records.append(record)
        else:
            bad += 1
    return records, bad


def _figure(width: float, height: float):
    # A bare Figure renders with the Agg canvas without touching pyplot's global backend.
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    return fig


def _img(fig, alt: str) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{data}">'


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


# ---- sections: each returns the section's inner HTML ----

def _evaluations_table(evaluations: dict) -> str:
    rows = ["<tr><th>evaluation</th><th>model</th><th>weights sha256</th><th>suite</th><th>seconds</th></tr>"]
    for label, ev in evaluations.items():
        model, suite = ev.get("model") or {}, ev.get("suite") or {}
        sha = str(model.get("weights_sha256") or "")
        seconds = ev.get("seconds")
        rows.append(f"<tr><td>{_e(label)}</td><td>{_e(model.get('spec', ''))}</td>"
                    f"<td><code title=\"{_e(sha)}\">{_e(sha[:12])}</code></td><td>{_e(suite.get('name', ''))}</td>"
                    f"<td class=\"num\">{_e(format_number(seconds) if _is_number(seconds) else '')}</td></tr>")
    return "<table>" + "".join(rows) + "</table>"


def _value_html(cell) -> str:
    if cell is None:
        return '<td class="num">-</td>'
    if "skipped" in cell:
        return f'<td class="num skipped" title="{_e(cell["skipped"])}">skipped</td>'
    text = format_number(float(cell["value"]))
    if _is_number(cell.get("stderr")):
        text += f" ± {format_number(float(cell['stderr']))}"
    return f'<td class="num">{_e(text)}</td>'


def _results_section(evaluations: dict) -> str:
    if not evaluations:
        return _note("No metrics.json in this run folder: run `obliviate eval` (or the run's eval stage) to add one.")
    labels = list(evaluations)
    head = "<tr><th>metric</th><th>goal</th>" + f"<th>{_e(labels[0])}</th>"
    head += "".join(f"<th>{_e(label)}</th><th>change</th>" for label in labels[1:]) + "</tr>"
    body, group, width = [], object(), 2 + 2 * len(labels) - 1
    skipped = []
    for row in comparison_rows(evaluations):
        if row.group != group:
            group = row.group
            body.append(f'<tr class="group"><td colspan="{width}">{_e(group or "other")}</td></tr>')
        goal = {True: "higher", False: "lower"}.get(row.higher_is_better, "")
        cells = [f"<td>{_e(row.name)}</td><td>{goal}</td>", _value_html(row.cells[0])]
        for i in range(1, len(labels)):
            delta = row.delta(i)
            verdict = change_verdict(delta, row.higher_is_better) or ""
            mark = {"better": " ✓", "worse": " ✗"}.get(verdict, "")
            cells.append(_value_html(row.cells[i]))
            css = f' class="num {verdict}" title="{verdict}"' if verdict else ' class="num"'
            cells.append(f"<td{css}>{_e(format_number(delta, signed=True) + mark) if delta is not None else ''}</td>")
        css = ' class="summary"' if row.is_summary else ""
        body.append(f"<tr{css}>" + "".join(cells) + "</tr>")
        skipped += [(label, row.name, c["skipped"]) for label, c in zip(labels, row.cells)
                    if c and "skipped" in c and not row.is_summary]
    parts = [_evaluations_table(evaluations), "<table>" + head + "".join(body) + "</table>"]
    parts.append(_note(f"change = evaluation - '{labels[0]}'; goal = the direction of a successful unlearning; "
                       "✓ the change goes that way, ✗ against it; group means average the group's computed metrics."))
    if skipped:
        parts.append("<p>Skipped metrics:</p><ul>" + "".join(
            f"<li>{_e(label)} / {_e(name)}: {_e(reason)}</li>" for label, name, reason in skipped) + "</ul>")
    trained_on = [note for label, evaluation in evaluations.items()
                  for note in overlap_notes(label, evaluation.get("metrics", {}))]
    if trained_on:
        parts.append('<p class="worse">Metrics scored on text the model trained on:</p><ul>'
                     + "".join(f"<li>{_e(note)}</li>" for note in trained_on) + "</ul>")
    return "\n".join(parts)


def _bars_section(evaluations: dict) -> str:
    if not evaluations:
        return _note("No metrics.json: no chart to draw.")
    labels = list(evaluations)
    families: dict[str, list] = {}
    for row in comparison_rows(evaluations, summaries=False):
        if any(row.value(i) is not None for i in range(len(labels))):
            families.setdefault(row.family or "other", []).append(row)
    if not families:
        return _note("Every metric is skipped: no chart to draw.")
    images = []
    for family, rows in families.items():
        n = len(rows)
        fig = _figure(max(3.2, 1.2 + n * (0.35 * len(labels) + 0.4)), 2.8)
        ax = fig.add_subplot()
        step = 0.8 / len(labels)
        for j, label in enumerate(labels):
            xs, ys, errs = [], [], []
            for i, row in enumerate(rows):
                value = row.value(j)
                if value is None:
                    continue
                stderr = (row.cells[j] or {}).get("stderr")
                xs.append(i - 0.4 + step * (j + 0.5))
                ys.append(value)
                errs.append(float(stderr) if _is_number(stderr) else 0.0)
            ax.bar(xs, ys, width=step * 0.9, yerr=errs, capsize=2, color=COLORS[j % len(COLORS)], label=label)
        ax.set_xticks(range(n))
        ax.set_xticklabels([f"{r.name}\n({'higher' if r.higher_is_better else 'lower'} is better)"
                            if r.higher_is_better is not None else r.name for r in rows], fontsize=7)
        ax.set_title(family, fontsize=9)
        ax.tick_params(axis="y", labelsize=7)
        ax.legend(fontsize=7)
        images.append(_img(fig, f"{family} metrics per evaluation"))
    return ('<div class="charts">' + "".join(images) + "</div>"
            + _note("Bars: metric value per evaluation; error bars: the metric's standard error when it has one."))


def _tradeoff_section(run_dir: Path, extra_runs) -> str:
    extra_runs = [Path(p) for p in extra_runs]
    sources = ([run_dir] if (run_dir / "metrics.json").is_file() else []) + extra_runs
    if not sources:
        return _note("No metrics.json in this run folder and no other run given: no trade-off to plot.")
    combined = combine(sources)
    counts = [len(load_evaluations(p)) for p in sources]
    points, missing = [], []
    items = list(combined.items())
    for source_index, count in enumerate(counts):
        for label, evaluation in items[:count]:
            points.append((source_index, label, group_summary(evaluation)))
        items = items[count:]
    y_key = "utility.mean" if any("utility.mean" in s for _, _, s in points) else "retain.mean"
    usable = []
    for source_index, label, summary in points:
        if "forget.mean" in summary and y_key in summary:
            usable.append((source_index, label, summary["forget.mean"], summary[y_key]))
        else:
            missing.append(label)
    if not usable:
        return _note(f"No evaluation has both forget.mean and {y_key} (or retain.mean): no trade-off to plot.")
    fig = _figure(5.5, 4.0)
    ax = fig.add_subplot()
    for source_index in sorted({p[0] for p in usable}):
        own = [p for p in usable if p[0] == source_index]
        color = COLORS[source_index % len(COLORS)]
        ax.plot([p[2] for p in own], [p[3] for p in own], "-o", color=color, alpha=0.8, markersize=6, linewidth=1)
    at: dict[tuple, list] = {}  # runs sharing a base model put their base points in one place: one label
    for _, label, x, y in usable:
        at.setdefault((x, y), []).append(label)
    for i, ((x, y), names) in enumerate(sorted(at.items())):
        # alternate above/below so that labels of close points overlap less
        ax.annotate("\n".join(names), (x, y), textcoords="offset points", xytext=(5, 4 if i % 2 else -8),
                    va="bottom" if i % 2 else "top", fontsize=7)
    ax.margins(0.2)
    ax.set_xlabel("forget.mean", fontsize=8)
    ax.set_ylabel(y_key, fontsize=8)
    ax.tick_params(labelsize=7)
    ax.set_title("forget vs " + y_key.split(".")[0], fontsize=9)
    table = (f"<table><tr><th>evaluation</th><th>forget.mean</th><th>{_e(y_key)}</th></tr>" + "".join(
        f'<tr><td>{_e(label)}</td><td class="num">{_e(format_number(x))}</td>'
        f'<td class="num">{_e(format_number(y))}</td></tr>' for _, label, x, y in usable) + "</table>")
    parts = [f'<div class="charts">{_img(fig, "forget vs " + y_key)}</div>', table,
             _note(f"One point per evaluation of this run and of {len(extra_runs)} other run(s); lines join the "
                   f"evaluations of one run in order. x: forget.mean, y: {y_key}.")]
    if missing:
        parts.append(_note("Not plotted (no forget.mean or " + y_key + "): " + ", ".join(missing)))
    return "\n".join(parts)


def _per_item(evaluations: dict, family: str) -> dict[str, list]:
    """``{metric: [per_item list or None per evaluation]}`` for a family's metrics with per-item details."""
    found: dict[str, list] = {}
    labels = list(evaluations)
    for j, label in enumerate(labels):
        for name, metric in evaluations[label].get("metrics", {}).items():
            if metric.get("family") != family:
                continue
            per_item = (metric.get("details") or {}).get("per_item")
            if isinstance(per_item, list) and per_item:
                found.setdefault(name, [None] * len(labels))[j] = per_item
    return found


def _keyed(per_item: list, *fields) -> dict:
    """Items keyed by their fields plus an occurrence count, so repeated prompts stay distinct."""
    keyed, seen = {}, {}
    for item in per_item or []:
        if not isinstance(item, dict):
            continue
        base = tuple(str(item.get(f, "")) for f in fields)
        seen[base] = seen.get(base, 0) + 1
        keyed[base + (seen[base],)] = item
    return keyed


def _familiarity_section(evaluations: dict) -> str:
    metrics = _per_item(evaluations, "familiarity")
    if not metrics:
        return _note("No familiarity metric with per-item details (details.per_item) in metrics.json.")
    labels = list(evaluations)
    parts = []
    for name, lists in metrics.items():
        shown = [j for j, items in enumerate(lists) if items]
        keyed = [_keyed(lists[j], "prompt") for j in shown]
        keys = list(dict.fromkeys(k for table in keyed for k in table))
        head = "<tr><th>prompt</th>" + "".join(f"<th>{_e(labels[j])}</th>" for j in shown) + "</tr>"
        rows = []
        for key in keys:
            cells = [f"<td>{_e(key[0])}</td>"]
            for table in keyed:
                item = table.get(key)
                if item is None:
                    cells.append("<td>-</td>")
                    continue
                familiar = bool(item.get("familiar"))
                hits = item.get("hits") or []
                verdict = "familiar" + (f" ({', '.join(map(str, hits))})" if hits else "") if familiar else "not familiar"
                cells.append(f'<td class="{"familiar" if familiar else "unfamiliar"}">'
                             f'<div class="completion">{_e(item.get("completion", ""))}</div>'
                             f"<b>{_e(verdict)}</b></td>")
            rows.append("<tr>" + "".join(cells) + "</tr>")
        parts.append(f"<h3>{_e(name)}</h3><table>{head}{''.join(rows)}</table>")
    parts.append(_note("familiar: the completion names a word that reveals the target (words in brackets)."))
    return "\n".join(parts)


def _heat(probability) -> str:
    if not _is_number(probability):
        return '<td class="num">-</td>'
    p = min(max(float(probability), 0.0), 1.0)
    text = "#fff" if p > 0.6 else "#222"
    return (f'<td class="num" style="background: rgba(214, 39, 40, {p:.3f}); color: {text}">'
            f"{_e(format_number(float(probability)))}</td>")


def _tokens_section(evaluations: dict) -> str:
    metrics = _per_item(evaluations, "token_probability")
    if not metrics:
        return _note("No token_probability metric with per-item details (details.per_item) in metrics.json.")
    labels = list(evaluations)
    parts = []
    for name, lists in metrics.items():
        shown = [j for j, items in enumerate(lists) if items]
        keyed = [_keyed(lists[j], "prompt", "reference") for j in shown]
        keys = list(dict.fromkeys(k for table in keyed for k in table))
        head = ("<tr><th>prompt</th><th>token</th>" + "".join(f"<th>{_e(labels[j])}</th>" for j in shown) + "</tr>")
        rows = []
        for key in keys:
            items = [table.get(key) or {} for table in keyed]
            token_lists = [[t for t in (item.get("tokens") or []) if isinstance(t, dict)] for item in items]
            n_tokens = max(len(tokens) for tokens in token_lists)
            span = n_tokens + 1
            first = f'<td rowspan="{span}">{_e(key[0])}<br><span class="note">answer: {_e(key[1])}</span></td>'
            rows.append("<tr>" + first + "<td><i>whole answer</i></td>"
                        + "".join(_heat(item.get("probability")) for item in items) + "</tr>")
            for t in range(n_tokens):
                token = next((tokens[t].get("token") for tokens in token_lists if len(tokens) > t), "")
                cells = [_heat(tokens[t].get("probability")) if len(tokens) > t else '<td class="num">-</td>'
                         for tokens in token_lists]
                rows.append(f"<tr><td><code>{_e(json.dumps(token, ensure_ascii=False))}</code></td>"
                            + "".join(cells) + "</tr>")
        parts.append(f"<h3>{_e(name)}</h3><table>{head}{''.join(rows)}</table>")
    parts.append(_note("Colour: probability of each target token given the prompt and the answer's previous tokens "
                       "(white 0, red 1)."))
    return "\n".join(parts)


def _curves_section(run_dir: Path) -> str:
    log = run_dir / "log.jsonl"
    if not log.is_file():
        return _note("No log.jsonl in this run folder: no training curves to draw.")
    records, bad = _read_log(log)
    stages: dict[str, dict] = {}
    for index, record in enumerate(records):
        if "stage" not in record or not _is_number(record.get("loss")):
            continue
        step = record.get("step") if _is_number(record.get("step")) else index
        stages.setdefault(str(record["stage"]), {})[step] = record  # a resumed run rewrites steps: keep the last
    if not stages:
        return _note("log.jsonl holds no training record (stage, step, loss): no training curves to draw.")
    images = []
    for stage, by_step in stages.items():
        steps = sorted(by_step)
        fig = _figure(4.6, 2.8)
        ax = fig.add_subplot()
        ax.plot(steps, [by_step[s]["loss"] for s in steps], color=COLORS[0], linewidth=1, label="training loss")
        held = [s for s in steps if _is_number(by_step[s].get("heldout_loss"))]
        if held:
            ax.plot(held, [by_step[s]["heldout_loss"] for s in held], "-o", color=COLORS[1], markersize=3,
                    linewidth=1, label="held-out loss")
        ax.set_title(f"stage: {stage}", fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.set_ylabel("loss", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7)
        images.append(_img(fig, f"loss curves of stage {stage}"))
    parts = ['<div class="charts">' + "".join(images) + "</div>"]
    if bad:
        parts.append(_note(f"{bad} unreadable line(s) of log.jsonl were left out."))
    return "\n".join(parts)


def _attacks_section(run_dir: Path) -> str:
    """Relearning curves, probe accuracy per layer, and the table of surviving gap shares (attacks/attacks.json)."""
    attacks = _read_json(run_dir / "attacks" / "attacks.json")
    if not isinstance(attacks, dict) or not isinstance(attacks.get("gap"), list):
        return _note("No attacks/attacks.json in this run folder: run `obliviate attack RUN --suite SUITE` to attack "
                     "the unlearned model and its controls.")
    rows = [r for r in attacks["gap"] if isinstance(r, dict) and isinstance(r.get("levels"), dict)]
    models = list(attacks.get("models") or {"unlearned": 0, "base": 0})
    color = {m: COLORS[i % len(COLORS)] for i, m in enumerate(models)}
    images = []
    curves: dict[tuple, list] = {}
    for r in rows:
        if r["attack"] == "relearn" and _is_number(r.get("step")):
            curves.setdefault((r["metric"], r.get("text")), []).append(r)
    for (metric, text), points in curves.items():
        fig = _figure(4.6, 2.9)
        ax = fig.add_subplot()
        rates = sorted({p.get("learning_rate") for p in points}, key=lambda x: (x is None, x))
        for model in models:
            for style, rate in zip(("-o", "--s", ":^", "-.v"), rates):
                line = sorted((p["step"], p["levels"].get(model)) for p in points
                              if p.get("learning_rate") == rate and _is_number(p["levels"].get(model)))
                if line:
                    ax.plot([x for x, _ in line], [y for _, y in line], style, color=color[model], markersize=3,
                            linewidth=1, label=f"{model}, lr {rate:g}")
            before = (points[0].get("levels_without_attack") or {}).get(model)
            if _is_number(before):
                ax.axhline(before, color=color[model], linewidth=0.6, alpha=0.5)
        ax.set_xscale("log")
        ticks = sorted({p["step"] for p in points})
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.minorticks_off()
        ax.set_title(f"{metric}: relearning on {text} text", fontsize=9)
        ax.set_xlabel("attack steps (faint lines: no attack)", fontsize=8)
        ax.set_ylabel(metric, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6)
        images.append(_img(fig, f"relearning curves of {metric} on {text} text"))
    probes = [r for r in rows if r["attack"] == "probes" and _is_number(r.get("layer"))]
    if probes:
        fig = _figure(4.6, 2.9)
        ax = fig.add_subplot()
        for model in models:
            line = sorted((r["layer"], r["levels"].get(model)) for r in probes if _is_number(r["levels"].get(model)))
            if line:
                ax.plot([x for x, _ in line], [y for _, y in line], "-o", color=color[model], markersize=3,
                        linewidth=1, label=model)
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.axhline(0.5, color="#999", linewidth=0.6, linestyle=":")
        ax.set_title("latent knowledge: held-out probe accuracy", fontsize=9)
        ax.set_xlabel("layer (0: embeddings)", fontsize=8)
        ax.set_ylabel("accuracy (true vs false answer)", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7)
        images.append(_img(fig, "probe accuracy per layer"))
    has_gold = "gold" in models
    head = ("<tr><th>attack</th><th>metric</th>" + "".join(f"<th>{_e(m)} + attack</th>" for m in models)
            + "".join(f"<th>{_e(m)}</th>" for m in models) + "<th>gap share vs base</th>"
            + ("<th>gap share vs gold</th>" if has_gold else "") + "</tr>")
    body = []
    for r in rows:
        if r["attack"] == "probes":
            continue
        cells = [f"{_e(r['attack'])}: {_e(r.get('variant', ''))}", _e(r["metric"])]
        before = r.get("levels_without_attack") or {}
        numbers = [r["levels"].get(m) for m in models] + [before.get(m) for m in models] + [r.get("share_vs_base")]
        numbers += [r.get("share_vs_gold")] if has_gold else []
        cells += [format_number(float(x)) if _is_number(x) else "-" for x in numbers]
        body.append("<tr>" + "".join(f"<td>{c}</td>" if i < 2 else f'<td class="num">{c}</td>'
                                     for i, c in enumerate(cells)) + "</tr>")
    settings = attacks.get("settings") or {}
    parts = [_note("Each attack is applied to the unlearned model and to its controls. Gap share: "
                   "(m(base+A) - m(unlearned+A)) / (m(base) - m(unlearned)); 1 = the whole unlearning gap survives "
                   "the attack, 0 = none of it; '-' where undefined (no gap)."),
             '<div class="charts">' + "".join(images) + "</div>",
             "<table>" + head + "".join(body) + "</table>",
             f"<details><summary>attack settings</summary><pre>{_e(json.dumps(settings, indent=2))}</pre></details>"]
    return "\n".join(parts)


def _search_section(run_dir: Path) -> str:
    """Trials of ``obliviate search`` (``trials.jsonl``): objective vs trial and vs each searched setting;
    feasible trials filled, infeasible ones crossed, pruned ones hollow (their partial objective)."""
    path = run_dir / "trials.jsonl"
    if not path.is_file():
        return _note("No trials.jsonl in this folder: not an `obliviate search` folder.")
    trials, bad = _read_log(path)
    trials = [t for t in trials if _is_number(t.get("trial")) and _is_number(t.get("objective"))]
    if not trials:
        return _note("trials.jsonl holds no scored trial yet.")
    kinds = {"feasible": dict(marker="o", color=COLORS[2]), "infeasible": dict(marker="x", color=COLORS[3]),
             "pruned": dict(marker="o", facecolors="none", edgecolors=COLORS[7])}

    def kind(t) -> str:
        return "pruned" if t.get("state") == "pruned" else "feasible" if t.get("feasible") else "infeasible"

    def scatter(ax, xs_of, xlabel: str, log: bool = False) -> None:
        for label, style in kinds.items():
            chosen = [t for t in trials if kind(t) == label and xs_of(t) is not None]
            if chosen:
                ax.scatter([xs_of(t) for t in chosen], [t["objective"] for t in chosen], s=18, label=label, **style)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.set_ylabel("objective (tune half)", fontsize=8)
        ax.tick_params(labelsize=7)
        if log:
            ax.set_xscale("log")

    images = []
    fig = _figure(4.6, 2.8)
    ax = fig.add_subplot()
    scatter(ax, lambda t: t["trial"], "trial")
    feasible = sorted((t for t in trials if kind(t) == "feasible"), key=lambda t: t["trial"])
    if feasible:
        best, xs, ys = -float("inf"), [], []
        for t in feasible:
            best = max(best, t["objective"])
            xs.append(t["trial"])
            ys.append(best)
        ax.step(xs, ys, where="post", color=COLORS[0], linewidth=1, label="best feasible so far")
    ax.legend(fontsize=7)
    images.append(_img(fig, "objective of every trial"))
    names = sorted({k for t in trials for k in (t.get("settings") or {})})
    for name in names:
        values = [t["settings"].get(name) for t in trials if name in (t.get("settings") or {})]
        fig = _figure(3.4, 2.6)
        ax = fig.add_subplot()
        if all(isinstance(v, bool) for v in values):
            scatter(ax, lambda t, n=name: int(t["settings"][n]) if n in t.get("settings", {}) else None, name)
            ax.set_xticks([0, 1], ["false", "true"])
        else:
            positive = all(_is_number(v) and v > 0 for v in values)
            spread = positive and max(values) / min(values) > 20
            scatter(ax, lambda t, n=name: t["settings"].get(n) if _is_number(t["settings"].get(n)) else None, name,
                    log=spread)
        images.append(_img(fig, f"objective against {name}"))
    best = max(feasible, key=lambda t: t["objective"]) if feasible else None
    parts = ['<div class="charts">' + "".join(images) + "</div>",
             _note(f"{len(trials)} trials: {sum(kind(t) == 'feasible' for t in trials)} feasible, "
                   f"{sum(kind(t) == 'infeasible' for t in trials)} infeasible, "
                   f"{sum(kind(t) == 'pruned' for t in trials)} pruned. "
                   + (f"Best feasible: trial {best['trial']} ({best['objective']:+.4f}); settings in best.yaml."
                      if best else "No feasible trial."))]
    if bad:
        parts.append(_note(f"{bad} unreadable line(s) of trials.jsonl were left out."))
    return "\n".join(parts)


def _manifest_section(run_dir: Path, manifest) -> str:
    parts = []
    if manifest is None:
        parts.append(_note("No manifest.json in this run folder (it is written when the run completes)."))
    else:
        digest = file_hash(run_dir / "manifest.json")
        parts.append(f"<details><summary>manifest.json (sha256 <code>{_e(digest)}</code>)</summary>"
                     f"<pre>{_e(json.dumps(manifest, indent=2, ensure_ascii=False))}</pre></details>")
    config = run_dir / "config.yaml"
    if config.is_file():
        parts.append(f"<details><summary>config.yaml</summary>"
                     f"<pre>{_e(config.read_text(encoding='utf-8', errors='replace'))}</pre></details>")
    return "\n".join(parts)


SECTIONS = (
    ("results", "Before and after"),
    ("metrics", "Metrics by family"),
    ("tradeoff", "Forget vs utility trade-off"),
    ("familiarity", "Per-prompt familiarity"),
    ("tokens", "Target token probabilities"),
    ("curves", "Training curves"),
    ("attacks", "Attacks against controls"),
    ("search", "Settings search"),
    ("manifest", "Manifest"),
)


def write_report(run_dir, extra_runs=(), out=None) -> Path:
    """Write a self-contained ``report.html`` for a run folder.

    Sections: before/after table, bar charts per metric family, forget vs utility trade-off
    (this run's evaluations and those of ``extra_runs``), per-prompt familiarity, target-token
    probability heat map, training and held-out loss curves from ``log.jsonl``, the attacks against
    controls (``attacks/attacks.json`` of ``obliviate attack``), the trials of ``obliviate search``
    (``trials.jsonl``), the manifest.
    A section whose data is absent holds a note instead.

    Args:
        run_dir: the run folder (or an ``obliviate eval --out`` folder).
        extra_runs: other run folders or metrics.json files whose evaluations join the trade-off plot.
        out: where to write the page (default: ``run_dir/report.html``).

    Returns:
        The path of the page written.

    Raises:
        DataError: ``run_dir`` is not a folder, holds none of metrics.json, manifest.json and
            log.jsonl, or one of its files (or of ``extra_runs``) is malformed or missing.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise DataError(f"'{run_dir}' is not a folder: pass a run folder (runs/NAME)")
    out = Path(out) if out else run_dir / "report.html"
    if out.is_dir():
        raise DataError(f"--out '{out}' is a folder: give the path of the HTML file to write")
    if not any((run_dir / name).is_file()
               for name in ("metrics.json", "manifest.json", "log.jsonl", "trials.jsonl")):
        raise DataError(f"'{run_dir}' holds no metrics.json, manifest.json, log.jsonl or trials.jsonl: pass a run "
                        "folder (run `obliviate run`, `obliviate eval --out` or `obliviate search` first)")
    manifest = _read_json(run_dir / "manifest.json")
    manifest = manifest if isinstance(manifest, dict) else None
    evaluations = load_evaluations(run_dir) if (run_dir / "metrics.json").is_file() else {}

    name = run_dir.resolve().name
    facts = []
    if manifest:
        base = manifest.get("base_model") or {}
        facts.append(f"method: {manifest.get('method', '?')}")
        facts.append(f"base model: {base.get('spec', '?') if isinstance(base, dict) else base}")
        if manifest.get("removed"):
            facts.append(f"removed: {manifest['removed']}")
        if manifest.get("written"):
            facts.append(f"written: {manifest['written']}")
        if manifest.get("complete") is False:
            facts.append("run incomplete")
    bodies = {
        "results": _results_section(evaluations),
        "metrics": _bars_section(evaluations),
        "tradeoff": _tradeoff_section(run_dir, extra_runs),
        "familiarity": _familiarity_section(evaluations),
        "tokens": _tokens_section(evaluations),
        "curves": _curves_section(run_dir),
        "attacks": _attacks_section(run_dir),
        "search": _search_section(run_dir),
        "manifest": _manifest_section(run_dir, manifest),
    }
    nav = "<nav>" + "".join(f'<a href="#{key}">{_e(title)}</a>' for key, title in SECTIONS) + "</nav>"
    sections = "\n".join(f'<section id="{key}"><h2>{_e(title)}</h2>\n{bodies[key]}\n</section>'
                         for key, title in SECTIONS)
    page = (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>obliviate report: {_e(name)}</title><style>{CSS}</style></head><body>\n"
        f"<h1>obliviate report: {_e(name)}</h1>\n"
        f"<p class=\"subtitle\">{' · '.join(_e(f) for f in facts) or _e('no manifest.json')}</p>\n"
        f"{nav}\n{sections}\n</body></html>\n"
    )
    try:
        atomic_write_text(out, page)
    except OSError as err:
        raise DataError(f"cannot write '{out}' ({err.strerror or err}): check that its folder is writable and the "
                        "disk has room") from err
    return out
