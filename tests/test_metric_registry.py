"""Every registered metric, run on the tiny model with small data, against the one result type and
against what report.html, compare and the model card read.

Registering a metric without adding it to ``SPECS`` below fails `test_every_registered_metric_has_a_case`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from obliviate.evaluation import suite as suite_module
from obliviate.evaluation.registry import METRICS
from obliviate.evaluation.result import MetricResult, check_metric_record, write_evaluations
from obliviate.evaluation.suite import load_suite, run_suite
from obliviate.reporting import compare_table, load_evaluations, write_model_card, write_report
from test_tofu_metrics import write_tiny_tofu
from test_toxicity_metric import BENIGN, TOXIC, _fake_data_dir

os.environ["OBLIVIATE_PROGRESS"] = "0"
SHARED = Path(os.environ.get("OBLIVIATE_DATA_DIR") or Path(__file__).resolve().parents[1].parent / "shared" / "data")

# One small suite entry per registered metric type.
SPECS = {
    "familiarity": {"prompts": "fam.jsonl", "max_new_tokens": 4},
    "token_probability": {"prompts": "fam.jsonl", "anchors": "anchors.json"},
    "qa": {"data": "trivia.jsonl"},
    "perplexity": {"texts": {"files": ["other.txt"], "chunk_chars": 100}, "max_tokens": 40},
    "general_ability": {"tasks": ["boolq"], "limit": 2, "batch_size": 2},
    "membership_inference": {"members": {"files": ["forget.txt"], "chunk_chars": 100},
                             "nonmembers": {"files": ["other.txt"], "chunk_chars": 100}},
    "relearning": {"texts": {"files": ["forget.txt"]}, "steps": 1, "context_length": 32,
                   "metrics": ["familiarity", "qa"]},
    "quantization": {"scheme": "gguf_q4_0", "metrics": ["qa"]},
    "toxicity": {"classifier": "clf", "toxic_prompts": 2, "nontoxic_prompts": 1, "n_samples": 2,
                 "max_new_tokens": 4, "benign_perplexity_texts": 1},
    "tofu": {"folder": "tofu", "max_new_tokens": 4},
    "cloze": {"prompts": "fam.jsonl"},
}
PROMPTS = [("Harry Potter went to", ["Hogwarts", "Ron"]), ("The farmer walked to the", ["market"])]


def test_every_registered_metric_has_a_case():
    assert set(SPECS) == set(METRICS)
    for name, metric in METRICS.items():
        assert metric.spec.__dataclass_fields__["type"].default == name  # the spec says its own type


@pytest.fixture(scope="module")
def evaluated(tiny_model_dir, tmp_path_factory):
    """The suite of every metric run on the tiny model: (evaluation, {name: MetricResult}, suite)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from obliviate.toxicity.classifier import fit_toxicity_classifier

    root = tmp_path_factory.mktemp("registry")
    data = _fake_data_dir(root / "data")
    if (SHARED / "benchmarks").is_dir():
        (data / "benchmarks").symlink_to(SHARED / "benchmarks")
    (data / "fam.jsonl").write_text("".join(json.dumps({"prompt": p, "references": r}) + "\n" for p, r in PROMPTS))
    (data / "trivia.jsonl").write_text(
        json.dumps({"question": "Where did Harry go?", "true_answer": "Hogwarts", "false_answer": "the mill"}) + "\n"
        + json.dumps({"question": "Who laughed at Harry?", "true_answer": "Ron", "false_answer": "the dog"}) + "\n")
    (data / "anchors.json").write_text(json.dumps({"Hogwarts": ["the Academy"], "Harry": ["Jon"]}))
    (data / "forget.txt").write_text("Harry Potter went to Hogwarts with Ron and Hermione. Harry raised his wand.\n" * 4)
    (data / "other.txt").write_text("The river ran past the old mill near a quiet village.\n" * 4)
    write_tiny_tofu(data / "tofu")
    fit_toxicity_classifier(TOXIC + BENIGN, [1] * 4 + [0] * 4, info={"heldout_accuracy": 0.75}).save(data / "clf")
    entries = [{"name": kind, "type": kind, **settings} for kind, settings in SPECS.items()
               if kind != "general_ability" or (SHARED / "benchmarks").is_dir()]
    (root / "suite.yaml").write_text(yaml.safe_dump({"name": "every_metric", "metrics": entries}, sort_keys=False))
    suite = load_suite(root / "suite.yaml", data_dir=data)

    returned = {}
    original = suite_module.compute_metric

    def recording(model, tokenizer, spec, ctx):
        result = original(model, tokenizer, spec, ctx)
        returned.setdefault(spec.name, result)
        return result

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    suite_module.compute_metric = recording
    try:
        evaluation = run_suite(model, tokenizer, suite, "ab" * 32, model_spec=str(tiny_model_dir), use_cache=False,
                               progress=False)
    finally:
        suite_module.compute_metric = original
    return evaluation, returned, suite


@pytest.mark.parametrize("kind", list(SPECS))
def test_metric_returns_the_result_type(evaluated, kind):
    evaluation, returned, _ = evaluated
    if kind == "general_ability" and kind not in returned:
        pytest.skip(f"benchmark data not found at {SHARED}")
    result = returned[kind]
    assert isinstance(result, MetricResult)
    assert result.skipped is None, result.skipped
    assert result.family == METRICS[kind].family and result.group == METRICS[kind].spec(name="x").group
    assert isinstance(result.value, float) and isinstance(result.higher_is_better, bool) and result.n >= 1
    assert result.settings and json.dumps(result.to_json())  # plain JSON
    record = evaluation["metrics"][kind]
    assert record == result.to_json()
    check_metric_record(kind, record, "every_metric", strict=True)  # the shape report, compare and card read
    assert MetricResult.from_json(record).to_json() == record


def test_token_probability_writes_the_tokens_the_report_reads(evaluated):
    record = evaluated[0]["metrics"]["token_probability"]
    for item in record["details"]["per_item"]:
        assert item["tokens"] and all(0 < t["probability"] <= 1 for t in item["tokens"])
        assert "".join(t["token"] for t in item["tokens"]) == " " + item["reference"]


def test_report_compare_and_card_read_every_metric(evaluated, tmp_path):
    evaluation, _, _ = evaluated
    run = tmp_path / "run"
    write_evaluations(run, {"base": evaluation, "unlearned": evaluation})
    assert load_evaluations(run)["unlearned"] == json.loads(json.dumps(evaluation))
    rows = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    per_item = sum(len(m.get("details", {}).get("per_item", [])) for m in evaluation["metrics"].values())
    assert len(rows) == 2 * per_item and {"evaluation", "metric", "index"} <= set(rows[0])

    table = compare_table(load_evaluations(run))
    for name in evaluation["metrics"]:
        assert f"  {name} " in table

    page = write_report(run).read_text(encoding="utf-8")
    assert "No token_probability metric" not in page and "No familiarity metric" not in page
    first = evaluation["metrics"]["token_probability"]["details"]["per_item"][0]
    token = json.dumps(first["tokens"][0]["token"], ensure_ascii=False)
    assert f"<code>{token.replace(chr(34), '&quot;')}</code>" in page  # a heat-map row per answer token
    completion = evaluation["metrics"]["familiarity"]["details"]["per_item"][0]["completion"]
    assert completion.strip()[:10] in page.replace("&#x27;", "'").replace("&quot;", '"').replace("&amp;", "&")

    (run / "model").mkdir()
    (run / "manifest.json").write_text(json.dumps({"method": "npo", "base_model": {"spec": "tiny"}}))
    card = write_model_card(run).read_text(encoding="utf-8")
    for name, metric in evaluation["metrics"].items():
        assert f"| {name} | {metric['group']} |" in card
