"""Attacks against controls (`obliviate attack`): the gap-share maths, quantization round trips,
latent-knowledge probes, and the command end to end on a tiny unlearn run (with resume)."""

from __future__ import annotations

import json
import os

import pytest
import torch
import yaml

from conftest import TINY_TEXT
from obliviate.attacks.gap import surviving_gap
from obliviate.cli import main

os.environ["OBLIVIATE_PROGRESS"] = "0"


# ---------------------------------------------------------------------------------- gap share
@pytest.mark.parametrize("values, expected", [
    # (m(base+A), m(unlearned+A), m(base), m(unlearned)) -> share of the gap that survives
    ((0.276, 0.221, 0.145, 0.074), (0.276 - 0.221) / (0.145 - 0.074)),  # issue 14, cloze after 20 steps
    ((0.5, 0.1, 0.5, 0.1), 1.0),  # the attack left the whole gap
    ((0.3, 0.3, 0.5, 0.1), 0.0),  # the attack closed it
    ((0.2, 0.4, 0.5, 0.1), -0.5),  # the unlearned model overtook the attacked base
    ((10.0, 30.0, 12.0, 20.0), 2.5),  # lower-is-better metrics (perplexity): the sign cancels
])
def test_surviving_gap_hand_computed(values, expected):
    assert surviving_gap(*values) == pytest.approx(expected)


@pytest.mark.parametrize("values", [(0.3, 0.2, 0.4, 0.4), (0.3, None, 0.5, 0.1), (0.3, float("nan"), 0.5, 0.1)])
def test_surviving_gap_undefined_is_none(values):
    assert surviving_gap(*values) is None


def test_gap_table_levels_and_shares():
    from obliviate.attacks.gap import gap_table

    def record(attack, variant, model, value):
        return {"attack": attack, "variant": variant, "metric": "cloze", "family": "qa", "model": model,
                "value": value}

    records = [record("none", "none", "base", 0.145), record("none", "none", "unlearned", 0.074),
               record("none", "none", "gold", 0.10),
               record("quantize", "gguf_q4_0", "base", 0.14), record("quantize", "gguf_q4_0", "unlearned", 0.12),
               record("quantize", "gguf_q4_0", "gold", 0.10)]
    row = next(r for r in gap_table(records) if r["attack"] == "quantize")
    assert row["levels"] == {"base": 0.14, "unlearned": 0.12, "gold": 0.10}
    assert row["share_vs_base"] == pytest.approx(0.02 / 0.071)
    assert row["share_vs_gold"] == pytest.approx(-0.02 / 0.026)


# ---------------------------------------------------------------------------------- quantization
# ggml's block quantizers: Q8_0 has d = amax / 127 and |q| <= 127, Q4_0 has d = amax / 8 and q in [-8, 7];
# rounding to the nearest level costs d / 2 (Q4_0: up to d, where +amax clamps to 7), and d is stored in
# fp16 (relative error 2^-11), which moves a level |q| * d * 2^-11 further.
BOUNDS = [("Q8_0", lambda amax: amax / 127 * (0.5 + 127 / 2048)), ("Q4_0", lambda amax: amax / 8 * (1 + 8 / 2048))]


@pytest.mark.parametrize("qtype, bound", BOUNDS, ids=[b[0] for b in BOUNDS])
def test_gguf_round_trip_error_within_block_bounds(qtype, bound):
    from obliviate.attacks.quantize import gguf_round_trip

    torch.manual_seed(0)
    weight = torch.randn(8, 128)
    back = gguf_round_trip(weight, qtype)
    assert back.shape == weight.shape and not torch.equal(back, weight)
    blocks, errors = weight.reshape(-1, 32), (back - weight).reshape(-1, 32).abs()
    amax = blocks.abs().amax(dim=1, keepdim=True)  # one scale per block of 32
    assert (errors <= bound(amax) + 1e-6).all()
    assert errors.mean() > 0


@pytest.mark.parametrize("scheme", ["gguf_q8_0", "gguf_q4_0", "rtn8", "rtn4"])
def test_quantized_copy_differs_and_leaves_original(tiny_model, scheme):
    from obliviate.attacks.quantize import quantized_copy

    before = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    rounded, count = quantized_copy(tiny_model, scheme)
    assert count > 0
    assert all(torch.equal(v, before[k]) for k, v in tiny_model.state_dict().items())  # the original is untouched
    changed = [k for k, v in rounded.state_dict().items() if not torch.equal(v, before[k])]
    assert changed and all("norm" not in k for k in changed)  # matrices rounded, norms kept


def test_rtn_is_per_channel():
    from obliviate.attacks.quantize import round_to_nearest

    weight = torch.tensor([[1.0, 0.3, -1.0], [100.0, 40.0, 20.0]])
    assert torch.allclose(round_to_nearest(weight, 8), weight, atol=100 / 127 / 2 + 1e-6)
    four_bit = round_to_nearest(weight, 4)  # 7 levels each side: scale 1/7 on row 0, 100/7 on row 1
    assert torch.allclose(four_bit[0], torch.tensor([1.0, 2 / 7, -1.0]))  # 0.3 * 7 = 2.1 -> 2
    assert torch.allclose(four_bit[1], torch.tensor([100.0, 300 / 7, 100 / 7]))  # 2.8 -> 3, 1.4 -> 1


# ---------------------------------------------------------------------------------- probes
def _toy(n: int, separable: bool, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    x = torch.randn(n, 16, generator=generator)
    if separable:
        x[:, 3] += 4.0 * (2 * y - 1)
    return x, y


def test_probe_above_chance_on_separable_toy_set():
    from obliviate.attacks.probes import probe_accuracy

    x, y = _toy(200, separable=True)
    assert probe_accuracy(x[:100], y[:100], x[100:], y[100:]) > 0.95


def test_probe_at_chance_on_shuffled_labels():
    from obliviate.attacks.probes import probe_accuracy

    x, y = _toy(400, separable=True)
    shuffled = y[torch.randperm(len(y), generator=torch.Generator().manual_seed(1))]
    accuracy = probe_accuracy(x[:200], shuffled[:200], x[200:], shuffled[200:])
    assert 0.35 < accuracy < 0.65


def test_layer_probes_on_the_tiny_model(tiny_model, tiny_tokenizer):
    from obliviate.attacks.probes import ProbeItem, layer_probe_accuracies

    items = [ProbeItem(f"Question: who is friend {i}?\nAnswer:", "Ron Weasley", "the farmer") for i in range(8)]
    accuracies = layer_probe_accuracies(tiny_model, tiny_tokenizer, items)
    assert len(accuracies) == tiny_model.config.num_hidden_layers + 1
    assert all(0 <= a <= 1 for a in accuracies)
    assert max(accuracies) == 1.0  # the two answers end in different tokens: trivially separable


def test_last_token_hidden_states_ignore_padding(tiny_model, tiny_tokenizer):
    from obliviate.scoring import last_token_hidden_states

    texts = ["Harry raised his wand.", "Ron"]
    together = last_token_hidden_states(tiny_model, tiny_tokenizer, texts, batch_size=2)
    alone = torch.cat([last_token_hidden_states(tiny_model, tiny_tokenizer, [t], batch_size=1) for t in texts], dim=1)
    assert together.shape == (tiny_model.config.num_hidden_layers + 1, 2, tiny_model.config.hidden_size)
    assert torch.allclose(together, alone, atol=1e-4)


# ---------------------------------------------------------------------------------- relearning checkpoints
def test_constant_schedule_checkpoint_is_the_shorter_run(tiny_model, tiny_tokenizer):
    """Step 2 of a 3-step relearning run is the model of a 2-step run: one run serves every step count."""
    import copy

    from obliviate.evaluation.relearning import relearn

    texts = [TINY_TEXT]
    short, long = copy.deepcopy(tiny_model), copy.deepcopy(tiny_model)
    relearn(short, tiny_tokenizer, texts, steps=2, learning_rate=1e-3, context_length=16, schedule="constant")
    seen = {}
    relearn(long, tiny_tokenizer, texts, steps=3, learning_rate=1e-3, context_length=16, schedule="constant",
            on_step=lambda step: seen.setdefault(step, {k: v.clone() for k, v in long.state_dict().items()}))
    assert sorted(seen) == [1, 2, 3]
    assert all(torch.allclose(seen[2][k], v, atol=1e-6) for k, v in short.state_dict().items())
    assert not all(torch.equal(seen[3][k], v) for k, v in short.state_dict().items())


def test_every_attack_has_a_runner():
    from obliviate.attacks.plan import ATTACKS
    from obliviate.attacks.run import UNIT_RUNNERS

    assert set(UNIT_RUNNERS) == {"none", *ATTACKS}


# ---------------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def attack_kit(tmp_path_factory, tiny_model_dir):
    """A tiny unlearn run folder (2 steps of gradient ascent), a data folder and a tiny suite."""
    folder = tmp_path_factory.mktemp("attack_kit")
    harry_potter, farmer = TINY_TEXT.split("\n")[:2]
    data = folder / "data"
    data.mkdir()
    (data / "forget.txt").write_text((harry_potter + "\n") * 3)
    (data / "general.txt").write_text((farmer + "\n") * 3)
    (data / "probe.jsonl").write_text(
        json.dumps({"prompt": "Harry Potter went to", "references": ["Hogwarts"]}) + "\n"
        + json.dumps({"prompt": "Ron Weasley laughed at", "references": ["Harry"]}) + "\n")
    questions = [("Where did Harry go?", "Hogwarts", "the market"), ("Who laughed at Harry?", "Ron", "the farmer"),
                 ("Who read a book?", "Hermione", "the river"), ("Who spoke to Harry?", "Dumbledore", "the dog"),
                 ("What flew over Hogwarts?", "Hedwig", "the train"), ("What hurt?", "his scar", "the wind"),
                 ("What is played on broomsticks?", "Quidditch", "bread"), ("Who was near?", "Voldemort", "milk")]
    (data / "other_languages.jsonl").write_text(
        json.dumps({"prompt": "Harry Potter ging nach", "references": ["Hogwarts"]}) + "\n")
    (data / "trivia.jsonl").write_text("".join(
        json.dumps({"question": q, "true_answer": t, "false_answer": f}) + "\n" for q, t, f in questions))
    suite = {"name": "tiny_attack", "metrics": [
        {"name": "reference_probability", "type": "token_probability", "group": "forget", "prompts": "probe.jsonl"},
        {"name": "trivia", "type": "qa", "group": "forget", "data": "trivia.jsonl"},
        {"name": "forget_perplexity", "type": "perplexity", "group": "forget",  # not re-run: not named below
         "texts": {"files": ["forget.txt"], "chunk_chars": 200}},
        {"name": "general_perplexity", "type": "perplexity", "group": "utility",
         "texts": {"files": ["general.txt"], "chunk_chars": 200}},
        {"name": "other_languages", "type": "token_probability", "group": "robustness",
         "prompts": "other_languages.jsonl"},
        {"name": "relearning", "type": "relearning", "group": "robustness", "texts": {"files": ["forget.txt"]},
         "steps": 2, "context_length": 16, "metrics": ["reference_probability", "trivia"]},
    ]}
    (folder / "suite.yaml").write_text(yaml.safe_dump(suite, sort_keys=False))
    run = folder / "run"
    assert main(["unlearn", "--model", str(tiny_model_dir), "--method", "gradient_ascent",
                 "--forget", str(data / "forget.txt"), "--out", str(run), "--context-length", "16",
                 "--set", "train.max_steps=2", "--set", "train.batch_size=4",
                 "--set", "train.learning_rate=1e-3"]) == 0
    return {"folder": folder, "data": data, "suite": folder / "suite.yaml", "run": run}


def _attack_argv(kit, *extra):
    return ["attack", str(kit["run"]), "--suite", str(kit["suite"]), "--data-dir", str(kit["data"]),
            "--steps", "1,2", "--learning-rates", "1e-3", "--context-length", "16", "--quant", "gguf_q4_0",
            "--attacks", "relearn,quantize,probes,prompts", *extra]


def test_attack_end_to_end_then_resume(attack_kit, capsys):
    run = attack_kit["run"]
    assert main(_attack_argv(attack_kit)) == 0
    out = capsys.readouterr()
    attacks = json.loads((run / "attacks" / "attacks.json").read_text())
    assert attacks["obliviate_attacks"] == 1 and set(attacks["models"]) == {"unlearned", "base"}
    assert attacks["settings"]["steps"] == [1, 2] and attacks["settings"]["metrics"] == ["reference_probability",
                                                                                         "trivia"]
    records = attacks["records"]
    relearned = {(r["text"], r["step"], r["model"], r["metric"]) for r in records if r["attack"] == "relearn"}
    assert relearned == {(text, step, model, metric) for text in ("forget", "unrelated") for step in (1, 2)
                         for model in ("unlearned", "base") for metric in ("reference_probability", "trivia")}
    assert all(r["value"] is not None for r in records)
    quantized = [r for r in records if r["attack"] == "quantize"]
    assert {r["variant"] for r in quantized} == {"gguf_q4_0"} and len(quantized) == 4
    probes = [r for r in records if r["attack"] == "probes"]
    assert {r["model"] for r in probes} == {"unlearned", "base"} and len(probes) == 2 * 5  # 4 layers + embeddings
    # levels and shares: the share is the formula on the records' own values
    none = {(r["model"], r["metric"]): r["value"] for r in records if r["attack"] == "none"}
    row = next(r for r in attacks["gap"] if r["attack"] == "quantize" and r["metric"] == "reference_probability")
    assert row["share_vs_base"] == surviving_gap(row["levels"]["base"], row["levels"]["unlearned"],
                                                 none[("base", "reference_probability")],
                                                 none[("unlearned", "reference_probability")])
    assert "share_vs_gold" not in row
    # the prompt attack: other-language prompts, against the plain prompts of the same family
    prompts = next(r for r in attacks["gap"] if r["attack"] == "prompts")
    assert prompts["metric"] == "other_languages" and prompts["measured_against"] == "reference_probability"
    assert prompts["share_vs_base"] == surviving_gap(prompts["levels"]["base"], prompts["levels"]["unlearned"],
                                                     none[("base", "reference_probability")],
                                                     none[("unlearned", "reference_probability")])
    # manifest and report
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["attacks"]["settings"]["quantizations"] == ["gguf_q4_0"]
    report = (run / "report.html").read_text()
    assert "Attacks against controls" in report and "relearning curves of trivia on forget text" in report
    assert "probe accuracy per layer" in report
    assert "gguf_q4_0" in out.out and "share vs base" in out.out

    # resume: every finished (attack, model) record is reused, nothing recomputed
    unit_files = sorted((run / "attacks" / "records").glob("*.json"))
    stamps = {p: p.stat().st_mtime_ns for p in unit_files}
    assert main(_attack_argv(attack_kit)) == 0
    err = capsys.readouterr().err
    assert err.count("finished record reused") == len(unit_files) and "..." not in err
    assert all(p.stat().st_mtime_ns == stamps[p] for p in unit_files)
    # a changed setting reruns only the units it touches
    assert main(_attack_argv(attack_kit, "--steps", "1,3")) == 0
    err = capsys.readouterr().err
    assert "[relearn:forget:0.001 / base] ..." in err and "[quantize:gguf_q4_0 / base] finished record reused" in err


def test_attack_with_gold_and_model_path(attack_kit, tiny_model_dir, tmp_path):
    out = tmp_path / "attacks"
    assert main(["attack", str(attack_kit["run"] / "model"), "--base", str(tiny_model_dir), "--gold",
                 str(tiny_model_dir), "--suite", str(attack_kit["suite"]), "--data-dir", str(attack_kit["data"]),
                 "--only", "trivia", "--attacks", "quantize", "--quant", "rtn4", "--out", str(out)]) == 0
    attacks = json.loads((out / "attacks.json").read_text())
    assert set(attacks["models"]) == {"unlearned", "base", "gold"}
    row = next(r for r in attacks["gap"] if r["attack"] == "quantize")
    assert row["levels"]["gold"] == row["levels"]["base"]  # the gold here is the base itself
    assert "share_vs_gold" in row


def test_attack_tofu_against_attacked_gold(tiny_model_dir, tmp_path):
    """TOFU: relearning on the forget QA pairs, and forget quality against the gold under the same attack."""
    from test_tofu_metrics import write_tiny_tofu

    data = tmp_path / "data"
    write_tiny_tofu(data / "tofu")
    (data / "general.txt").write_text((TINY_TEXT.split("\n")[1] + "\n") * 3)
    (tmp_path / "tofu.yaml").write_text(yaml.safe_dump({"name": "tiny_tofu", "metrics": [
        {"name": "tofu", "type": "tofu", "max_new_tokens": 4}]}))
    out = tmp_path / "attacks"
    assert main(["attack", str(tiny_model_dir), "--base", str(tiny_model_dir), "--gold", str(tiny_model_dir),
                 "--suite", str(tmp_path / "tofu.yaml"), "--data-dir", str(data), "--attacks", "relearn,quantize,prompts",
                 "--steps", "1", "--learning-rates", "1e-3", "--context-length", "16", "--quant", "rtn8",
                 "--forget-text", str(data / "tofu" / "forget01.json"),
                 "--text-field", "Question: {prompt}\nAnswer: {response}",
                 "--unrelated-text", str(data / "general.txt"), "--out", str(out)]) == 0
    attacks = json.loads((out / "attacks.json").read_text())
    assert attacks["settings"]["relearning_texts"]["forget"]["texts"] == 2  # the two forget pairs
    rows = {(r["attack"], r["variant"], r["metric"]): r for r in attacks["gap"]}
    tofu = [("none", "none"), ("relearn", "forget lr=0.001 step=1"), ("relearn", "unrelated lr=0.001 step=1"),
            ("quantize", "rtn8")]
    paraphrase = [("none", "none", "tofu_forget_answer_prob"),
                  ("prompts", "paraphrased questions", "tofu_forget_answer_prob")]
    assert set(rows) == {(*key, "tofu") for key in tofu} | set(paraphrase)
    paraphrased = rows[paraphrase[1]]
    assert paraphrased["measured_against"] == "tofu_forget_answer_prob"
    assert 0 < paraphrased["levels"]["unlearned"] < 1 and paraphrased["share_vs_base"] is None
    for key in tofu:  # the same weights as unlearned, base and gold: the KS test sees one sample twice
        row = rows[(*key, "tofu")]
        assert row["forget_quality_vs_attacked_gold"] == pytest.approx(1.0)
        assert row["share_vs_base"] is None and row["share_vs_gold"] is None  # no gap: undefined, not a crash


BAD = [
    ("unknown attack", lambda k: ["--attacks", "jailbreak"], "unknown attack 'jailbreak'"),
    ("unknown quantization", lambda k: ["--quant", "q2_k"], "unknown quantization 'q2_k'"),
    ("bad steps", lambda k: ["--steps", "five"], "--steps takes comma-separated numbers"),
    ("unknown metric", lambda k: ["--only", "nope"], "--only names 'nope'"),
    ("missing gold", lambda k: ["--gold", str(k["folder"] / "no_gold")], "gold model: model"),
    ("zero batch", lambda k: ["--batch-size", "0"], "--batch-size must be >= 1"),
    ("missing probe data", lambda k: ["--attacks", "probes", "--probe-data", str(k["folder"] / "none.jsonl")],
     "--probe-data"),
]


@pytest.mark.parametrize("case, extra, words", BAD, ids=[c[0] for c in BAD])
def test_bad_inputs_one_line_before_any_work(attack_kit, capsys, case, extra, words):
    argv = ["attack", str(attack_kit["run"]), "--suite", str(attack_kit["suite"]), "--data-dir",
            str(attack_kit["data"]), "--out", str(attack_kit["folder"] / f"bad-{case}"), *extra(attack_kit)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], err
    assert "Traceback" not in err and not (attack_kit["folder"] / f"bad-{case}").exists()


def test_run_folder_without_model_and_model_without_base(attack_kit, tmp_path, tiny_model_dir, capsys):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.yaml").write_text(f"model: {tiny_model_dir}\n")
    assert main(["attack", str(broken), "--suite", str(attack_kit["suite"])]) == 2
    assert "has no model/" in capsys.readouterr().err
    assert main(["attack", str(tiny_model_dir), "--suite", str(attack_kit["suite"]), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no base model") and "--base" in err and not (tmp_path / "o").exists()
