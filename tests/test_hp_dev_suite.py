"""The Harry Potter dev evaluation: the tune / held-out split, its shipped prompt files, the suite,
and the cloze and name-mass maths on the tiny model."""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from obliviate.errors import ConfigError, DataError
from obliviate.evaluation.cloze import ClozeSpec, cloze_scores, cloze_target_ids, compute_cloze
from obliviate.evaluation.data import resolve_data_path
from obliviate.evaluation.halves import HALVES, dev_half, half_metrics, item_half, select_half
from obliviate.evaluation.prompts import PromptItem, load_prompt_file
from obliviate.evaluation.result import MetricContext
from obliviate.evaluation.suite import load_suite, make_suite
from obliviate.evaluation.token_probability import TokenProbabilitySpec, compute_token_probability

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
DEV_FILES = ["hp_dev_cloze", "hp_dev_probability", "hp_dev_completion", "hp_dev_neighbour_cloze",
             "hp_dev_control_cloze", "fantasy_neighbours_familiarity", "fantasy_neighbours_probe", "dev20"]


def _shipped(name: str) -> list[PromptItem]:
    if name == "dev20":
        if not (SHARED / "targets" / "harry_potter").is_dir():
            pytest.skip("shared data folder not here")
        return load_prompt_file(SHARED / "targets" / "harry_potter" / "familiarity_prompts_dev20.jsonl")
    return load_prompt_file(resolve_data_path(f"obliviate:suites/data/{name}.jsonl", Path(".")))


def test_split_rule_is_the_documented_hash():
    for text in ("Harry Potter's pet owl is named", "The capital of France is", ""):
        import hashlib

        expected = "tune" if hashlib.sha256(f"obliviate-hp-dev-60:{text}".encode()).digest()[0] % 2 == 0 else "heldout"
        assert dev_half(text) == expected == dev_half(text)
    # split_key (the trivia question) wins over the prompt
    item = PromptItem("Question: Who?\nAnswer:", ["Hedwig"], meta={"split_key": "Who?"})
    assert item_half(item) == dev_half("Who?")


@pytest.mark.parametrize("name", DEV_FILES)
def test_shipped_halves_are_disjoint_complete_and_balanced(name):
    items = _shipped(name)
    tune, heldout = select_half(items, "tune"), select_half(items, "heldout")
    keys = lambda xs: {x.meta.get("split_key") or x.prompt for x in xs}  # noqa: E731
    assert not keys(tune) & keys(heldout)
    assert len(tune) + len(heldout) == len(items)
    assert abs(len(tune) - len(heldout)) <= max(2, 0.1 * len(items)), (len(tune), len(heldout))


def test_shipped_cloze_prompts_are_well_formed():
    for name in ("hp_dev_cloze", "hp_dev_neighbour_cloze", "hp_dev_control_cloze"):
        items = _shipped(name)
        assert len({i.prompt for i in items}) == len(items), f"{name}: duplicate prompts"
        for item in items:
            assert not item.prompt.endswith(" ") and item.references[0].strip() == item.references[0]
    assert all("answer_in_training_text" in i.meta and i.meta["source"] in ("hand", "trivia")
               for i in _shipped("hp_dev_cloze"))


def test_select_half_refuses_an_empty_half():
    items = [PromptItem(p, ["x"]) for p in ("a", "b", "c", "d", "e", "f") if dev_half(p) == "tune"]
    assert select_half(items, None) == items
    with pytest.raises(DataError, match="no prompt falls in the 'heldout' half"):
        select_half(items, "heldout")


@pytest.mark.skipif(not (SHARED / "targets" / "harry_potter").is_dir(), reason="shared data folder not here")
def test_suite_reports_every_split_metric_on_both_halves():
    suite = load_suite("harry_potter", data_dir=SHARED)
    tune, heldout = half_metrics(suite, "tune"), half_metrics(suite, "heldout")
    assert [n.removesuffix("_tune") for n in tune] == [n.removesuffix("_heldout") for n in heldout]
    assert {"fact_cloze_tune", "name_mass_tune", "completion_familiarity_tune", "control_cloze_tune",
            "neighbour_cloze_tune", "general_perplexity_tune"} <= set(tune)
    specs = {s.name: asdict(s) for s in suite.metrics}
    for t, h in zip(tune, heldout):  # twins differ only in their name and half (or text span)
        a, b = dict(specs[t]), dict(specs[h])
        for d in (a, b):
            d.pop("name"), d.pop("half", None), d.get("texts", {}).pop("span", None)
        assert a == b, (t, h)
    relearning = next(s for s in suite.metrics if s.type == "relearning")
    assert not set(relearning.metrics) & set(tune)


def test_bad_half_and_score_are_refused():
    with pytest.raises(ConfigError, match="'c.half' must be tune, heldout or null"):
        make_suite("s", [ClozeSpec(name="c", prompts="obliviate:suites/data/hp_dev_cloze.jsonl", half="train")])
    with pytest.raises(ConfigError, match="'p.anchors' must be a dictionary when score is anchored_mass"):
        make_suite("s", [TokenProbabilitySpec(name="p", prompts="obliviate:suites/data/hp_dev_probability.jsonl",
                                              score="anchored_mass")])


def test_cloze_scores_on_hand_numbers():
    probs = torch.tensor([[0.5, 0.3, 0.2], [0.1, 0.6, 0.3], [0.2, 0.2, 0.6]])  # (N=3, V=3)
    scores = cloze_scores(probs, [0, 2, 2])
    assert scores["probability"] == pytest.approx([0.5, 0.3, 0.6])
    assert scores["greedy"] == [True, False, True]
    assert scores["mean"] == pytest.approx(1.4 / 3)
    assert scores["greedy_share"] == pytest.approx(2 / 3)


def _prompt_file(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps({"prompt": p, "references": r}) + "\n" for p, r in rows))
    return path


PROMPTS = [("Harry Potter went to", ["Hogwarts"]), ("The farmer walked to the", ["market"]),
           ("Ron Weasley laughed at", ["Harry"]), ("The owl Hedwig flew over", ["Hogwarts"]),
           ("She bought bread and", ["milk"]), ("Professor Dumbledore spoke to", ["Harry"])]


def test_cloze_metric_on_the_tiny_model(tiny_model, tiny_tokenizer, tmp_path):
    from obliviate.scoring import next_token_distribution

    _prompt_file(tmp_path / "c.jsonl", PROMPTS)
    ctx = MetricContext(data_dir=tmp_path)
    for half in HALVES:
        result = compute_cloze(tiny_model, tiny_tokenizer, ClozeSpec(name="c", prompts="c.jsonl", half=half), ctx)
        items = [PromptItem(p, r) for p, r in PROMPTS if dev_half(p) == half]
        probs = next_token_distribution(tiny_model, tiny_tokenizer, [i.prompt for i in items])
        ids = cloze_target_ids(tiny_tokenizer, items)
        expected = [probs[k, ids[k]].item() for k in range(len(items))]
        assert result.n == len(items) and [row["half"] for row in result.per_item] == [half] * len(items)
        assert result.value == pytest.approx(sum(expected) / len(expected))
        assert result.details["greedy_share"] == pytest.approx(
            sum(probs[k].argmax().item() == ids[k] for k in range(len(items))) / len(items))
        assert result.higher_is_better is False
    # the first token of " Hogwarts" is what is scored
    assert tiny_tokenizer.decode(cloze_target_ids(tiny_tokenizer, [PromptItem("went to", ["Hogwarts"])])) \
        == tiny_tokenizer.decode(tiny_tokenizer(" Hogwarts", add_special_tokens=False)["input_ids"][:1])


def test_name_mass_is_the_next_token_mass_on_the_names_first_tokens(tiny_model, tiny_tokenizer, tmp_path):
    from obliviate.scoring import next_token_distribution

    _prompt_file(tmp_path / "p.jsonl", PROMPTS)
    (tmp_path / "names.json").write_text(json.dumps({"Hogwarts": ["the Academy"], "Harry": ["Jon"]}))
    spec = TokenProbabilitySpec(name="m", prompts="p.jsonl", anchors="names.json", score="anchored_mass")
    result = compute_token_probability(tiny_model, tiny_tokenizer, spec, MetricContext(data_dir=tmp_path))
    ids = sorted({tiny_tokenizer(t, add_special_tokens=False)["input_ids"][0]
                  for name in ("Hogwarts", "Harry") for t in (name, " " + name)})
    probs = next_token_distribution(tiny_model, tiny_tokenizer, [p for p, _ in PROMPTS])
    masses = probs[:, ids].sum(-1).tolist()
    assert result.value == pytest.approx(sum(masses) / len(masses))
    assert [row["anchored_mass"] for row in result.per_item] == pytest.approx(masses)
    assert 0 < result.details["reference_probability"] <= 1 and math.isfinite(result.stderr)
