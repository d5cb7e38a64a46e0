"""`obliviate unlearn` end to end on the tiny model, called in-process through its argparse parser."""

from __future__ import annotations

import argparse
import json
import os

import pytest
import torch

from conftest import TINY_TEXT
from obliviate.errors import ConfigError
from obliviate.unlearn_cli import add_unlearn_parser

os.environ["OBLIVIATE_PROGRESS"] = "0"


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The tiny model's ops are too small to gain from threads; on a busy 2-core box they lose a lot."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def texts(tmp_path_factory):
    folder = tmp_path_factory.mktemp("texts")
    harry_potter, farmer = TINY_TEXT.split("\n")[:2]
    (folder / "forget.txt").write_text((harry_potter + "\n") * 3)
    (folder / "retain.txt").write_text((farmer + "\n") * 3)
    (folder / "probe.jsonl").write_text(
        json.dumps({"prompt": "Harry Potter went to", "references": ["Hogwarts"]}) + "\n"
        + json.dumps({"prompt": "Ron Weasley laughed at", "references": ["Harry"]}) + "\n")
    return folder


def _parse(argv: list[str]):
    parser = argparse.ArgumentParser(prog="obliviate")
    add_unlearn_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["unlearn", *argv])


def _argv(model_dir, texts, out, method: str, *extra: str) -> list[str]:
    return ["--model", str(model_dir), "--method", method, "--forget", str(texts / "forget.txt"),
            "--retain", str(texts / "retain.txt"), "--out", str(out), "--context-length", "16",
            "--set", "train.max_steps=2", "--set", "train.batch_size=4", "--set", "train.learning_rate=1e-3",
            *extra]


def test_unlearn_end_to_end_then_resume(tiny_model_dir, texts, tmp_path, capsys):
    from transformers import AutoModelForCausalLM

    out = tmp_path / "run"
    args = _parse(_argv(tiny_model_dir, texts, out, "npo", "--set", "method.beta=0.2",
                        "--probe-prompts", str(texts / "probe.jsonl"), "--general-text", str(texts / "retain.txt")))
    assert args.func(args) == 0
    captured = capsys.readouterr()
    assert f"run folder: {out}" in captured.out and "perplexity on general text" in captured.out

    AutoModelForCausalLM.from_pretrained(out / "model")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["complete"] and manifest["method"] == "npo"
    assert manifest["hyperparameters"]["method_settings"] == {"beta": 0.2}
    assert manifest["unlearned_model"]["weights_sha256"] != manifest["base_model"]["weights_sha256"]
    assert manifest["inputs"]["forget_sha256"] and manifest["inputs"]["retain_sha256"]
    unlearn = manifest["stages"]["unlearn"]
    assert unlearn["steps"] == 2 and unlearn["saved"] == "full"
    assert unlearn["forget_heldout_nll"]["after"] > unlearn["forget_heldout_nll"]["before"]
    metrics = {k: e["metrics"] for k, e in json.loads((out / "metrics.json").read_text())["evaluations"].items()}
    assert set(metrics) == {"base", "unlearned"}
    assert {"reference_probability", "general_perplexity"} <= set(metrics["unlearned"])
    # the general text given here is the retain text: said, and recorded for the unlearned model only
    assert metrics["unlearned"]["general_perplexity"]["training_overlap"]["texts"]["retain"] > 0
    assert "training_overlap" not in metrics["base"]["general_perplexity"]
    assert "trained-on text: unlearned / general_perplexity (texts)" in captured.err

    args = _parse(_argv(tiny_model_dir, texts, out, "npo", "--set", "method.beta=0.2",
                        "--probe-prompts", str(texts / "probe.jsonl"), "--general-text", str(texts / "retain.txt")))
    assert args.func(args) == 0
    err = capsys.readouterr().err
    assert "[unlearn] already complete" in err and "[eval] already complete" in err


def test_unlearn_rmu_with_lora_adapter(tiny_model_dir, texts, tmp_path):
    out = tmp_path / "run"
    args = _parse(_argv(tiny_model_dir, texts, out, "rmu", "--lora", "--lora-save", "adapter",
                        "--general-text", str(texts / "retain.txt")))
    assert args.func(args) == 0
    assert (out / "model" / "adapter_config.json").exists() and not (out / "model" / "config.json").exists()
    adapter = json.loads((out / "model" / "adapter_config.json").read_text())
    state = json.loads((out / "state.json").read_text())["stages"]["unlearn"]
    layers = {int(t.split(".layers.")[1].split(".")[0]) for t in adapter["target_modules"]}
    assert layers == {state["method_resolved"]["layer"] - i for i in range(3) if state["method_resolved"]["layer"] >= i}
    assert state["saved"] == "adapter" and state["adapter_sha256"]
    metrics = {k: e["metrics"] for k, e in json.loads((out / "metrics.json").read_text())["evaluations"].items()}
    assert "general_perplexity" in metrics["unlearned"]


def test_unknown_method_is_a_clear_error(tiny_model_dir, texts, tmp_path):
    args = _parse(_argv(tiny_model_dir, texts, tmp_path / "run", "forgetful"))
    with pytest.raises(ConfigError, match="unknown unlearning method 'forgetful': choose one of gradient_ascent"):
        args.func(args)
    assert not (tmp_path / "run").exists()


def test_unknown_method_setting_names_the_key(tiny_model_dir, texts, tmp_path):
    args = _parse(_argv(tiny_model_dir, texts, tmp_path / "run", "rmu", "--set", "method.steering_coef=5"))
    with pytest.raises(ConfigError, match="unknown setting 'method.steering_coef'"):
        args.func(args)


def test_missing_retain_text_is_a_clear_error(tiny_model_dir, texts, tmp_path):
    argv = [a for a in _argv(tiny_model_dir, texts, tmp_path / "run", "grad_diff") if a != "--retain"
            and not a.endswith("retain.txt")]
    with pytest.raises(ConfigError, match="method 'grad_diff' needs retain text"):
        cmd = _parse(argv)
        cmd.func(cmd)
    npo = [a for a in _argv(tiny_model_dir, texts, tmp_path / "run", "npo") if a != "--retain"
           and not a.endswith("retain.txt")]
    with pytest.raises(ConfigError, match=r"--set method.alpha=0"):
        cmd = _parse(npo)
        cmd.func(cmd)
