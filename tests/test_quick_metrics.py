"""Quick metrics: pure maths on hand-written inputs, model-backed ones against hand computations."""

from __future__ import annotations

import json
import math

import pytest
import torch

from obliviate.errors import DataError
from obliviate.evaluation.familiarity import FamiliaritySpec, compute_familiarity, familiarity_reference_words
from obliviate.evaluation.perplexity import first_tokens, perplexity, perplexity_from_logprobs
from obliviate.evaluation.prompts import PromptItem, load_prompt_file, reference_continuation
from obliviate.evaluation.result import MetricContext
from obliviate.evaluation.token_probability import reference_probability


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()


# --- familiarity_reference_words (pure) ------------------------------------------------------


def test_familiarity_matches_whole_words_case_insensitively():
    items = [
        PromptItem("p1", ["Ron", "Hermione"]),
        PromptItem("p2", ["Ron"]),
        PromptItem("p3", ["Ron"]),
        PromptItem("p4", ["invisibility cloak", "J.K."]),
        PromptItem("p5", ["Hogwarts"]),
    ]
    completions = [
        "and then HERMIONE said to ron's brother,",  # both, any case, possessive counts
        "Ronald went home.",  # "Ron" is not a whole word here
        "his friend Ron.",
        "she put on the Invisibility\n cloak, written by j.k. someone",
        "the hogwartsian castle",  # no whole-word match
    ]
    result = familiarity_reference_words(completions, items)
    assert [row["hits"] for row in result["per_item"]] == [
        ["Ron", "Hermione"],
        [],
        ["Ron"],
        ["invisibility cloak", "J.K."],
        [],
    ]
    assert [row["familiar"] for row in result["per_item"]] == [True, False, True, True, False]
    assert result["score"] == pytest.approx(3 / 5)
    assert result["n"] == 5
    assert result["per_item"][1] == {"prompt": "p2", "completion": "Ronald went home.", "hits": [], "familiar": False}


def test_familiarity_rejects_mismatched_or_empty_inputs():
    with pytest.raises(ValueError, match="2 completions for 1 items"):
        familiarity_reference_words(["a", "b"], [PromptItem("p", ["x"])])
    with pytest.raises(DataError, match="no prompt items"):
        familiarity_reference_words([], [])


# --- perplexity_from_logprobs (pure) ---------------------------------------------------------


def test_perplexity_from_hand_written_logprobs():
    result = perplexity_from_logprobs([[-1.0, -2.0], [-3.0], []])
    assert result["n_tokens"] == 3
    assert result["nll"] == pytest.approx(6.0)
    assert result["perplexity"] == pytest.approx(math.exp(2.0))
    assert perplexity_from_logprobs([[math.log(0.5)] * 4])["perplexity"] == pytest.approx(2.0)
    with pytest.raises(DataError, match="shorter than two tokens"):
        perplexity_from_logprobs([[], []])


def test_reference_continuation_adds_a_space_only_when_needed():
    assert reference_continuation("Ron and", "Hermione") == " Hermione"
    assert reference_continuation("Ron and ", "Hermione") == "Hermione"
    assert reference_continuation("Question:\n", "Hermione") == "Hermione"


# --- model-backed metrics --------------------------------------------------------------------


def hand_sequence_logprobs(model, ids):
    with torch.no_grad():
        logprobs = torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0], -1)
    return [logprobs[t - 1, ids[t]].item() for t in range(1, len(ids))]


def test_perplexity_equals_a_hand_computation(model, tiny_tokenizer):
    texts = ["Harry raised his wand.", "The train left the station at noon."]
    result = perplexity(model, tiny_tokenizer, texts, batch_size=2)
    logprobs = [lp for t in texts for lp in hand_sequence_logprobs(model, tiny_tokenizer(t)["input_ids"])]
    assert result["n_tokens"] == len(logprobs)
    assert result["perplexity"] == pytest.approx(math.exp(-sum(logprobs) / len(logprobs)), rel=1e-4)


def test_reference_probability_equals_a_hand_computation(model, tiny_tokenizer):
    items = [
        PromptItem("Harry Potter went to", ["Hogwarts", "x"]),
        PromptItem("The farmer walked to the ", ["market"]),
    ]
    result = reference_probability(model, tiny_tokenizer, items, batch_size=2)
    expected = []
    for prompt, continuation in [("Harry Potter went to", " Hogwarts"), ("The farmer walked to the ", "market")]:
        context = tiny_tokenizer(prompt)["input_ids"]
        ids = context + tiny_tokenizer(continuation, add_special_tokens=False)["input_ids"]
        expected.append(math.exp(sum(hand_sequence_logprobs(model, ids)[len(context) - 1 :])))
    assert [row["probability"] for row in result["per_item"]] == pytest.approx(expected, rel=1e-4)
    assert result["mean"] == pytest.approx(sum(expected) / 2, rel=1e-4)
    assert result["n"] == 2
    assert result["per_item"][0]["reference"] == "Hogwarts"
    # each answer token's probability given the prompt and the previous answer tokens; their product is the whole
    for row in result["per_item"]:
        assert "".join(t["token"] for t in row["tokens"]) == reference_continuation(row["prompt"], row["reference"])
        assert math.prod(t["probability"] for t in row["tokens"]) == pytest.approx(row["probability"], rel=1e-6)


def test_familiarity_scores_greedy_completions(model, tiny_tokenizer, tmp_path):
    (tmp_path / "fam.jsonl").write_text(json.dumps({"prompt": "Harry Potter went to", "references": ["Hogwarts", "Ron"]})
                                        + "\n" + json.dumps({"prompt": "The farmer", "references": ["dog"]}) + "\n")
    spec = FamiliaritySpec(name="familiarity", prompts="fam.jsonl", max_new_tokens=8)
    result = compute_familiarity(model, tiny_tokenizer, spec, MetricContext(data_dir=tmp_path))
    assert result.n == 2 and 0.0 <= result.value <= 1.0 and result.higher_is_better is False
    assert all(isinstance(row["completion"], str) for row in result.per_item)
    assert result.value == sum(row["familiar"] for row in result.per_item) / 2


def test_first_tokens_keeps_whole_texts_then_cuts_the_last(tiny_tokenizer):
    texts = ["The farmer walked to the market.", "The river ran past the old mill.", "Never reached."]
    n_first = len(tiny_tokenizer(texts[0], add_special_tokens=False)["input_ids"])
    kept = first_tokens(texts, tiny_tokenizer, n_first + 3)
    assert kept[0] == texts[0] and len(kept) == 2
    assert len(tiny_tokenizer(kept[1], add_special_tokens=False)["input_ids"]) == 3


# --- load_prompt_file ------------------------------------------------------------------------


def write_lines(tmp_path, lines):
    path = tmp_path / "prompts.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_load_prompt_file_reads_items_and_meta(tmp_path):
    lines = [
        json.dumps({"prompt": "Ron and", "references": ["Hermione"], "subtlety": 3}),
        "",
        json.dumps({"prompt": "Written by J.K.", "references": ["Rowling", "JK"]}),
    ]
    items = load_prompt_file(write_lines(tmp_path, lines))
    assert items == [
        PromptItem("Ron and", ["Hermione"], {"subtlety": 3}),
        PromptItem("Written by J.K.", ["Rowling", "JK"], {}),
    ]


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (['{"prompt": "a", "references": ["b"]}', "{not json"], "line 2: invalid JSON"),
        (['["a", "b"]'], "line 1: expected a JSON object"),
        (['{"references": ["b"]}'], '"prompt" is missing or empty'),
        (['{"prompt": "  ", "references": ["b"]}'], '"prompt" is missing or empty'),
        (['{"prompt": "a", "references": "b"}'], '"references" must be a non-empty list'),
        (['{"prompt": "a", "references": ["b", 3]}'], '"references" must be a non-empty list'),
        (['{"prompt": "a", "references": []}'], '"references" must be a non-empty list'),
        (["", "  "], "holds no prompts"),
    ],
)
def test_load_prompt_file_errors(tmp_path, lines, message):
    with pytest.raises(DataError, match=message):
        load_prompt_file(write_lines(tmp_path, lines))


def test_load_prompt_file_missing(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_prompt_file(tmp_path / "nope.jsonl")


# --- the end-of-run quick suite ----------------------------------------------------------------


def test_quick_suite_general_text_budget_on_wikitext_layout(tiny_tokenizer, tmp_path):
    from obliviate.evaluation.perplexity import scored_texts
    from obliviate.evaluation.summary import QuickEvalConfig, quick_suite

    # WikiText separates paragraphs with lines holding a single space.
    path = tmp_path / "wiki.raw"
    path.write_text(" = Title = \n \n " + "The farmer walked to the market . " * 50 + "\n \n Second paragraph here .\n")
    suite = quick_suite(QuickEvalConfig(general_text=[str(path)], general_max_tokens=40))
    (spec,) = suite.metrics
    assert (spec.name, spec.type, spec.group, spec.max_tokens) == ("general_perplexity", "perplexity", "utility", 40)
    texts = scored_texts(spec, tiny_tokenizer, suite.data_dir)
    assert texts[0] == "= Title ="
    total = sum(len(tiny_tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts)
    assert 30 <= total <= 42 and len(texts) == 2


def test_quick_suite_is_three_ordinary_metrics_and_checks_its_inputs(tmp_path):
    from obliviate.errors import ConfigError
    from obliviate.evaluation.summary import QuickEvalConfig, check_eval_inputs, quick_suite

    prompts = write_lines(tmp_path, [json.dumps({"prompt": "Harry went to", "references": ["Hogwarts"]})])
    (tmp_path / "general.txt").write_text("The river ran past the old mill.\n")
    config = QuickEvalConfig(probe_prompts=str(prompts), familiarity_prompts=str(prompts),
                             general_text=[str(tmp_path / "general.txt")], max_new_tokens=7, batch_size=6)
    suite = quick_suite(config)
    assert [(s.name, s.type) for s in suite.metrics] == [
        ("reference_probability", "token_probability"), ("familiarity", "familiarity"),
        ("general_perplexity", "perplexity")]
    assert suite.metrics[1].max_new_tokens == 7 and suite.metrics[1].decoding == "greedy"
    assert suite.metrics[0].batch_size == 6 and suite.metrics[2].batch_size == 3
    check_eval_inputs(config)
    assert quick_suite(QuickEvalConfig()) is None
    with pytest.raises(ConfigError, match="general_perplexity.max_tokens' must be >= 1 or null, not 0"):
        check_eval_inputs(QuickEvalConfig(general_text=[str(tmp_path / "general.txt")], general_max_tokens=0))
    (tmp_path / "bad.jsonl").write_text("not json\n")
    with pytest.raises(DataError, match="bad.jsonl, line 1"):
        check_eval_inputs(QuickEvalConfig(familiarity_prompts=str(tmp_path / "bad.jsonl")))
    with pytest.raises(DataError, match="missing.jsonl"):
        check_eval_inputs(QuickEvalConfig(probe_prompts=str(tmp_path / "missing.jsonl")))
