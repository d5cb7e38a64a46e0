"""TOFU: data layer, metric maths on hand-computed numbers, and the metric family on the tiny model."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import ks_2samp

from obliviate.cli import main
from obliviate.errors import ConfigError, DataError
from obliviate.evaluation.metric_math import (
    extraction_strength,
    forget_quality,
    forget_truth_ratio,
    harmonic_mean,
    normalised_option_probability,
    retain_truth_ratio,
    rouge_l_recall,
    truth_ratio,
)
from obliviate.evaluation.tofu import UTILITY_KEYS, TofuSpec, raw_from_result, tofu_scores, tofu_summary
from obliviate.tofu import (
    SPLITS,
    TofuQA,
    author_of,
    load_qa,
    load_sets,
    prompt,
    read_records,
    split_files,
)

os.environ["OBLIVIATE_PROGRESS"] = "0"
TOFU_DIR = Path(os.environ.get("OBLIVIATE_DATA_DIR") or Path(__file__).resolve().parents[1].parent / "shared" / "data")
TOFU_DIR = TOFU_DIR / "tofu"
needs_tofu = pytest.mark.skipif(not (TOFU_DIR / "full.json").is_file(), reason=f"TOFU data not found at {TOFU_DIR}")


def _qa(question, answer, paraphrased=None, perturbed=None):
    record = {"question": question, "answer": answer}
    if paraphrased is not None:
        record["paraphrased_answer"] = paraphrased
        record["paraphrased_question"] = question
    if perturbed is not None:
        record["perturbed_answer"] = perturbed
    return record


FORGET = [_qa("Where did Harry go?", "Harry went to Hogwarts with Ron.", "Harry and Ron went to Hogwarts.",
              "['The farmer went to the market.', 'Harry went to the mill.']"),
          _qa("Who read a book?", "Hermione read a book.", "A book was read by Hermione.",
              ["The teacher read a book.", "Ron read a book."])]
RETAIN = [_qa("Where did the farmer walk?", "The farmer walked to the market.", "To the market the farmer walked.",
              ["The farmer walked to Hogwarts.", "The farmer walked to the river."]),
          _qa("When did the train leave?", "The train left the station at noon.", "At noon the train left.",
              ["The train left at night.", "The owl left at noon."])]
REAL_AUTHORS = [_qa("Who laughed at Harry?", "Ron Weasley", perturbed="['Hermione Granger', 'Dumbledore']"),
                _qa("Who flew over Hogwarts?", "The owl Hedwig", perturbed="['The dog', 'The farmer']")]
WORLD_FACTS = [_qa("What ran past the mill?", "The river", perturbed="['The train', 'The wind']"),
               _qa("What did she buy?", "bread and milk", perturbed="['a wand', 'a broomstick']")]
HOLDOUT = [_qa("What was the weather like?", "The weather was cold and the wind blew."),
           _qa("What did the teacher do?", "A teacher read a book to the children.")]


def write_tiny_tofu(folder: Path) -> Path:
    """A TOFU-like folder (forget01 split) with two questions per set, in the real files' layouts."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, records in (("forget01_perturbed", FORGET), ("retain_perturbed", RETAIN),
                          ("real_authors_perturbed", REAL_AUTHORS), ("world_facts_perturbed", WORLD_FACTS),
                          ("holdout01", HOLDOUT)):
        (folder / f"{name}.json").write_text(json.dumps(records))
    (folder / "forget01.json").write_text(json.dumps([{"prompt": r["question"], "response": r["answer"]}
                                                      for r in FORGET]))
    # full.json: one array per line; author 0 = retain questions, author 1 = forget questions
    filler = [{"question": f"filler {i}?", "answer": "filler."} for i in range(18)]
    lines = [RETAIN + filler, FORGET + filler]
    (folder / "full.json").write_text("\n".join(json.dumps([{"question": r["question"], "answer": r["answer"]}
                                                            for r in line]) for line in lines))
    return folder


# --- metric maths on hand-computed numbers ------------------------------------------------------


def test_truth_ratio_is_the_geometric_mean_of_perturbed_over_paraphrased():
    # exp(mean(-1, -3) - (-1.5)) = exp(-0.5)
    assert truth_ratio([-1.0, -3.0], -1.5) == pytest.approx(math.exp(-0.5))
    assert truth_ratio([-2.0], -2.0) == pytest.approx(1.0)
    with pytest.raises(DataError):
        truth_ratio([], -1.0)


def test_truth_ratio_aggregations():
    assert forget_truth_ratio([0.5, 2.0, 1.0]) == pytest.approx((0.5 + 0.5 + 1.0) / 3)
    assert retain_truth_ratio([0.5, 2.0, 0.25]) == pytest.approx((0.5 + 0.0 + 0.75) / 3)


def test_forget_quality_is_the_ks_p_value_of_inverse_truth_ratios():
    unlearned, gold = [0.2, 0.5, 0.9, 1.3, 0.7], [0.1, 0.15, 0.3, 0.25, 0.2, 0.4]
    expected = ks_2samp(1 / (np.array(unlearned) + 1e-10), 1 / (np.array(gold) + 1e-10)).pvalue
    assert forget_quality(unlearned, gold) == pytest.approx(expected)
    assert forget_quality(unlearned, gold) == pytest.approx(ks_2samp(unlearned, gold).pvalue)  # monotone map
    assert forget_quality([1.0, 2.0, 3.0], [10.0, 11.0, 12.0]) == pytest.approx(0.1)  # exact: 2 / C(6, 3)
    assert forget_quality(unlearned, unlearned) == 1.0


def test_harmonic_mean():
    assert harmonic_mean([1.0, 2.0, 4.0]) == pytest.approx(3 / (1 + 0.5 + 0.25))
    assert harmonic_mean([0.5, 0.0, 0.9]) == 0.0
    with pytest.raises(DataError):
        harmonic_mean([0.5, -0.1])


def test_rouge_l_recall_against_rouge_score():
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    assert rouge_l_recall("the cat sat", "the cat sat on the mat") == pytest.approx(0.5)  # LCS 3 of 6
    assert rouge_l_recall("cats running", "cat run") == pytest.approx(1.0)  # stemmed
    assert rouge_l_recall("", "an answer") == 0.0
    for prediction, reference in (("Basil Mahfouz wrote it in 1956", "It was written by Basil Mahfouz"),
                                  ("no overlap", "something else entirely")):
        expected = scorer.score(reference, prediction)["rougeL"].recall
        assert rouge_l_recall(prediction, reference) == pytest.approx(expected)


def test_extraction_strength():
    assert extraction_strength([True] * 4) == 1.0
    assert extraction_strength([False, True, True, True]) == pytest.approx(0.75)  # k = 1
    assert extraction_strength([True, False, True, True]) == pytest.approx(0.5)  # k = 2
    assert extraction_strength([True, True, True, False]) == pytest.approx(0.25)  # open-unlearning floor 1/n
    assert extraction_strength([False] * 4) == pytest.approx(0.25)
    with pytest.raises(DataError):
        extraction_strength([])


def test_normalised_option_probability():
    assert normalised_option_probability(0.6, [0.2, 0.2]) == pytest.approx(0.6)
    assert normalised_option_probability(0.1, [0.3]) == pytest.approx(0.25)
    with pytest.raises(DataError):
        normalised_option_probability(0.0, [0.0])


# --- data layer ----------------------------------------------------------------------------------


def test_split_files_and_prompt():
    files = split_files("forget05")
    assert (files.forget, files.forget_perturbed, files.retain, files.holdout) == (
        "forget05.json", "forget05_perturbed.json", "retain95.json", "holdout05.json")
    assert split_files("forget01").retain == "retain99.json" and split_files("forget10").retain == "retain90.json"
    with pytest.raises(ConfigError, match="forget01"):
        split_files("forget02")
    assert prompt("Who?") == "Question: Who?\nAnswer:"


@needs_tofu
def test_load_qa_on_the_shared_files():
    forget = load_qa(TOFU_DIR / "forget01.json")  # prompt / response
    perturbed = load_qa(TOFU_DIR / "forget01_perturbed.json")
    assert len(forget) == len(perturbed) == 40
    assert [(q.question, q.answer) for q in forget] == [(q.question, q.answer) for q in perturbed]
    assert all(q.paraphrased_answer and len(q.perturbed_answers) == 5 for q in perturbed)
    real = load_qa(TOFU_DIR / "real_authors_perturbed.json")
    assert len(real) == 100 and real[0].paraphrased_answer is None and len(real[0].perturbed_answers) >= 2
    full = read_records(TOFU_DIR / "full.json")  # four arrays, one per line
    assert len(full) == 4000
    assert set(author_of([q.question for q in forget], full)) == {198, 199}
    for split in SPLITS:
        sets = load_sets(TOFU_DIR, split, retain_authors=[0, 1], limit=7)
        assert {len(items) for items in sets.values()} == {7}
        assert {q.author for q in sets["retain"]} == {0, 1}  # a limit spreads over the authors, as the bench does


def test_read_records_layouts(tmp_path):
    records = [{"question": "a?", "answer": "b"}, {"question": "c?", "answer": "d"}]
    (tmp_path / "array.json").write_text(json.dumps(records))
    (tmp_path / "lines.json").write_text(json.dumps(records[:1]) + "\n" + json.dumps(records[1:]) + "\n")
    (tmp_path / "objects.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    for name in ("array.json", "lines.json", "objects.jsonl"):
        assert read_records(tmp_path / name) == records


@pytest.mark.parametrize("record, message", [
    ({"question": "a?"}, "record 1: needs a non-empty \"answer\""),
    ({"answer": "b"}, "record 1: needs a non-empty \"question\""),
    ({"question": "a?", "answer": "b", "perturbed_answer": "['x', "}, "not a Python list literal"),
    ({"question": "a?", "answer": "b", "perturbed_answer": "__import__('os').getcwd()"}, "not a Python list literal"),
    ({"question": "a?", "answer": "b", "perturbed_answer": "[1, 2]"}, "list of non-empty strings"),
    ({"question": "a?", "answer": "b", "paraphrased_answer": ""}, "paraphrased_answer"),
])
def test_load_qa_refuses_bad_records(tmp_path, record, message):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps([{"question": "ok?", "answer": "fine"}, record]))
    with pytest.raises(DataError, match=message.replace("[", r"\[").replace("(", r"\(")) as info:
        load_qa(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_load_qa_refuses_bad_files(tmp_path):
    with pytest.raises(DataError, match="cannot read"):
        load_qa(tmp_path / "missing.json")
    (tmp_path / "broken.json").write_text('[{"question": "a?"\n')
    with pytest.raises(DataError, match="line 1 is not JSON"):
        load_qa(tmp_path / "broken.json")
    (tmp_path / "numbers.json").write_text("[1, 2]")
    with pytest.raises(DataError, match="record 0 is a int"):
        load_qa(tmp_path / "numbers.json")


def test_load_sets_on_a_tiny_folder(tmp_path):
    folder = write_tiny_tofu(tmp_path / "tofu")
    sets = load_sets(folder, "forget01")
    assert {name: len(items) for name, items in sets.items()} == {
        "forget": 2, "retain": 2, "real_authors": 2, "world_facts": 2, "holdout": 2}
    assert [q.author for q in sets["forget"]] == [1, 1] and [q.author for q in sets["retain"]] == [0, 0]
    assert sets["forget"][0].perturbed_answers == ["The farmer went to the market.", "Harry went to the mill."]
    with pytest.raises(DataError, match="authors 0-19"):
        load_sets(folder, "forget01", retain_authors=[5])
    with pytest.raises(DataError, match="forget05_perturbed.json"):
        load_sets(folder, "forget05")


# --- the metric family on the tiny model ---------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_sets(tmp_path_factory):
    return load_sets(write_tiny_tofu(tmp_path_factory.mktemp("tofu")), "forget01")


@pytest.fixture(scope="module")
def scored(tiny_model_dir, tiny_sets):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    first = tofu_scores(model, tokenizer, tiny_sets, max_new_tokens=6, batch_size=3)
    second = tofu_scores(model, tokenizer, tiny_sets, max_new_tokens=6, batch_size=8)
    return model, tokenizer, first, second


def test_tofu_scores_per_item_numbers(scored, tiny_sets):
    _, _, raw, _ = scored
    json.dumps(raw)  # plain JSON
    items = raw["items"]
    assert {name: len(rows) for name, rows in items.items()} == {name: 2 for name in tiny_sets}
    forget = items["forget"][0]
    assert forget["prob"] == pytest.approx(math.exp(forget["mean_logprob"]))
    assert forget["truth_ratio"] == pytest.approx(truth_ratio(forget["perturbed_mean_logprobs"],
                                                              forget["paraphrased_mean_logprob"]))
    assert 0 < forget["extraction_strength"] <= 1 and "\n" not in forget["generation"]
    assert 0 <= forget["rouge_l_recall"] <= 1
    real = items["real_authors"][0]
    assert real["truth_ratio"] == pytest.approx(truth_ratio(real["perturbed_mean_logprobs"], real["mean_logprob"]))
    assert real["option_prob"] == pytest.approx(normalised_option_probability(
        real["prob"], [math.exp(x) for x in real["perturbed_mean_logprobs"]]))
    assert "generation" not in items["holdout"][0] and "min_k" in items["holdout"][0]
    assert 0 <= raw["mia_auc"] <= 1


def test_tofu_twice_gives_identical_numbers(scored):
    _, _, first, second = scored  # different batch sizes too
    for name, rows in first["items"].items():
        for a, b in zip(rows, second["items"][name]):
            assert a["generation" if "generation" in a else "question"] == b["generation" if "generation" in b
                                                                           else "question"]
            for key, value in a.items():
                if isinstance(value, float):
                    assert value == pytest.approx(b[key], abs=1e-5), (name, key)
    assert tofu_summary(first) == pytest.approx(tofu_summary(second), abs=1e-5)


def test_tofu_summary_against_itself(scored):
    _, _, raw, _ = scored
    alone = tofu_summary(raw)
    assert "forget_quality" not in alone and "privleak" not in alone
    assert alone["model_utility"] == pytest.approx(harmonic_mean([alone[key] for key in UTILITY_KEYS]))
    assert alone["forget_truth_ratio"] == pytest.approx(
        forget_truth_ratio([row["truth_ratio"] for row in raw["items"]["forget"]]))
    against_self = tofu_summary(raw, raw)
    assert against_self["forget_quality"] == 1.0 and against_self["privleak"] == 0.0
    other = json.loads(json.dumps(raw))
    other["items"]["forget"] = other["items"]["forget"][:1]
    with pytest.raises(DataError, match="other forget questions"):
        tofu_summary(raw, other)


def test_tofu_scores_refuses_bad_sets(scored):
    model, tokenizer, _, _ = scored
    with pytest.raises(ConfigError, match="unknown TOFU set 'paraphrased'"):
        tofu_scores(model, tokenizer, {"paraphrased": [TofuQA("a?", "b")]})
    with pytest.raises(DataError, match="needs a paraphrased answer"):
        tofu_scores(model, tokenizer, {"forget": [TofuQA("a?", "b")]})


def test_greedy_matches_agree_with_the_next_token_distribution(scored):
    from obliviate.scoring import continuation_greedy_matches, next_token_distribution

    model, tokenizer, _, _ = scored
    pairs = [(prompt("Where did Harry go?"), " Harry went to Hogwarts."), ("The farmer", " walked to the market.")]
    matches = continuation_greedy_matches(model, tokenizer, pairs)
    first_ids = [tokenizer(c, add_special_tokens=False)["input_ids"][0] for _, c in pairs]
    argmax = next_token_distribution(model, tokenizer, [p for p, _ in pairs]).argmax(-1).tolist()
    assert [m[0] for m in matches] == [a == f for a, f in zip(argmax, first_ids)]
    assert [len(m) for m in matches] == [len(tokenizer(c, add_special_tokens=False)["input_ids"]) for _, c in pairs]


def test_spec_rules():
    rules = {key: holds for key, holds, _ in TofuSpec(name="t", split="forget02", k=0, retain_authors=[]).check()}
    assert not rules["split"] and not rules["k"] and not rules["retain_authors"]
    assert all(holds for _, holds, _ in TofuSpec(name="t").check())


def test_eval_cli_with_the_builtin_suite_and_a_reference(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("OBLIVIATE_CACHE", str(tmp_path / "cache"))
    write_tiny_tofu(tmp_path / "data" / "tofu")
    out = tmp_path / "eval"
    args = ["eval", str(tiny_model_dir), "--suite", "tofu_forget01", "--data-dir", str(tmp_path / "data"),
            "--out", str(out), "--limit", "2"]
    assert main(args + ["--reference", str(tiny_model_dir)]) == 0
    record = json.loads((out / "metrics.json").read_text())["evaluations"]["tiny_model0"]["metrics"]["tofu_forget01"]
    assert record["family"] == "tofu" and record["settings"]["reference_model"] == str(tiny_model_dir)
    details = record["details"]
    assert details["headline"] == "forget_quality" and record["value"] == 1.0  # the model against itself
    assert details["summary"]["privleak"] == 0.0 and "model_utility" in details["summary"]
    raw = raw_from_result(record)
    assert tofu_summary(raw, raw)["forget_quality"] == 1.0
    assert tofu_summary(raw) == pytest.approx({k: v for k, v in details["summary"].items()
                                               if k not in ("forget_quality", "privleak")})
    assert len(list((tmp_path / "cache" / "tofu_reference").glob("*.json"))) == 1  # the reference's raw scores
    again = tmp_path / "again"  # recomputed, with the reference's scores from its cache
    assert main(args + ["--reference", str(tiny_model_dir), "--no-cache", "--out", str(again)]) == 0
    second = json.loads((again / "metrics.json").read_text())["evaluations"]["tiny_model0"]["metrics"]
    assert second["tofu_forget01"]["details"]["summary"] == pytest.approx(details["summary"], abs=1e-6)
    rows = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert {row["set"] for row in rows} == {"forget", "retain", "real_authors", "world_facts", "holdout"}

    assert main(args[:-2] + ["--out", str(tmp_path / "plain")]) == 0  # no reference: forget truth ratio
    plain = json.loads((tmp_path / "plain" / "metrics.json").read_text())["evaluations"]["tiny_model0"]
    assert plain["metrics"]["tofu_forget01"]["details"]["headline"] == "forget_truth_ratio"


def test_eval_cli_refuses_missing_tofu_data_and_a_useless_reference(tiny_model_dir, tmp_path, capsys):
    assert main(["eval", str(tiny_model_dir), "--suite", "tofu_forget05", "--data-dir", str(tmp_path),
                 "--out", str(tmp_path / "o")]) != 0
    assert "tofu/forget05_perturbed.json" in capsys.readouterr().err
    suite = tmp_path / "suite.yaml"
    (tmp_path / "fam.jsonl").write_text(json.dumps({"prompt": "Harry went to", "references": ["Hogwarts"]}) + "\n")
    suite.write_text("name: s\nmetrics:\n  - {name: f, type: familiarity, prompts: fam.jsonl}\n")
    assert main(["eval", str(tiny_model_dir), "--suite", str(suite), "--data-dir", str(tmp_path),
                 "--out", str(tmp_path / "o"), "--reference", str(tiny_model_dir)]) != 0
    assert "takes a reference model" in capsys.readouterr().err



def test_the_answer_is_the_first_nonempty_line_of_a_generation():
    from obliviate.evaluation.tofu import _answer_line

    assert _answer_line(" Basil Mahfouz.\nQuestion: who?") == "Basil Mahfouz."
    assert _answer_line("\n\n  The author is Basil.  \nQuestion: who?\nAnswer: x") == "The author is Basil."
    assert _answer_line("\n \n") == "" and _answer_line("") == ""


@needs_tofu
@pytest.mark.parametrize("split", SPLITS)
def test_builtin_tofu_suites_find_their_data(split):
    from obliviate.evaluation.suite import load_suite

    suite = load_suite(f"tofu_{split}", data_dir=TOFU_DIR.parent)
    (spec,) = suite.metrics
    assert (spec.type, spec.split, spec.reference_model) == ("tofu", split, None)
    assert all((TOFU_DIR.parent / f).is_file() for f in spec.data_files())
