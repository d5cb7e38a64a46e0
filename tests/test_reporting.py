"""Reporting from run folders built by hand: compare table, requirements, report.html, model card.

No model is involved: report and compare read only the run folder's files.
"""

from __future__ import annotations

import json
import re

import pytest
import yaml

from obliviate.errors import ConfigError, DataError
from obliviate.manifest import file_hash
from obliviate.reporting import (
    Requirement, check_requirements, combine, compare_table, flat_values, group_summary, load_evaluations,
    parse_requirement, write_model_card, write_report,
)

SCRIPT_PROMPT = "<script>alert('x')</script> Harry's best friend is"


def _evaluation(familiarity, probability, accuracy, perplexity, retain_qa=None, completion="Ron Weasley."):
    metrics = {
        "familiarity": {
            "family": "familiarity", "group": "forget", "value": familiarity, "higher_is_better": False,
            "stderr": 0.1 if familiarity > 0.5 else 0.08, "n": 2, "settings": {"max_new_tokens": 24},
            "details": {"per_item": [
                {"prompt": SCRIPT_PROMPT, "completion": completion, "familiar": familiarity > 0.5,
                 "hits": ["Ron"] if familiarity > 0.5 else []},
                {"prompt": "The boy with the scar", "completion": "went to the shop.", "familiar": False, "hits": []},
            ]},
        },
        "reference_probability": {
            "family": "token_probability", "group": "forget", "value": probability, "higher_is_better": False,
            "n": 1,
            "details": {"per_item": [
                {"prompt": "Harry's friends are Ron and", "reference": "Hermione", "probability": probability},
            ]},
        },
        "general_accuracy": {"family": "general", "group": "utility", "value": accuracy, "higher_is_better": True,
                             "stderr": 0.02, "n": 100},
        "perplexity": {"family": "perplexity", "group": "utility", "value": perplexity, "higher_is_better": False},
        "toxicity": {"family": "toxicity", "group": "robustness", "skipped": "judge unreachable"},
    }
    if retain_qa is not None:
        metrics["retain_qa"] = {"family": "qa", "group": "retain", "value": retain_qa, "higher_is_better": True}
    return {"model": {"spec": "smollm2-135m", "weights_sha256": "ab" * 32}, "suite": {"name": "harry_potter"},
            "seconds": 3.5, "metrics": metrics}


def make_run(folder, with_log=True, with_model=True, familiarity_after=0.2):
    """A run folder written by hand: config, log, metrics (base + unlearned), manifest, model/."""
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text("model: smollm2-135m\nfinetune:\n  learning_rate: 1.0e-05\n")
    metrics = {"obliviate_metrics": 1, "evaluations": {
        "base": _evaluation(0.8, 0.5, 0.6, 20.0),
        "unlearned": _evaluation(familiarity_after, 0.05, 0.55, 22.0, retain_qa=0.7,
                                 completion="a friend called Tom."),
    }}
    (folder / "metrics.json").write_text(json.dumps(metrics))
    if with_log:
        lines = [{"time": 1.0, "event": "start"}]
        for stage in ("reinforce", "finetune"):
            for step in range(1, 6):
                record = {"time": 1.0 + step, "stage": stage, "step": step, "epoch": 0, "loss": 3.0 / step,
                          "lr": 1e-5}
                if step % 2 == 0:
                    record["heldout_loss"] = 3.2 / step
                lines.append(record)
        (folder / "log.jsonl").write_text("\n".join(json.dumps(r) for r in lines) + "\n{\"cut\": \n")
    if with_model:
        (folder / "model").mkdir()
        (folder / "model" / "config.json").write_text("{}")
    manifest = {
        "obliviate_manifest": 1, "complete": True, "written": "2025-01-01T00:00:00Z",
        "removed": "knowledge of the target corpus hp.txt", "method": "whp",
        "base_model": {"spec": "smollm2-135m", "weights_sha256": "cd" * 32},
        "unlearned_model": {"path": "model", "weights_sha256": "ef" * 32},
        "inputs": {"corpus_sha256": "12" * 32},
        "hyperparameters": {"model": "smollm2-135m", "labels": {"alpha": 5.0}, "finetune": {"learning_rate": 1e-5}},
        "stages": {}, "metrics": metrics, "versions": {"python": "3.11"},
    }
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return folder


@pytest.fixture
def run(tmp_path):
    return make_run(tmp_path / "runs" / "hp")


# ---- results ----

def test_load_evaluations_from_folder_or_file(run):
    assert list(load_evaluations(run)) == ["base", "unlearned"]
    assert list(load_evaluations(run / "metrics.json")) == ["base", "unlearned"]


def test_load_evaluations_errors_name_the_file(tmp_path):
    with pytest.raises(DataError, match="metrics.json"):
        load_evaluations(tmp_path)
    bad = tmp_path / "metrics.json"
    bad.write_text("{not json")
    with pytest.raises(DataError, match=re.escape(str(bad))):
        load_evaluations(bad)
    bad.write_text(json.dumps({"base": {}}))
    with pytest.raises(DataError, match="evaluations"):
        load_evaluations(bad)
    bad.write_text(json.dumps({"evaluations": {"base": {"metrics": {"x": {"group": "forget"}}}}}))
    with pytest.raises(DataError, match="'x'"):
        load_evaluations(bad)


def test_group_summary_and_flat_values(run):
    base, unlearned = load_evaluations(run).values()
    assert group_summary(base) == pytest.approx({"forget.mean": 0.65, "utility.mean": 10.3})
    assert group_summary(unlearned) == pytest.approx({"forget.mean": 0.125, "retain.mean": 0.7,
                                                      "utility.mean": 11.275})
    flat = flat_values(base)
    assert "toxicity" not in flat and "robustness.mean" not in flat  # skipped: no value, no summary
    assert flat["perplexity"] == 20.0 and flat["forget.mean"] == pytest.approx(0.65)


def test_combine_labels_are_unique_and_readable(tmp_path):
    a = make_run(tmp_path / "a" / "run")
    b = make_run(tmp_path / "b" / "run")
    assert list(combine([a])) == ["base", "unlearned"]
    assert list(combine([a, b])) == ["a/run/base", "a/run/unlearned", "b/run/base", "b/run/unlearned"]
    assert list(combine([a, a / "metrics.json"])) == ["run/base", "run/unlearned", "run/base (2)", "run/unlearned (2)"]
    with pytest.raises(DataError):
        combine([])


# ---- compare ----

def _line(table: str, name: str) -> list[str]:
    return next(line.split() for line in table.splitlines() if line.split()[:1] == [name])


def test_compare_table_values_changes_and_marks(run):
    table = compare_table(load_evaluations(run))
    header = table.splitlines()[0].split()
    assert header == ["metric", "goal", "base", "unlearned", "change"]
    assert _line(table, "familiarity") == ["familiarity", "lower", "0.8", "±", "0.1", "0.2", "±", "0.08", "-0.6",
                                           "better"]
    assert _line(table, "reference_probability")[-2:] == ["-0.45", "better"]
    assert _line(table, "forget.mean") == ["forget.mean", "lower", "0.65", "0.125", "-0.525", "better"]
    assert _line(table, "general_accuracy")[-2:] == ["-0.05", "worse"]
    assert _line(table, "perplexity")[-2:] == ["+2", "worse"]
    # utility mixes a higher-is-better and a lower-is-better metric: no direction, no verdict
    assert _line(table, "utility.mean") == ["utility.mean", "10.3", "11.28", "+0.975"]
    assert _line(table, "toxicity") == ["toxicity", "skipped", "skipped", "n/a"]
    assert _line(table, "retain_qa") == ["retain_qa", "higher", "-", "0.7", "n/a"]
    assert "skipped: unlearned / toxicity: judge unreachable" in table
    # aligned: every metric row has its value columns at the same offsets
    rows = [line for line in table.splitlines() if line.startswith("  ")]
    assert len({line.index(line.split()[0]) for line in rows}) == 1
    dashes = table.splitlines()[1]
    gaps = [m.start() for m in re.finditer("  ", dashes)]  # column separators
    for line in rows:
        assert all(line[g:g + 2] in ("  ", " ", "") for g in gaps), line


def test_parse_requirement():
    assert parse_requirement("utility.mean>=-0.01") == Requirement("utility.mean", ">=", -0.01, "delta")
    assert parse_requirement(" value:familiarity <= 0.1 ") == Requirement("familiarity", "<=", 0.1, "value")
    assert parse_requirement("rel:perplexity<1e-1") == Requirement("perplexity", "<", 0.1, "rel")
    assert parse_requirement("delta:forget.mean>0") == Requirement("forget.mean", ">", 0.0, "delta")
    assert str(parse_requirement("value:familiarity<=0.1")) == "value:familiarity<=0.1"
    for bad in ("utility.mean=>0", "utility.mean", "utility.mean>=x", "abs:familiarity<=1", ">=1", "a==1", ""):
        with pytest.raises(ConfigError, match=r"expected \[delta:\|value:\|rel:\]KEY OP NUMBER"):
            parse_requirement(bad)


def test_check_requirements_pass_and_fail(run):
    evaluations = load_evaluations(run)
    passing = ["utility.mean>=-0.01", "forget.mean<=-0.5", "value:familiarity<=0.25", "rel:perplexity<=0.2",
               "familiarity.value<0"]
    assert check_requirements(evaluations, passing) == []
    failures = check_requirements(evaluations, ["general_accuracy>=-0.01", "value:familiarity<=0.1",
                                                "rel:perplexity<=0.05"])
    assert len(failures) == 3
    assert "general_accuracy>=-0.01: failed for 'unlearned': change -0.05 (0.6 -> 0.55) is not >= -0.01" in failures
    assert "value 0.2 is not <= 0.1" in failures[1]
    assert "relative change +0.1 (20 -> 22)" in failures[2]


def test_check_requirements_that_cannot_be_checked_fail(run):
    evaluations = load_evaluations(run)
    unknown, skipped, absent = check_requirements(evaluations, ["nosuch>=0", "toxicity<=0", "retain_qa>=0"])
    assert "unknown key 'nosuch'" in unknown and "forget.mean" in unknown and "general_accuracy" in unknown
    assert "skipped (judge unreachable) in 'base'" in skipped
    assert "absent in 'base'" in absent
    single = {"base": evaluations["base"]}
    assert "needs two evaluations" in check_requirements(single, ["familiarity<=0"])[0]
    assert check_requirements(single, ["value:familiarity<=0.8"]) == []
    with pytest.raises(ConfigError):
        check_requirements(evaluations, ["familiarity=0"])


# ---- report.html ----

SECTION_TITLES = ("Before and after", "Metrics by family", "Forget vs utility trade-off", "Per-prompt familiarity",
                  "Target token probabilities", "Training curves", "Manifest")


def test_report_is_self_contained_and_complete(run, tmp_path):
    other = make_run(tmp_path / "runs" / "hp_strong", familiarity_after=0.0)
    path = write_report(run, extra_runs=[other])
    assert path == run / "report.html"
    page = path.read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.IGNORECASE)
    assert "<link" not in page and "<script" not in page and "@import" not in page
    assert page.count("data:image/png;base64,") >= 4  # family bars, trade-off, two loss curves
    for title in SECTION_TITLES:
        assert f"<h2>{title}</h2>" in page
    assert "method: whp" in page and "base model: smollm2-135m" in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; Harry&#x27;s best friend is" in page
    assert "a friend called Tom." in page and "not familiar" in page
    assert "<i>whole answer</i>" in page  # per-token rows: test_metric_registry, from the real metric
    assert "hp_strong/unlearned" in page  # extra run's labels
    assert "1 unreadable line(s) of log.jsonl" in page
    assert "<details><summary>manifest.json" in page
    assert not list(run.glob(".report.html.*"))  # no temporary file left


def test_report_without_log_or_metrics_has_notes(tmp_path):
    run = make_run(tmp_path / "bare", with_log=False)
    page = write_report(run, out=tmp_path / "r.html").read_text(encoding="utf-8")
    assert "No log.jsonl in this run folder" in page
    assert "<h2>Training curves</h2>" in page and "data:image" in page
    (run / "metrics.json").unlink()
    page = write_report(run).read_text(encoding="utf-8")
    assert "No metrics.json in this run folder" in page
    with pytest.raises(DataError, match="not a folder"):
        write_report(tmp_path / "missing")


# ---- model card ----

def test_model_card(run):
    path = write_model_card(run)
    assert path == run / "model" / "README.md"
    text = path.read_text(encoding="utf-8")
    assert text.startswith("---\n")
    front = yaml.safe_load(text.split("---\n")[1])
    assert {k: v for k, v in front.items() if k != "model-index"} == {
        "base_model": "HuggingFaceTB/SmolLM2-135M-Instruct", "base_model_relation": "finetune",
        "library_name": "transformers", "tags": ["obliviate", "machine-unlearning", "whp"], "license": "apache-2.0",
        "language": ["en"], "pipeline_tag": "text-generation"}
    assert front["model-index"][0]["name"] == "hp"
    assert "| metric | group | goal | base | unlearned | change vs base |" in text
    assert "| familiarity | forget | lower | 0.8 ± 0.1 | 0.2 ± 0.08 | -0.6 (better) |" in text
    assert "| toxicity | robustness |  | skipped | skipped |  |" in text
    assert file_hash(run / "manifest.json") in text
    assert "arXiv:2310.02238" in text and "knowledge of the target corpus hp.txt" in text
    assert "AutoModelForCausalLM.from_pretrained" in text and "## Limitations" in text
    assert "| labels.alpha | 5.0 |" in text


def test_model_card_needs_model_and_manifest(tmp_path):
    run = make_run(tmp_path / "nomodel", with_model=False)
    with pytest.raises(DataError, match="model"):
        write_model_card(run)
    (run / "model").mkdir()
    (run / "manifest.json").unlink()
    with pytest.raises(DataError, match="manifest.json"):
        write_model_card(run)


def test_trained_on_text_is_said_in_compare_and_report(tmp_path):
    run = make_run(tmp_path / "overlap")
    metrics_path = run / "metrics.json"
    data = json.loads(metrics_path.read_text())
    data["evaluations"]["unlearned"]["metrics"]["perplexity"]["training_overlap"] = {"texts": {"retain": 0.25}}
    metrics_path.write_text(json.dumps(data))
    note = "trained-on text: unlearned / perplexity (texts) shares 25% of its chunks with the retain training text"
    assert note in compare_table(load_evaluations(run))
    assert "trained-on text" not in compare_table(load_evaluations(make_run(tmp_path / "clean")))
    page = write_report(run).read_text(encoding="utf-8")
    assert "Metrics scored on text the model trained on" in page and note in page
