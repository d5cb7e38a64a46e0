"""`obliviate search`: objective maths on hand numbers, and the Optuna study end to end on the tiny
model with a tiny suite whose prompts fall in both halves (trials, resume, pruning, feasibility,
best.yaml, the held-out half never computed during the search)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import optuna
import pytest
import yaml

from conftest import TINY_TEXT
from obliviate.cli import main
from obliviate.errors import ConfigError
from obliviate.evaluation import suite as suite_api
from obliviate.evaluation.halves import dev_half
from obliviate.methods import UNLEARNING_METHODS
from obliviate.search import (SEARCH_SPACES, SearchConfig, best_trial, bound_violations, metric_gain,
                              objective_value, run_search)
from obliviate.settings import load_config

os.environ["OBLIVIATE_PROGRESS"] = "0"
optuna.logging.set_verbosity(optuna.logging.WARNING)

HP_PROMPTS = ["Harry Potter went to", "Ron Weasley laughed at", "Hermione Granger read a", "The owl Hedwig flew over",
              "Professor Dumbledore spoke to", "Harry raised his", "Harry's scar hurt when", "Quidditch is played on"]
FARM_PROMPTS = ["The farmer walked to the", "The river ran past the", "She bought bread and", "The train left the",
                "A teacher read a", "The weather was cold and"]


def _prompts(path, prompts):
    path.write_text("".join(json.dumps({"prompt": p, "references": [" " + p.split()[0]]}) + "\n" for p in prompts))


@pytest.fixture
def kit(tmp_path, monkeypatch):
    """Forget/retain text and a tiny suite: forget probability, retain probability and perplexity, in halves."""
    monkeypatch.setenv("OBLIVIATE_CACHE", str(tmp_path / "cache"))
    for prompts in (HP_PROMPTS, FARM_PROMPTS):  # the fixed rule puts some prompts of each file in each half
        assert {dev_half(p) for p in prompts} == {"tune", "heldout"}
    harry_potter, farmer = TINY_TEXT.split("\n")[:2]
    (tmp_path / "forget.txt").write_text((harry_potter + "\n") * 3)
    (tmp_path / "general.txt").write_text((farmer + "\n") * 4)
    _prompts(tmp_path / "hp.jsonl", HP_PROMPTS)
    _prompts(tmp_path / "farm.jsonl", FARM_PROMPTS)
    metrics = []
    for half, span in (("tune", [0.0, 0.5]), ("heldout", [0.5, 1.0])):
        metrics += [
            {"name": f"hp_probability_{half}", "type": "token_probability", "group": "forget",
             "prompts": "hp.jsonl", "half": half},
            {"name": f"hp_cloze_{half}", "type": "cloze", "group": "forget", "prompts": "hp.jsonl", "half": half},
            {"name": f"farm_probability_{half}", "type": "token_probability", "group": "retain",
             "prompts": "farm.jsonl", "half": half},
            {"name": f"general_perplexity_{half}", "type": "perplexity", "group": "utility",
             "texts": {"files": ["general.txt"], "span": span}},
        ]
    (tmp_path / "suite.yaml").write_text(yaml.safe_dump({"name": "tiny", "metrics": metrics}))
    return tmp_path


def _search(kit, **changes) -> SearchConfig:
    settings = {"method": "gradient_ascent", "trials": 2, "params": ["train.learning_rate"],
                "suite": str(kit / "suite.yaml"), "data_dir": str(kit), "max_perplexity_rise": 1000.0,
                "max_retain_change": 1000.0, "pruner": "none"}
    return SearchConfig(**{**settings, **changes})


def _run(kit, model_dir, out, search, **kwargs):
    options = {"model": str(model_dir), "forget": {"sources": [str(kit / "forget.txt")], "context_length": 16}}
    overrides = ["train.max_steps=1", "train.batch_size=2"]
    return run_search(search, out, options=options, overrides=overrides, **kwargs)


@pytest.fixture
def ran_metrics(monkeypatch):
    """The metric names every run_suite call of the test computed."""
    names = []
    real = suite_api.run_suite

    def recording(*args, only=None, **kwargs):
        names.extend(only or ["<all>"])
        return real(*args, only=only, **kwargs)

    monkeypatch.setattr(suite_api, "run_suite", recording)
    return names


def _trials(out) -> list[dict]:
    return [json.loads(line) for line in (out / "trials.jsonl").read_text().splitlines()]


# ---- maths and the table ----

def test_gain_objective_and_bounds_on_hand_numbers():
    assert metric_gain(0.2, 0.4, higher_is_better=False) == pytest.approx(0.5)  # probability halved: +50%
    assert metric_gain(12.0, 10.0, higher_is_better=True) == pytest.approx(0.2)
    base = {"a": {"value": 0.4, "higher_is_better": False}, "b": {"value": 1.0, "higher_is_better": False},
            "ppl": {"value": 10.0}, "keep": {"value": 0.5}}
    after = {"a": {"value": 0.2}, "b": {"value": 1.5}, "ppl": {"value": 10.4}, "keep": {"value": 0.44}}
    assert objective_value(after, base, ["a", "b"]) == pytest.approx((0.5 - 0.5) / 2)
    search = SearchConfig(max_perplexity_rise=5.0, max_retain_change=10.0)
    # perplexity +4% against 5%: holds by 0.01; keep -12% against 10% either way: broken by 0.02
    assert bound_violations(after, base, search, "ppl", ["keep"]) == \
        {"ppl": pytest.approx(-0.01), "keep": pytest.approx(0.02)}


def test_every_method_has_a_search_space():
    assert set(SEARCH_SPACES) == {"whp", *UNLEARNING_METHODS}
    assert {"labels.alpha", "labels.soft", "finetune.learning_rate", "finetune.epochs", "lora.enabled"} <= \
        set(SEARCH_SPACES["whp"])
    docs = (Path(__file__).resolve().parents[1] / "docs" / "meta_search.md").read_text(encoding="utf-8")
    table = docs[docs.index("### What is searched"):docs.index("### Objective and bounds")]
    for method, space in SEARCH_SPACES.items():
        rate = space.get("train.learning_rate") or space["finetune.learning_rate"]
        assert rate.log, method
        assert f"`{method}`" in table or method in ("gradient_ascent",), method  # documented
        for path in space:
            assert f"`{path}`" in table, path


def test_best_trial_is_never_infeasible():
    study = optuna.create_study(direction="maximize")
    dist = {"x": optuna.distributions.FloatDistribution(0, 1)}
    for value, feasible in ((0.9, False), (0.3, True), (0.5, True), (2.0, False)):
        study.add_trial(optuna.trial.create_trial(params={"x": value / 2}, distributions=dist, value=value,
                                                  user_attrs={"feasible": feasible}))
    assert best_trial(study).value == 0.5


# ---- the study on the tiny model ----

def test_search_writes_trials_best_yaml_and_never_computes_the_heldout_half(kit, tiny_model_dir, tmp_path,
                                                                              ran_metrics):
    out = tmp_path / "search"
    result = _run(kit, tiny_model_dir, out, _search(kit))
    assert ran_metrics and not [n for n in ran_metrics if not n.endswith("_tune")]  # tune half only
    trials = _trials(out)
    assert [t["trial"] for t in trials] == [0, 1] and all(t["state"] == "complete" for t in trials)
    for t in trials:
        assert set(t["tune_metrics"]) == {"hp_probability_tune", "hp_cloze_tune", "farm_probability_tune",
                                          "general_perplexity_tune"}
        assert t["feasible"] is True and t["seconds"] > 0 and "train.learning_rate" in t["settings"]
        assert (out / "trials" / str(t["trial"]) / "config.yaml").is_file()
    assert (out / "search.db").is_file() and set(json.loads((out / "base.json").read_text())) == \
        set(trials[0]["tune_metrics"])
    best = max(trials, key=lambda t: t["objective"])
    assert result["best"] == best["trial"]
    kind, config, _ = load_config(out / "best.yaml")  # loads into the config classes, as `obliviate run` does
    assert kind == "unlearn" and config.method == "gradient_ascent"
    assert config.train.learning_rate == pytest.approx(best["settings"]["train.learning_rate"])
    assert config.train.max_steps == 1

    # the final step alone computes the held-out half, beside the tune half
    ran_metrics.clear()
    result = _run(kit, tiny_model_dir, out, _search(kit), final=True)
    assert {n for n in ran_metrics if n.endswith("_heldout")} == {"hp_probability_heldout", "hp_cloze_heldout",
                                                                 "farm_probability_heldout",
                                                                 "general_perplexity_heldout"}
    final = json.loads((out / "final.json").read_text())
    assert final["trial"] == best["trial"]
    assert set(final["metrics"]["hp_probability"]["best"]) == {"tune", "heldout"}


def test_a_range_narrows_the_sampled_values_and_is_part_of_the_question(kit, tiny_model_dir, tmp_path):
    out = tmp_path / "search"
    _run(kit, tiny_model_dir, out, _search(kit, trials=3, ranges={"train.learning_rate": ["2e-5", "3e-5"]}))
    rates = [t["settings"]["train.learning_rate"] for t in _trials(out)]
    assert len(rates) == 3 and all(2e-5 <= r <= 3e-5 for r in rates), rates
    with pytest.raises(ConfigError, match="holds a search with other settings"):  # another range, same folder
        _run(kit, tiny_model_dir, out, _search(kit, trials=4, ranges={"train.learning_rate": ["1e-5", "3e-5"]}))


def test_resume_continues_the_same_study(kit, tiny_model_dir, tmp_path):
    out = tmp_path / "search"
    _run(kit, tiny_model_dir, out, _search(kit, trials=2))
    first = _trials(out)
    stamp = (out / "trials" / "0" / "config.yaml").stat().st_mtime_ns
    _run(kit, tiny_model_dir, out, _search(kit, trials=3))
    trials = _trials(out)
    assert [t["trial"] for t in trials] == [0, 1, 2] and trials[:2] == first  # the first two kept, not re-run
    rates = [t["settings"]["train.learning_rate"] for t in trials]
    assert len(set(rates)) == 3  # the resumed sampler does not replay the first trials' draws
    assert (out / "trials" / "0" / "config.yaml").stat().st_mtime_ns == stamp
    assert len(optuna.load_study(study_name="obliviate-search", storage=f"sqlite:///{out / 'search.db'}").trials) == 3


def test_a_forced_pruner_stops_trials_on_the_intermediate_score(kit, tiny_model_dir, tmp_path):
    out = tmp_path / "search"
    _run(kit, tiny_model_dir, out, _search(kit), pruner=optuna.pruners.ThresholdPruner(lower=1e9))
    trials = _trials(out)
    assert [t["state"] for t in trials] == ["pruned", "pruned"]
    for t in trials:  # stopped after the first objective metric: the second never ran
        assert list(t["intermediate"]) == ["1"] and "hp_cloze_tune" not in t["tune_metrics"]
    assert not (out / "best.yaml").exists()


def test_infeasible_trials_are_not_chosen(kit, tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "search"
    result = _run(kit, tiny_model_dir, out, _search(kit, max_retain_change=0.0, params=["train.learning_rate"],
                                                    trials=2))
    trials = _trials(out)
    assert all(t["state"] == "complete" and t["feasible"] is False for t in trials)
    assert all(t["constraints"]["farm_probability_tune"] > 0 for t in trials)
    assert result["best"] is None and not (out / "best.yaml").exists()


def test_whp_search_shares_the_reinforced_model(tmp_path, tiny_model_dir, monkeypatch):
    monkeypatch.setenv("OBLIVIATE_CACHE", str(tmp_path / "cache"))
    harry_potter = TINY_TEXT.split("\n")[0]
    (tmp_path / "target.txt").write_text((harry_potter + "\n") * 3)
    (tmp_path / "anchors.yaml").write_text("Harry: Jon\nHogwarts: the academy\n")
    _prompts(tmp_path / "hp.jsonl", HP_PROMPTS)
    metrics = [{"name": f"hp_probability_{h}", "type": "token_probability", "group": "forget", "prompts": "hp.jsonl",
                "half": h} for h in ("tune", "heldout")]
    (tmp_path / "suite.yaml").write_text(yaml.safe_dump({"name": "tiny", "metrics": metrics}))
    search = SearchConfig(method="whp", trials=2, params=["labels.alpha", "labels.soft"],
                          suite=str(tmp_path / "suite.yaml"), data_dir=str(tmp_path), pruner="none")
    options = {"model": str(tiny_model_dir), "anchors": str(tmp_path / "anchors.yaml"),
               "target": {"sources": [str(tmp_path / "target.txt")], "context_length": 16}}
    out = tmp_path / "search"
    run_search(search, out, options=options,
               overrides=["reinforce.train.max_steps=1", "finetune.max_steps=1", "finetune.batch_size=2"])
    trials = _trials(out)
    assert [t["state"] for t in trials] == ["complete", "complete"]
    assert (out / "trials" / "0" / "reinforced").is_dir() and not (out / "trials" / "1" / "reinforced").exists()
    kind, config, _ = load_config(out / "best.yaml")
    best = max(trials, key=lambda t: t["objective"])
    assert kind == "whp" and config.labels.alpha == pytest.approx(best["settings"]["labels.alpha"])


# ---- bad input: one line, exit 2, before any work ----

@pytest.mark.parametrize("extra, message", [
    (["--method", "erase"], "unknown method 'erase' for search"),
    (["--method", "npo", "--params", "method.layer"], "'method.layer' is not in the search space of npo"),
    (["--method", "gradient_ascent", "--perplexity-metric", "nope"], "--perplexity-metric names 'nope', not a metric"),
    (["--method", "gradient_ascent", "--objective", "hp_cloze_heldout"], "which is not in the tune half"),
    (["--method", "gradient_ascent", "--trials", "0"], "search trials must be an integer >= 1"),
    (["--method", "gradient_ascent", "--set", "train.learning_rate=1e-3"], "--set train.learning_rate is searched"),
    (["--method", "gradient_ascent", "--range", "train.learning_rate=1e-4"], "write SETTING=LOW:HIGH"),
    (["--method", "gradient_ascent", "--range", "train.learning_rate=1e-3:1e-5"], "LOW must be at most HIGH"),
    (["--method", "gradient_ascent", "--range", "train.learning_rate=0:1e-5"], "LOW must be above 0"),
    (["--method", "gradient_ascent", "--range", "train.learning_rate=a:b"], "give LOW:HIGH as two numbers"),
    (["--method", "gradient_ascent", "--range", "train.epochs=1:2.5"], "give whole numbers"),
    (["--method", "gradient_ascent", "--range", "lora.enabled=0:1"], "a true/false setting has no range"),
    (["--method", "gradient_ascent", "--params", "train.epochs", "--range", "train.learning_rate=1e-5:1e-4"],
     "--range train.learning_rate: not a searched setting"),
])
def test_bad_search_inputs(kit, tiny_model_dir, tmp_path, capsys, extra, message):
    out = tmp_path / "never"
    code = main(["search", "--out", str(out), "--model", str(tiny_model_dir), "--suite", str(kit / "suite.yaml"),
                 "--data-dir", str(kit), *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert not out.exists()


def test_search_config_is_checked_without_a_suite():
    from obliviate.search import check_search

    with pytest.raises(ConfigError, match="pruner must be one of"):
        check_search(SearchConfig(pruner="hyperband"))


def test_cli_search_final_and_report(kit, tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "search"
    code = main(["search", "--method", "gradient_ascent", "--out", str(out), "--model", str(tiny_model_dir),
                 "--suite", str(kit / "suite.yaml"), "--data-dir", str(kit), "--trials", "2",
                 "--params", "train.learning_rate,lora.enabled", "--max-perplexity-rise", "1000",
                 "--max-retain-change", "1000", "--set", f"forget.sources=[{kit / 'forget.txt'}]",
                 "--set", "forget.context_length=16", "--set", "train.max_steps=1", "--final"])
    printed = capsys.readouterr().out
    assert code == 0 and "<- best" in printed and "best tune" in printed and "hp_probability" in printed
    assert (out / "best.yaml").is_file() and (out / "final.json").is_file()
    assert main(["report", str(out)]) == 0
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "<h2>Settings search</h2>" in page
    assert 'alt="objective of every trial"' in page and 'alt="objective against train.learning_rate"' in page
    assert 'alt="objective against lora.enabled"' in page and "2 trials: 2 feasible" in page


def test_a_diverged_trial_fails_and_the_search_goes_on(kit, tiny_model_dir, tmp_path, monkeypatch):
    from obliviate.errors import TrainingError
    from obliviate.unlearn import UnlearnRun

    real, calls = UnlearnRun.run, []

    def first_diverges(self, *args, **kwargs):
        calls.append(self)
        if len(calls) == 1:
            raise TrainingError("non-finite loss at step 1")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(UnlearnRun, "run", first_diverges)
    out = tmp_path / "search"
    result = _run(kit, tiny_model_dir, out, _search(kit, trials=2))
    trials = _trials(out)
    assert [t["state"] for t in trials] == ["fail", "complete"] and "non-finite" in trials[0]["error"]
    assert result["best"] == 1
    _run(kit, tiny_model_dir, out, _search(kit, trials=2))  # the failed trial counts: nothing left to run
    assert len(_trials(out)) == 2


def test_a_resumed_search_must_ask_the_same_question(kit, tiny_model_dir, tmp_path):
    out = tmp_path / "search"
    _run(kit, tiny_model_dir, out, _search(kit, trials=1))
    with pytest.raises(ConfigError, match="holds a search with other settings"):
        _run(kit, tiny_model_dir, out, _search(kit, trials=2, max_perplexity_rise=3.0))
    with pytest.raises(ConfigError, match="describes a 'gradient_ascent' run, not 'npo'"):
        run_search(_search(kit, method="npo", params=["method.beta"]), tmp_path / "other",
                   config_file=out / "best.yaml")
