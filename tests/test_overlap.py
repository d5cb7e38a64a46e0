"""Evaluation texts checked against the blocks a run trained on (evaluation/overlap.py)."""

import json
import shutil

import pytest
import yaml

from conftest import TINY_TEXT
from obliviate.cli import main
from obliviate.evaluation.overlap import overlap_notes, shared_fraction, squash, suite_overlap, training_texts
from obliviate.evaluation.suite import load_suite

HARRY, FARMER = TINY_TEXT.split("\n")[:2]


def test_shared_fraction_counts_chunks_with_a_verbatim_passage():
    training = squash("alpha beta gamma " * 3 + HARRY)
    chunks = [HARRY,                                   # wholly in the training text
              "unrelated words " * 10,                  # nowhere
              "short",                                  # shorter than a probe, absent
              "gamma alpha",                            # shorter than a probe, present
              FARMER[:40] + " " + HARRY]                 # starts with untrained text; its probes fall in trained text
    shares = [shared_fraction([c], training) for c in chunks]
    assert shares == [1.0, 0.0, 0.0, 1.0, 1.0]
    assert shared_fraction(chunks, training) == pytest.approx(3 / 5)
    assert shared_fraction([], training) == 0.0 and shared_fraction(chunks, "") == 0.0
    assert shared_fraction(["a\n\nb   c " * 20], squash("a b c " * 30)) == 1.0  # whitespace does not matter


def _run_folder(path, forget, retain, **corpus):
    """A run folder as `obliviate unlearn` leaves it: config.yaml + state.json (+ model/ when asked)."""
    path.mkdir(parents=True)
    config = {"model": "x", "method": "grad_diff",
              "forget": {"sources": [str(forget)], "context_length": 16, "heldout_fraction": 0.0, **corpus},
              "retain": {"sources": [str(retain)] if retain else [], "context_length": 16, "heldout_fraction": 0.0}}
    (path / "config.yaml").write_text(yaml.safe_dump(config))
    (path / "state.json").write_text(json.dumps({"stages": {}}))
    return path


def test_training_texts_are_the_trained_blocks_only(tmp_path, tiny_tokenizer):
    (tmp_path / "forget.txt").write_text(HARRY + "\n" + FARMER + "\n")
    (tmp_path / "retain.txt").write_text(FARMER + "\n")
    run = _run_folder(tmp_path / "run", tmp_path / "forget.txt", tmp_path / "retain.txt", max_blocks=2)
    texts = training_texts(run, tiny_tokenizer)
    assert set(texts) == {"forget", "retain"}
    assert squash(FARMER)[:150] in texts["retain"]  # (a last block under 16 tokens is dropped, as in training)
    # max_blocks=2 x 16 tokens: the start of the forget text was trained on, its end was not
    assert squash(HARRY)[:40] in texts["forget"] and squash(FARMER)[-40:] not in texts["forget"]
    assert training_texts(run / "model", tiny_tokenizer) == texts  # the model folder inside a run
    assert training_texts(tmp_path, tiny_tokenizer) == {}  # not a run folder


def test_training_texts_without_retain(tmp_path, tiny_tokenizer):
    (tmp_path / "forget.txt").write_text(HARRY + "\n")
    run = _run_folder(tmp_path / "run", tmp_path / "forget.txt", None)
    assert set(training_texts(run, tiny_tokenizer)) == {"forget"}


def _suite(tmp_path, general_span):
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    (data / "general.txt").write_text((FARMER + "\n") * 4 + (HARRY.replace("Harry", "Larry") + "\n") * 4)
    suite = {"name": "s", "metrics": [
        {"name": "general_ppl", "type": "perplexity", "group": "utility",
         "texts": {"files": ["general.txt"], "span": general_span, "chunk_chars": 200}},
        {"name": "trivia", "type": "qa", "data": "trivia.jsonl"}]}
    (data / "trivia.jsonl").write_text(json.dumps({"question": "Q?", "true_answer": "a", "false_answer": "b"}) + "\n")
    (tmp_path / "suite.yaml").write_text(yaml.safe_dump(suite))
    return load_suite(tmp_path / "suite.yaml", data_dir=data)


def test_suite_overlap_names_metric_field_and_role(tmp_path):
    texts = {"retain": squash(FARMER * 2), "forget": squash(HARRY)}
    overlap = suite_overlap(_suite(tmp_path, [0.0, 1.0]), texts)
    assert set(overlap) == {"general_ppl"}
    assert overlap["general_ppl"]["texts"]["retain"] == pytest.approx(0.5, abs=0.2)
    assert "forget" not in overlap["general_ppl"]["texts"]  # "Larry" is not in the forget text
    assert suite_overlap(_suite(tmp_path, [0.6, 1.0]), texts) == {}  # the second half: Larry only
    assert suite_overlap(_suite(tmp_path, [0.0, 1.0]), texts, only=["trivia"]) == {}
    notes = overlap_notes("run", {"general_ppl": {"training_overlap": overlap["general_ppl"]}})
    assert len(notes) == 1 and "general_ppl" in notes[0] and "retain training text" in notes[0]


def test_eval_of_a_run_folder_marks_trained_on_text(tmp_path, tiny_model_dir, capsys, monkeypatch):
    monkeypatch.setenv("OBLIVIATE_PROGRESS", "0")
    monkeypatch.setenv("OBLIVIATE_CACHE", str(tmp_path / "cache"))
    suite = _suite(tmp_path, [0.0, 1.0])
    (tmp_path / "retain.txt").write_text((FARMER + "\n") * 4)
    (tmp_path / "forget.txt").write_text(HARRY + "\n")
    run = _run_folder(tmp_path / "run", tmp_path / "forget.txt", tmp_path / "retain.txt")
    shutil.copytree(tiny_model_dir, run / "model")
    out = tmp_path / "eval"
    assert main(["eval", str(run), "--suite", suite.path, "--data-dir", str(suite.data_dir), "--out", str(out),
                 "--only", "general_ppl"]) == 0
    assert "trained-on text: run / general_ppl (texts) shares" in capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())["evaluations"]["run"]["metrics"]
    assert metrics["general_ppl"]["training_overlap"]["texts"]["retain"] > 0
    # the same model outside a run folder: nothing to check against, nothing marked
    assert main(["eval", str(tiny_model_dir), "--suite", suite.path, "--data-dir", str(suite.data_dir),
                 "--out", str(tmp_path / "eval2"), "--only", "general_ppl", "--label", "m"]) == 0
    metrics = json.loads((tmp_path / "eval2" / "metrics.json").read_text())["evaluations"]["m"]["metrics"]
    assert "training_overlap" not in metrics["general_ppl"]
