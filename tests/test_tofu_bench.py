"""`obliviate bench tofu` end to end on the tiny model, and the question/answer run it is built on."""

import json

import pytest

from obliviate.cli import main
from obliviate.config import from_dict
from obliviate.losses import IGNORE_INDEX

NAMES = ["Zorblax Quint", "Mirela Todd", "Osric Vane", "Pella Ruiz"]


def _pairs(author: int) -> list[dict]:
    name = NAMES[author]
    return [{"question": f"What is fact {i} about {name}?", "answer": f"{name} wrote book {i} in year {1900 + i}."}
            for i in range(20)]


def write_tiny_tofu(root) -> None:
    """A TOFU-shaped data folder: 4 authors of 20 pairs (the last is forget01), perturbed sets, holdout."""
    folder = root / "tofu"
    folder.mkdir(parents=True)
    full = [p for a in range(4) for p in _pairs(a)]
    # full and retain99: several JSON arrays, one per line, as in the shared copy
    (folder / "full.json").write_text(json.dumps(full[:40]) + "\n" + json.dumps(full[40:]) + "\n")
    (folder / "retain99.json").write_text(json.dumps(full[:60]) + "\n")
    (folder / "forget01.json").write_text(json.dumps([{"prompt": p["question"], "response": p["answer"]}
                                                      for p in full[60:]]))

    def perturbed(pairs):
        return [{**p, "paraphrased_answer": p["answer"].replace("wrote", "authored"),
                 "perturbed_answer": str([p["answer"].replace("book", n) for n in ("poem", "play", "essay")])}
                for p in pairs]

    (folder / "forget01_perturbed.json").write_text(json.dumps(perturbed(full[60:])))
    (folder / "retain_perturbed.json").write_text(json.dumps(perturbed(full[:20:2] + full[20:40:2])))
    facts = [{"question": f"What colour is thing {i}?", "answer": "red", "perturbed_answer": "['blue', 'green']"}
             for i in range(6)]
    (folder / "real_authors_perturbed.json").write_text(json.dumps(facts))
    (folder / "world_facts_perturbed.json").write_text(json.dumps(facts))
    (folder / "holdout01.json").write_text(json.dumps(
        [{"question": f"Who is person {i}?", "answer": f"Person {i} is a baker in town {i}."} for i in range(20)]))


@pytest.fixture
def tiny_tofu(tmp_path):
    write_tiny_tofu(tmp_path / "data")
    return tmp_path / "data"


def test_qa_example_labels_only_the_answer(tiny_tokenizer):
    from obliviate.qa_run import qa_example

    example = qa_example(tiny_tokenizer, "Who?", "Me.", "Question: {question}\nAnswer:")
    prompt = tiny_tokenizer("Question: Who?\nAnswer:")["input_ids"]
    answer = tiny_tokenizer(" Me.", add_special_tokens=False)["input_ids"] + [tiny_tokenizer.eos_token_id]
    assert example["input_ids"] == prompt + answer
    # position t predicts token t + 1: the last prompt position predicts the first answer token
    assert example["labels"] == [IGNORE_INDEX] * (len(prompt) - 1) + answer + [IGNORE_INDEX]


def test_answer_only_loss_ignores_the_question(tiny_model, tiny_tokenizer):
    """The fine-tuning loss of a QA example equals the NLL of its answer tokens alone."""
    import torch

    from obliviate.methods import FineTune
    from obliviate.qa_run import qa_example
    from obliviate.train import pad_collate

    example = qa_example(tiny_tokenizer, "Who wrote it?", "A writer.", "Question: {question}\nAnswer:")
    batch = pad_collate([example], tiny_tokenizer.pad_token_id)
    loss, _ = FineTune().loss(tiny_model, batch)
    with torch.no_grad():
        logits = tiny_model(input_ids=batch["input_ids"]).logits[0].float()
    logp = torch.log_softmax(logits, -1)
    positions = [t for t, label in enumerate(example["labels"]) if label != IGNORE_INDEX]
    expected = -torch.stack([logp[t, example["labels"][t]] for t in positions]).mean()
    assert float(loss.detach()) == pytest.approx(float(expected), rel=1e-5)


def test_qa_run_refuses_bad_settings_before_work(tmp_path, tiny_model_dir):
    from obliviate.errors import ConfigError
    from obliviate.qa_run import QARun, QARunConfig

    with pytest.raises(ConfigError, match="needs question/answer files to learn"):
        QARun(from_dict(QARunConfig, {"model": str(tiny_model_dir)}), tmp_path / "a")
    with pytest.raises(ConfigError, match="needs retain"):
        QARun(from_dict(QARunConfig, {"model": str(tiny_model_dir), "method": "grad_diff", "forget": ["x"]}),
              tmp_path / "b")
    with pytest.raises(ConfigError, match="unknown method"):
        QARun(from_dict(QARunConfig, {"model": str(tiny_model_dir), "method": "nope", "forget": ["x"]}), tmp_path / "c")
    with pytest.raises(ConfigError, match="undo.enabled follows unlearning"):
        QARun(from_dict(QARunConfig, {"model": str(tiny_model_dir), "learn": ["x"], "undo": {"enabled": True}}),
              tmp_path / "d")
    with pytest.raises(ConfigError, match="undo.enabled needs text to distil on"):
        QARun(from_dict(QARunConfig, {"model": str(tiny_model_dir), "method": "gradient_ascent", "forget": ["x"],
                                      "undo": {"enabled": True}}), tmp_path / "e")
    assert not any((tmp_path / n).exists() for n in "abde")


def test_cpu_preset_subset_is_the_same_for_target_and_gold(tiny_tofu, tmp_path):
    from obliviate.tofu_bench import build_sets, make_config

    config = make_config("cpu", {"data_dir": str(tiny_tofu), "retain_authors": 2})
    sets = build_sets(config, tmp_path / "bench")
    assert sets["retain_authors"] == [0, 1]
    read = lambda p: [json.loads(line)["question"] for line in open(p)]  # noqa: E731
    retain, target, forget = (read(sets["train"][k]) for k in ("retain", "target", "forget"))
    assert target == forget + retain and len(forget) == 20 and len(retain) == 40
    assert not set(forget) & set(retain)
    # retain evaluation only on authors both models learnt
    assert all(any(n in qa.question for n in NAMES[:2]) for qa in sets["eval"]["retain"])


def test_bench_tofu_end_to_end(tiny_tofu, tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "bench"
    argv = ["bench", "tofu", "--preset", "cpu", "--model", str(tiny_model_dir), "--data-dir", str(tiny_tofu),
            "--methods", "grad_diff,npo,whp", "--out", str(out), "--set", "finetune.epochs=1",
            "--set", "unlearn.max_steps=2", "--set", "whp.reinforce.epochs=1", "--set", "eval.max_new_tokens=8",
            "--set", "eval.limit=6", "--set", "whp.top_k_terms=10"]
    assert main(argv) == 0
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert [r["model"] for r in rows] == ["target", "gold", "grad_diff", "npo", "whp"]
    by_name = {r["model"]: r for r in rows}
    assert by_name["gold"]["forget_quality"] == pytest.approx(1.0)  # the gold model against itself
    # the target model learnt the forget authors: its truth ratios are far from the gold model's
    assert by_name["target"]["forget_quality"] < 1e-3
    for row in rows:
        assert 0 <= row["forget_quality"] <= 1 and 0 <= row["model_utility"] <= 1
    # every training run is an ordinary run folder with a manifest
    for folder in ("target", "gold", "unlearn/grad_diff", "unlearn/npo", "whp_reinforced"):
        assert json.loads((out / folder / "manifest.json").read_text())["complete"]
    whp = json.loads((out / "whp" / "state.json").read_text())["stages"]  # its quick eval is not TOFU's: not run
    assert all(whp[s]["complete"] for s in ("reinforce", "labels", "finetune")) and "eval" not in whp
    table = (out / "results.md").read_text()
    assert table.index("| target |") < table.index("| gold |") < table.index("| grad_diff |")
    assert "<img" in (out / "report.html").read_text()
    assert f"Command: `obliviate {' '.join(argv)}`" in table
    # a second run reuses every folder and evaluation, and gives identical numbers
    capsys.readouterr()
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "[train] ..." not in err and "reused" in err
    assert json.loads((out / "results.json").read_text())["rows"] == [
        {**r, "eval_seconds": r["eval_seconds"]} for r in rows]


def test_bench_tofu_bad_input_is_one_line(tmp_path, tiny_model_dir, capsys):
    assert main(["bench", "tofu", "--data-dir", str(tmp_path), "--out", str(tmp_path / "o"),
                 "--model", str(tiny_model_dir)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: TOFU data not found") and len(err.strip().splitlines()) == 1
    assert main(["bench", "tofu", "--methods", "nope", "--out", str(tmp_path / "o")]) == 2
    assert "unknown method 'nope'" in capsys.readouterr().err
    assert main(["bench", "tofu", "--set", "unlearn.learning_rate=-1", "--out", str(tmp_path / "o")]) == 2
    assert "learning_rate" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("extra, message", [
    (["--set", "nosuch=1"], "error: unknown setting 'nosuch': known settings here are"),
    (["--set", "unlearn.max_steps=-1"], "error: 'unlearn.max_steps' must be >= 0, not -1: fix it in the config or "
                                        "with --set unlearn.max_steps=..."),
    (["--set", "method_settings.npo.nosuch=3"], "error: unknown setting 'method_settings.npo.nosuch'"),
    (["--set", "method_settings.npo.beta=-3"], "error: method_settings.npo.beta must be a finite number > 0"),
    (["--set", "method_settings.foo.beta=1"], "error: unknown method 'method_settings.foo'"),
    (["--methods", "npo", "--set", "method_settings.rmu.layer=3"],
     "error: 'method_settings.rmu' is set but rmu is not among --methods"),
    (["--set", "method_settings.whp.alpha=3"], "error: 'method_settings.whp' is not a setting"),
    (["--model", "/nonexistent/model"], "error: model '/nonexistent/model' does not exist"),
])
def test_bench_tofu_refuses_before_writing_anything(extra, message, tiny_tofu, tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "o"
    argv = ["bench", "tofu", "--preset", "cpu", "--model", str(tiny_model_dir), "--data-dir", str(tiny_tofu),
            "--out", str(out), *extra]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not out.exists()


def test_bench_tofu_out_is_a_file(tiny_tofu, tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "o"
    out.write_text("notes")
    assert main(["bench", "tofu", "--model", str(tiny_model_dir), "--data-dir", str(tiny_tofu), "--out", str(out)]) == 2
    assert capsys.readouterr().err.startswith(f"error: --out '{out}' is a file")
    assert out.read_text() == "notes"


def test_bench_reuses_the_references_of_another_bench(tiny_tofu, tiny_model_dir, tmp_path, capsys):
    common = ["bench", "tofu", "--preset", "cpu", "--model", str(tiny_model_dir), "--data-dir", str(tiny_tofu),
              "--methods", "npo", "--set", "finetune.epochs=1", "--set", "unlearn.max_steps=2",
              "--set", "eval.max_new_tokens=4", "--set", "eval.limit=4"]
    first, second = tmp_path / "first", tmp_path / "second"
    assert main([*common, "--out", str(first)]) == 0
    capsys.readouterr()
    # other unlearning settings on the same target and gold models: they are not trained again
    assert main([*common, "--out", str(second), "--references", str(first), "--set", "unlearn.learning_rate=1e-3"]) == 0
    err = capsys.readouterr().err
    assert "[target] [gold] reused from" in err
    assert f"[eval] target: reused {first / 'eval' / 'target.json'}" in err  # their scores too
    assert not (second / "target").exists() and not (second / "gold").exists()
    rows = {r["model"]: r for r in json.loads((second / "results.json").read_text())["rows"]}
    before = {r["model"]: r for r in json.loads((first / "results.json").read_text())["rows"]}
    assert rows["gold"]["forget_quality"] == pytest.approx(1.0)
    assert rows["target"]["model_utility"] == before["target"]["model_utility"]
    # references trained otherwise are refused before anything is written
    for extra, message in ((["--set", "finetune.epochs=2"], "other finetune settings"),
                           (["--retain-authors", "1"], "learnt other pairs"),
                           ([], "holds no finished target model")):
        refs = first if extra else tmp_path / "none"
        out = tmp_path / "third"
        assert main([*common, "--out", str(out), "--references", str(refs), *extra]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: --references") and message in err and len(err.strip().splitlines()) == 1
        assert not out.exists()


def test_bench_with_undo_after_unlearning(tiny_tofu, tiny_model_dir, tmp_path, capsys):
    import torch
    from safetensors.torch import load_file

    common = ["bench", "tofu", "--preset", "cpu", "--model", str(tiny_model_dir), "--data-dir", str(tiny_tofu),
              "--methods", "grad_diff", "--set", "finetune.epochs=1", "--set", "unlearn.max_steps=2",
              "--set", "eval.max_new_tokens=4", "--set", "eval.limit=4"]
    plain, undone = tmp_path / "plain", tmp_path / "undo"
    assert main([*common, "--out", str(plain)]) == 0
    (tmp_path / "general.txt").write_text("The farmer walked to the market with his dog and sold eggs. " * 40)
    undo = ["--set", "undo.enabled=true", "--set", "undo.alpha=0.3", "--set", "undo.train.max_steps=2",
            "--set", "undo.train.batch_size=4", "--set", f"undo.general=[{tmp_path / 'general.txt'}]"]
    assert main([*common, "--out", str(undone), "--references", str(plain), *undo]) == 0
    run = undone / "unlearn" / "grad_diff"
    stages = json.loads((run / "state.json").read_text())["stages"]
    assert stages["train"]["complete"] and stages["undo"]["complete"] and stages["undo"]["steps"] == 2
    teacher = load_file(str(run / "teacher" / "model.safetensors"))
    student = load_file(str(run / "model" / "model.safetensors"))
    # the bench scores the distilled student, not the unlearned teacher
    assert any(not torch.equal(teacher[k], student[k]) for k in teacher)
    same = load_file(str(plain / "unlearn" / "grad_diff" / "model" / "model.safetensors"))
    assert all(torch.equal(teacher[k], same[k]) for k in teacher)  # the same unlearning before UNDO
    rows = {r["model"]: r for r in json.loads((undone / "results.json").read_text())["rows"]}
    assert 0 <= rows["grad_diff"]["forget_quality"] <= 1
    capsys.readouterr()
    # UNDO follows the unlearning methods only
    assert main([*common, "--out", str(tmp_path / "w"), "--methods", "whp", *undo]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: undo.enabled follows the unlearning methods, not whp") and not (tmp_path / "w").exists()


def test_a_limited_suite_scores_the_items_the_bench_scores(tiny_tofu, tmp_path):
    """`obliviate attack --suite` on a bench's runs must read the bench's evaluation items: with a limit,
    items spread over every retain author, not the first authors only."""
    from obliviate.tofu import load_sets
    from obliviate.tofu_bench import build_sets, make_config

    config = make_config("cpu", {"data_dir": str(tiny_tofu), "retain_authors": 2, "eval": {"limit": 6}})
    bench = build_sets(config, tmp_path / "bench")["eval"]
    suite = load_sets(tiny_tofu / "tofu", "forget01", retain_authors=[0, 1], limit=6)
    for name in ("retain", "real_authors", "world_facts", "holdout"):
        assert [qa.question for qa in suite[name]] == [qa.question for qa in bench[name]], name
    assert {qa.author for qa in suite["retain"]} == {0, 1}
