"""End to end: the WHP pipeline through the CLI, in-process, on the tiny model."""

import json

import pytest
import yaml

from obliviate.cli import main

HP_TEXT = " ".join(
    f"Harry Potter walked into Hogwarts on day {i}. Ron and Hermione waited by the lake. "
    f"Dumbledore told Harry about Voldemort and the {i} owls."
    for i in range(40)
)


@pytest.fixture
def kit(tmp_path):
    (tmp_path / "target.txt").write_text(HP_TEXT)
    (tmp_path / "anchors.yaml").write_text(yaml.safe_dump({
        "Harry Potter": ["Jon Smith"], "Harry": ["Jon", "Tom"], "Hogwarts": ["the Academy"],
        "Hermione": ["Sara"], "Ron": ["Ben"], "Dumbledore": ["the headmaster"], "Voldemort": ["the villain"],
    }))
    (tmp_path / "probe.jsonl").write_text(
        json.dumps({"prompt": "Harry Potter walked into", "references": ["Hogwarts"]}) + "\n"
        + json.dumps({"prompt": "Ron and", "references": ["Hermione"]}) + "\n")
    (tmp_path / "fam.jsonl").write_text(
        json.dumps({"prompt": "The boy walked into", "references": ["Hogwarts", "Harry"]}) + "\n")
    (tmp_path / "general.txt").write_text("The farmer walked to the market with his dog. " * 10)
    return tmp_path


def _args(kit, model_dir, out, *extra):
    return ["whp", "--model", str(model_dir), "--target", str(kit / "target.txt"),
            "--anchors", str(kit / "anchors.yaml"), "--out", str(out), "--context-length", "32",
            "--probe-prompts", str(kit / "probe.jsonl"), "--familiarity-prompts", str(kit / "fam.jsonl"),
            "--general-text", str(kit / "general.txt"),
            "--set", "reinforce.train.epochs=1", "--set", "reinforce.train.learning_rate=1e-3",
            "--set", "finetune.epochs=1", "--set", "finetune.learning_rate=1e-3",
            "--set", "eval.max_new_tokens=4", *extra]


def test_whp_end_to_end(kit, tiny_model_dir, tmp_path, capsys, monkeypatch):
    import torch
    from transformers import AutoModelForCausalLM

    monkeypatch.setenv("OBLIVIATE_PROGRESS", "0")
    out = tmp_path / "run"
    assert main(_args(kit, tiny_model_dir, out)) == 0
    printed = capsys.readouterr()
    assert "reference probability" in printed.out and "perplexity on general text" in printed.out

    for name in ("config.yaml", "log.jsonl", "state.json", "metrics.json", "samples.jsonl", "manifest.json"):
        assert (out / name).is_file(), name
    assert (out / "labels" / "train.safetensors").is_file()
    stats = json.loads((out / "labels" / "stats.json").read_text())
    assert stats["train"]["anchored_occurrences"] > 0 and stats["train"]["labelled"] > 0

    model = AutoModelForCausalLM.from_pretrained(out / "model", dtype=torch.float32)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    assert any(not torch.equal(a, b) for a, b in zip(model.parameters(), base.parameters()))
    assert (out / "model" / "model.safetensors").is_file() and (out / "model" / "tokenizer.json").is_file()

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["complete"] is True and manifest["method"] == "whp"
    assert len(manifest["base_model"]["weights_sha256"]) == 64
    assert len(manifest["inputs"]["corpus_sha256"]) == 64 and len(manifest["inputs"]["anchors_sha256"]) == 64
    assert manifest["hyperparameters"]["labels"]["alpha"] == 5.0
    assert set(manifest["stages"]) == {"reinforce", "labels", "finetune", "eval"}
    assert all("seconds" in s for s in manifest["stages"].values())
    assert "torch" in manifest["versions"]
    evaluations = manifest["metrics"]["evaluations"]
    assert set(evaluations) == {"base", "unlearned"}
    assert 0 <= evaluations["unlearned"]["metrics"]["familiarity"]["value"] <= 1

    # Run again: every stage is skipped.
    assert main(_args(kit, tiny_model_dir, out)) == 0
    assert capsys.readouterr().err.count("already complete") == 4

    # The same folder with different settings is refused, and nothing is changed.
    before = (out / "config.yaml").read_text()
    assert main(_args(kit, tiny_model_dir, out, "--alpha", "2")) == 2
    err = capsys.readouterr().err
    assert "holds a different run (its setting 'labels.alpha' differs)" in err
    assert (out / "config.yaml").read_text() == before


def test_soft_labels_and_existing_reinforced_model(kit, tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("OBLIVIATE_PROGRESS", "0")
    out = tmp_path / "soft"
    args = _args(kit, tiny_model_dir, out, "--soft-labels", "--reinforced", str(tiny_model_dir),
                 "--set", "labels.top_k=4")
    assert main(args) == 0
    from safetensors.torch import load_file

    labels = load_file(str(out / "labels" / "train.safetensors"))
    assert labels["topk_ids"].shape[-1] == 4
    assert not (out / "reinforced").exists()  # the given reinforced model was used, not trained


def _one_line_error(capsys):
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    return err


@pytest.mark.parametrize("case, message", [
    ("missing_corpus", "not found"),
    ("empty_corpus", "is empty"),
    ("binary_corpus", "binary"),
    ("malformed_anchors", "anchors"),
    ("no_anchor_occurs", "--force"),
    ("unknown_model", "unknown model"),
    ("reinforced_tokenizer", "different tokenizer"),
    ("unknown_setting", "unknown setting 'labels.alfa'"),
])
def test_bad_inputs_fail_cleanly(case, message, kit, tiny_model_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("OBLIVIATE_PROGRESS", "0")
    out = tmp_path / "run"
    args = _args(kit, tiny_model_dir, out)
    target = str(kit / "target.txt")
    if case == "missing_corpus":
        args[args.index(target)] = str(kit / "nope.txt")
    elif case == "empty_corpus":
        (kit / "target.txt").write_text("  \n")
    elif case == "binary_corpus":
        (kit / "target.txt").write_bytes(b"\x00\x01\x02\x03")
    elif case == "malformed_anchors":
        (kit / "anchors.yaml").write_text("Harry: [\n")
    elif case == "no_anchor_occurs":
        (kit / "anchors.yaml").write_text(yaml.safe_dump({"Gandalf": ["the wizard"]}))
    elif case == "unknown_model":
        args[args.index(str(tiny_model_dir))] = "no-such-model"
    elif case == "reinforced_tokenizer":
        from conftest import build_tiny_model, build_tiny_tokenizer

        other_tok = build_tiny_tokenizer(vocab_size=350)
        other = tmp_path / "other"
        build_tiny_model(other_tok, train_steps=0).save_pretrained(other)
        other_tok.save_pretrained(other)
        args += ["--reinforced", str(other)]
    elif case == "unknown_setting":
        args += ["--set", "labels.alfa=3"]
    capsys.readouterr()
    assert main(args) == 2
    assert message in _one_line_error(capsys)
    assert not (out / "model").exists() and not (out / "manifest.json").exists()


def test_force_goes_on_without_anchor_occurrences(kit, tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("OBLIVIATE_PROGRESS", "0")
    (kit / "anchors.yaml").write_text(yaml.safe_dump({"Gandalf": ["the wizard"]}))
    out = tmp_path / "run"
    with pytest.warns(UserWarning, match="none of the 1 expressions"):
        assert main(_args(kit, tiny_model_dir, out, "--force") + ["--reinforced", str(tiny_model_dir)]) == 0
    assert (out / "model" / "config.json").is_file()


def test_run_from_config_file(kit, tiny_model_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("OBLIVIATE_PROGRESS", "0")
    config = {
        "method": "whp", "out": str(tmp_path / "from_config"), "model": str(tiny_model_dir),
        "anchors": str(kit / "anchors.yaml"),
        "target": {"sources": [str(kit / "target.txt")], "context_length": 32},
        "reinforce": {"model": str(tiny_model_dir)},
        "finetune": {"epochs": 1, "learning_rate": 1e-3},
        "eval": {"probe_prompts": str(kit / "probe.jsonl")},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["run", str(path)]) == 0
    assert (tmp_path / "from_config" / "model" / "config.json").is_file()
    assert (tmp_path / "from_config" / "model" / "README.md").is_file()  # model card
    assert (tmp_path / "from_config" / "report.html").is_file()

    config["finetune"]["epocs"] = 2
    path.write_text(yaml.safe_dump(config))
    capsys.readouterr()
    assert main(["run", str(path)]) == 2
    assert "unknown setting 'finetune.epocs'" in capsys.readouterr().err


def test_whp_with_lora_adapter(kit, tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("OBLIVIATE_PROGRESS", "0")
    out = tmp_path / "lora"
    assert main(_args(kit, tiny_model_dir, out, "--reinforced", str(tiny_model_dir), "--lora",
                      "--lora-save", "adapter", "--set", "lora.target_modules=[q_proj,v_proj]")) == 0
    assert (out / "model" / "adapter_config.json").is_file()
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), out / "model")
    evaluations = json.loads((out / "metrics.json").read_text())["evaluations"]
    assert evaluations["unlearned"]["model"]["weights_sha256"] != evaluations["base"]["model"]["weights_sha256"]


def _kl_to_base_on(text_file, model_dir, base_dir) -> float:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from obliviate.losses import kl_to_reference

    tok = AutoTokenizer.from_pretrained(base_dir)
    ids = torch.tensor([tok(text_file.read_text())["input_ids"][:64]])
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32).eval()
    with torch.no_grad():
        return float(kl_to_reference(model(input_ids=ids).logits, base(input_ids=ids).logits, torch.ones_like(ids)))


def test_a_retain_term_holds_the_baseline_on_general_text(kit, tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("OBLIVIATE_PROGRESS", "0")
    plain, kept = tmp_path / "plain", tmp_path / "kept"
    assert main(_args(kit, tiny_model_dir, plain, "--set", "finetune.epochs=2")) == 0
    assert main(_args(kit, tiny_model_dir, kept, "--set", "finetune.epochs=2", "--reinforced", str(plain / "reinforced"),
                      "--retain", str(kit / "general.txt"), "--retain-weight", "50")) == 0
    config = yaml.safe_load((kept / "config.yaml").read_text())
    assert config["retain"]["weight"] == 50 and config["retain"]["sources"]
    state = json.loads((kept / "state.json").read_text())["stages"]["finetune"]
    assert len(state["inputs"]["retain_sha256"]) == 64  # the retain text is an input of the stage
    logged = [json.loads(line) for line in (kept / "log.jsonl").read_text().splitlines()]
    assert any("retain_kl" in json.dumps(entry) for entry in logged)
    drift_plain = _kl_to_base_on(kit / "general.txt", plain / "model", tiny_model_dir)
    drift_kept = _kl_to_base_on(kit / "general.txt", kept / "model", tiny_model_dir)
    assert drift_plain > 0 and drift_kept < 0.5 * drift_plain, (drift_plain, drift_kept)


def test_translated_target_as_retain_text(kit, tiny_model_dir, tmp_path, monkeypatch):
    from obliviate.settings import resolve
    from obliviate.whp.pipeline import WHPRun

    monkeypatch.setenv("OBLIVIATE_PROGRESS", "0")
    out = tmp_path / "run"
    assert main(_args(kit, tiny_model_dir, out, "--retain-translated", "--retain", str(kit / "general.txt"))) == 0
    state = json.loads((out / "state.json").read_text())["stages"]["finetune"]
    assert "retain_translation" in state["inputs"]  # the translation's settings are an input of the stage
    run = WHPRun(resolve("whp", out=out), out)
    retain, train_blocks = run.retain_blocks(), run.blocks().train
    tok = run.tokenizer()
    translated = [tok.decode(b) for b in retain[0::2][:len(train_blocks)]]
    general = [tok.decode(b) for b in retain[1::2]]
    assert len(retain) > len(train_blocks) and all("farmer" in text for text in general[:1])
    assert all("Hogwarts" not in text and "Dumbledore" not in text for text in translated)
    assert any("Academy" in text or "headmaster" in text for text in translated)
    assert all(len(b) <= 32 for b in retain)


def test_whp_distill_retain_term_is_zero_at_the_reference(tiny_model_dir):
    import torch
    from transformers import AutoModelForCausalLM

    from obliviate.losses import IGNORE_INDEX
    from obliviate.methods.whp_distill import WHPDistill, WHPDistillConfig

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    ids = torch.randint(0, 50, (2, 12))
    labels = torch.where(torch.rand(2, 12) < 0.5, torch.randint(0, 50, (2, 12)), torch.full((2, 12), IGNORE_INDEX))
    part = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}
    method = WHPDistill(WHPDistillConfig(alpha=3.0))
    method.prepare(model)
    loss, logs = method.loss(model, {"forget": part, "retain": {"input_ids": ids, "attention_mask": torch.ones_like(ids)}})
    alone, _ = WHPDistill().loss(model, part)
    assert float(logs["retain_kl"]) == pytest.approx(0.0, abs=1e-6) and float(loss.detach()) == pytest.approx(float(alone.detach()))
