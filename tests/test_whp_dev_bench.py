"""benchmarks/whp_dev.py (models side by side on both dev halves): its table and options; the
benchmark itself scores real models."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("whp_dev", REPO / "benchmarks" / "whp_dev.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_table_shows_both_halves_and_the_change_against_the_first_model(bench):
    values = {"base": {"fact_cloze_tune": 0.2, "fact_cloze_heldout": 0.1},
              "strong": {"fact_cloze_tune": 0.02, "fact_cloze_heldout": 0.05}}
    table = bench.render(["base", "strong"], values, ["fact_cloze"])
    head, rule, row = table.strip().splitlines()
    assert head == "| measure | base tune | base held-out | strong tune | strong held-out |"
    assert row == "| fact_cloze | 0.2000 | 0.1000 | 0.0200 (-90%) | 0.0500 (-50%) |"


def test_models_are_name_spec_pairs(bench):
    assert bench.parse_models(["base=smollm2-135m", "x=runs/a=b/model"]) == [("base", "smollm2-135m"),
                                                                           ("x", "runs/a=b/model")]
    with pytest.raises(SystemExit, match="write NAME=SPEC"):
        bench.parse_models(["runs/model"])


def test_search_table_rows(tmp_path):
    spec = importlib.util.spec_from_file_location("search_table", REPO / "benchmarks" / "search_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    trials = [{"trial": 0, "state": "complete", "settings": {"labels.alpha": 6.4, "labels.soft": False},
               "objective": 0.25, "feasible": True, "tune_metrics": {"fact_cloze_tune": 0.05}, "seconds": 300.2},
              {"trial": 1, "state": "pruned", "settings": {"labels.alpha": 2.0, "labels.soft": True},
               "objective": None, "tune_metrics": {}}]
    table = module.render(trials, {"fact_cloze_tune": {"value": 0.1}}, ["fact_cloze_tune"])
    rows = table.strip().splitlines()
    assert rows[0] == "| trial | state | labels.alpha | labels.soft | objective | feasible | fact_cloze_tune | s |"
    assert rows[2] == "| 0 | complete | 6.4 | false | +0.250 | true | -50% | 300 |"
    assert rows[3] == "| 1 | pruned | 2 | true | - | - | - | - |"


def test_tune_only_table(bench):
    values = {"base": {"name_mass_tune": 0.1}, "v": {"name_mass_tune": 0.01}}
    head, _, row = bench.render(["base", "v"], values, ["name_mass"], ("tune",)).strip().splitlines()
    assert head == "| measure | base tune | v tune |" and row == "| name_mass | 0.1000 | 0.0100 (-90%) |"
