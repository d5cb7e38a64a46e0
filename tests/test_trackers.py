"""Experiment trackers: ``--report-to`` sends every logged training step to Accelerate's trackers.

TensorBoard on the tiny model through the real CLI (in-process); the other trackers only through
their checks, since their packages are not part of the test environment.
"""

from __future__ import annotations

import importlib.util
import json

import pytest

from obliviate.cli import build_parser, main
from obliviate.runs import read_log
from test_run_folder import _unlearn, texts  # noqa: F401  (texts is a fixture)


def _scalars(folder, tag: str) -> dict[int, float]:
    """``{step: value}`` of one scalar in the TensorBoard event files under ``folder``."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    values = {}
    for events in sorted(folder.rglob("events.out.tfevents.*")):
        accumulator = EventAccumulator(str(events.parent))
        accumulator.Reload()
        if tag in accumulator.Tags()["scalars"]:
            values.update({e.step: e.value for e in accumulator.Scalars(tag)})
    return values


def test_tensorboard_gets_every_logged_step(tiny_model_dir, texts, tmp_path, capsys):  # noqa: F811
    pytest.importorskip("tensorboard")
    out = tmp_path / "run"
    assert main(_unlearn(tiny_model_dir, texts, out, "--report-to", "tensorboard")) == 0
    stage = out / "trackers" / "unlearn"
    assert list(stage.glob("events.out.tfevents.*"))
    logged = {r["step"]: r["loss"] for r in read_log(out) if r.get("stage") == "unlearn" and "loss" in r}
    assert sorted(logged) == [1, 2, 3, 4]
    assert _scalars(stage, "loss") == pytest.approx(logged)
    assert set(_scalars(stage, "lr")) == {1, 2, 3, 4}
    # where a run reports is not what it computes: the same run without trackers is already done
    capsys.readouterr()
    assert main(_unlearn(tiny_model_dir, texts, out, "--report-to", "none")) == 0
    err = capsys.readouterr().err
    assert "[unlearn] already complete" in err and "[eval] already complete" in err
    config = (out / "config.yaml").read_text()
    assert "report_to: []" in config


def test_a_missing_tracker_package_is_one_line_before_anything(tiny_model_dir, texts, tmp_path, capsys,  # noqa: F811
                                                               monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    out = tmp_path / "run"
    assert main(_unlearn(tiny_model_dir, texts, out, "--report-to", "tensorboard,wandb")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: report_to 'wandb' needs the package 'wandb': install it with `pip install wandb`, or leave "
                   "'wandb' out of --report-to"]
    assert not out.exists()


def test_an_unknown_tracker_is_one_line(tiny_model_dir, texts, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "run"
    assert main(_unlearn(tiny_model_dir, texts, out, "--report-to", "tensorbored")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: 'train.report_to' must be a list of trackers among "
                                               "tensorboard, wandb, mlflow")
    assert "not ['tensorbored']" in err[0] and not out.exists()


def test_whp_reports_every_training_stage(tmp_path):
    from obliviate.cli import _whp_config

    args = build_parser().parse_args(["whp", "--target", "t.txt", "--anchors", "a.yaml", "--out", str(tmp_path / "r"),
                                      "--report-to", "tensorboard", "--report-to", "mlflow", "--license", "mit"])
    config = _whp_config(args)
    assert config.reinforce.train.report_to == config.finetune.report_to == ["tensorboard", "mlflow"]
    assert config.card.license == "mit"
    args = build_parser().parse_args(["whp", "--target", "t.txt", "--anchors", "a.yaml", "--out", str(tmp_path / "r")])
    config = _whp_config(args)
    assert config.reinforce.train.report_to == config.finetune.report_to == [] and config.card.license == ""


def test_report_to_is_not_part_of_a_stage_input(tmp_path):
    from obliviate.config import from_dict
    from obliviate.runs import run_identity, without_reporting_settings
    from obliviate.unlearn import UnlearnConfig

    plain = from_dict(UnlearnConfig, {"method": "npo"})
    tracked = from_dict(UnlearnConfig, {"method": "npo", "train": {"report_to": "tensorboard"},
                                        "card": {"license": "mit"}})
    assert tracked.train.report_to == ["tensorboard"]
    from obliviate.config import to_dict

    assert run_identity(to_dict(plain)) == run_identity(to_dict(tracked))
    assert "report_to" not in json.dumps(without_reporting_settings(to_dict(tracked)))
