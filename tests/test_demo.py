"""`obliviate demo` end to end on the tiny model: synthesis, the four stages, and a second run that reuses them."""

from __future__ import annotations

import json
import os

from obliviate.cli import main

os.environ["OBLIVIATE_PROGRESS"] = "0"


def test_demo_runs_and_resumes(tiny_model_dir, tmp_path, capsys, monkeypatch):
    import obliviate.demo

    small = {**obliviate.demo.DEMO_SETTINGS,
             "synthesize": {**obliviate.demo.DEMO_SETTINGS["synthesize"], "n_samples": 8, "max_new_tokens": 40},
             "reinforce": {"train": {"max_steps": 2, "batch_size": 2}}, "finetune": {"max_steps": 2, "batch_size": 2}}
    monkeypatch.setattr(obliviate.demo, "DEMO_SETTINGS", small)
    out = tmp_path / "demo"
    assert main(["demo", "--model", str(tiny_model_dir), "--out", str(out)]) == 0
    state = json.loads((out / "state.json").read_text())
    assert state["kind"] == "whp" and all(state["stages"][s]["complete"] for s in ("reinforce", "labels", "finetune",
                                                                                     "eval"))
    assert json.loads((out / "manifest.json").read_text())["complete"]
    from huggingface_hub import ModelCard

    card = ModelCard.load(out / "model" / "README.md")  # the demo's card carries its before/after results
    measured = json.loads((out / "metrics.json").read_text())["evaluations"]["unlearned"]["metrics"]
    assert {r.metric_type: r.metric_value for r in card.data.eval_results} == \
        {name: m["value"] for name, m in measured.items() if "skipped" not in m}
    assert card.data.eval_results and card.data.pipeline_tag == "text-generation"
    capsys.readouterr()
    assert main(["demo", "--model", str(tiny_model_dir), "--out", str(out)]) == 0
    assert capsys.readouterr().err.count("already complete") == 4
