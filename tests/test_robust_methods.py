"""Methods built to resist relearning: sharpness-aware unlearning (train.sam_rho) and UNDO (undo.enabled)."""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import math
import os

import pytest
import torch

from conftest import TINY_TEXT
from obliviate.errors import ConfigError

os.environ["OBLIVIATE_PROGRESS"] = "0"


# --- sharpness-aware step ------------------------------------------------------------------------

class TwoParams(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a = torch.nn.Parameter(torch.tensor(0.7))
        self.b = torch.nn.Parameter(torch.tensor(-1.3))


class ToyMethod:
    """forget term f = a^2 b + sin(a), retain term r = (a - b)^2 / 2 (no data needed)."""

    def forget_term(self, model, batch):
        return model.a ** 2 * model.b + torch.sin(model.a), {"f": torch.tensor(0.0)}

    def retain_term(self, model, batch):
        return 0.5 * (model.a - model.b) ** 2, {"r": torch.tensor(0.0)}

    def loss(self, model, batch):
        f, _ = self.forget_term(model, batch)
        r, _ = self.retain_term(model, batch)
        return f + r, {}


class WholeLoss:
    """No separate forget term: SAM perturbs the whole loss."""

    def loss(self, model, batch):
        return ToyMethod().loss(model, batch)


def _accelerator():
    from accelerate import Accelerator

    return Accelerator(cpu=True)


def test_sam_step_on_two_parameters_is_the_hand_computed_perturbed_gradient():
    from obliviate.sharpness import sharpness_aware_backward

    model, rho = TwoParams(), 0.3
    a, b = 0.7, -1.3
    # by hand: grad f = (2ab + cos a, a^2); the perturbed point; grad f there; plus grad r at w
    ga, gb = 2 * a * b + math.cos(a), a * a
    norm = math.hypot(ga, gb)
    pa, pb = a + rho * ga / norm, b + rho * gb / norm
    expected = (2 * pa * pb + math.cos(pa) + (a - b), pa * pa - (a - b))
    loss, logs = sharpness_aware_backward(_accelerator(), model, ToyMethod(), {}, [model.a, model.b], rho)
    assert model.a.grad.item() == pytest.approx(expected[0], rel=1e-6)
    assert model.b.grad.item() == pytest.approx(expected[1], rel=1e-6)
    assert loss.item() == pytest.approx(a * a * b + math.sin(a) + 0.5 * (a - b) ** 2, rel=1e-6)  # the loss at w
    assert set(logs) == {"f", "r"}
    # restored exactly, bit for bit
    assert torch.equal(model.a.detach(), torch.tensor(0.7)) and torch.equal(model.b.detach(), torch.tensor(-1.3))


def test_sam_without_a_forget_term_perturbs_the_whole_loss():
    from obliviate.sharpness import sharpness_aware_backward

    model, rho = TwoParams(), 0.3
    a, b = 0.7, -1.3
    ga, gb = 2 * a * b + math.cos(a) + (a - b), a * a - (a - b)
    norm = math.hypot(ga, gb)
    pa, pb = a + rho * ga / norm, b + rho * gb / norm
    sharpness_aware_backward(_accelerator(), model, WholeLoss(), {}, [model.a, model.b], rho)
    assert model.a.grad.item() == pytest.approx(2 * pa * pb + math.cos(pa) + (pa - pb), rel=1e-6)
    assert model.b.grad.item() == pytest.approx(pa * pa - (pa - pb), rel=1e-6)


def _pairs(tokenizer, n: int = 4):
    harry, farmer = TINY_TEXT.split("\n")[:2]
    forget, retain = tokenizer(harry)["input_ids"], tokenizer(farmer)["input_ids"]
    return [{"forget": {"input_ids": forget[i * 8:(i + 1) * 8 + 4]}, "retain": {"input_ids": retain[i * 8:i * 8 + 12]}}
            for i in range(n)]


def test_sam_step_on_the_tiny_lm_matches_a_manual_implementation(tiny_model, tiny_tokenizer):
    from obliviate.methods import make_method
    from obliviate.sharpness import sharpness_aware_backward
    from obliviate.train import pad_collate

    method, rho = make_method("grad_diff", {"gamma": 1.0, "alpha": 0.5}), 0.05
    batch = pad_collate(_pairs(tiny_tokenizer, 2), tiny_tokenizer.pad_token_id)
    model = copy.deepcopy(tiny_model).train()
    params = [p for p in model.parameters() if p.requires_grad]
    before = [p.detach().clone() for p in params]
    sharpness_aware_backward(_accelerator(), model, method, batch, params, rho)
    assert all(torch.equal(p, q) for p, q in zip(params, before))

    manual = copy.deepcopy(tiny_model).train()
    mparams = list(manual.parameters())
    g = torch.autograd.grad(method.forget_term(manual, batch)[0], mparams)
    retain_grad = torch.autograd.grad(method.retain_term(manual, batch)[0], mparams)
    norm = torch.sqrt(sum((x ** 2).sum() for x in g))
    with torch.no_grad():
        for p, x in zip(mparams, g):
            p.add_(rho * x / norm)
    perturbed_grad = torch.autograd.grad(method.forget_term(manual, batch)[0], mparams)
    for p, fx, rx in zip(params, perturbed_grad, retain_grad):
        torch.testing.assert_close(p.grad, fx + rx, rtol=1e-4, atol=1e-6)


def _train(model, tokenizer, method_name, **train_settings):
    from obliviate.methods import make_method
    from obliviate.train import TrainConfig, train

    model = copy.deepcopy(model).train()
    method = make_method(method_name)
    if hasattr(method, "prepare"):
        method.prepare(model, tokenizer)
    config = TrainConfig(**{"max_steps": 2, "batch_size": 2, "learning_rate": 1e-3, **train_settings})
    train(model, method, _pairs(tokenizer), config, pad_id=tokenizer.pad_token_id)
    return model


def test_rho_zero_is_the_plain_loop_and_a_vanishing_rho_reaches_it(tiny_model, tiny_tokenizer):
    settings = {"grad_accum": 2, "batch_size": 1, "max_grad_norm": 0.5}  # accumulation and clipping on
    plain = _train(tiny_model, tiny_tokenizer, "npo", **settings)
    off = _train(tiny_model, tiny_tokenizer, "npo", sam_rho=0.0, **settings)
    for p, q in zip(plain.parameters(), off.parameters()):
        assert torch.equal(p, q)
    # the SAM path with a perturbation too small to matter: the same accumulated, clipped step. The SAM
    # path sums the retain and forget gradients in another order, and AdamW's update of an element whose
    # gradient is near zero is sensitive to the last bits, so the bound is 1% of one step (lr 1e-3)
    tiny = _train(tiny_model, tiny_tokenizer, "npo", sam_rho=1e-9, **settings)
    for p, q in zip(plain.parameters(), tiny.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-5)
    # and a real radius changes the step
    sam = _train(tiny_model, tiny_tokenizer, "npo", sam_rho=0.5, **settings)
    assert any(not torch.allclose(p, q) for p, q in zip(plain.parameters(), sam.parameters()))


def test_sam_with_lora_perturbs_and_trains_only_the_adapters(tiny_model, tiny_tokenizer):
    from obliviate.lora import LoraSettings, apply_lora
    from obliviate.methods import make_method
    from obliviate.train import TrainConfig, train

    model = apply_lora(copy.deepcopy(tiny_model), LoraSettings(enabled=True, r=2, alpha=4))
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    adapters = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    train(model, make_method("gradient_ascent"), _pairs(tiny_tokenizer),
          TrainConfig(max_steps=2, batch_size=2, learning_rate=1e-2, sam_rho=0.1), pad_id=tiny_tokenizer.pad_token_id)
    params = dict(model.named_parameters())
    assert all(torch.equal(params[n], p) for n, p in frozen.items())
    assert any(not torch.equal(params[n], p) for n, p in adapters.items())


def test_sam_refuses_fsdp_and_deepspeed_in_one_line():
    from accelerate.utils import DistributedType

    from obliviate.sharpness import check_sharpness_aware

    for kind in (DistributedType.FSDP, DistributedType.DEEPSPEED):
        with pytest.raises(ConfigError, match=r"^train.sam_rho \(sharpness-aware unlearning\) does not work under "
                                              r"[A-Z_]+: .* set train.sam_rho=0") as raised:
            check_sharpness_aware(type("Fake", (), {"distributed_type": kind})())
        assert "\n" not in str(raised.value)


@pytest.mark.parametrize("plan", ["FSDP", "DEEPSPEED"])
def test_sam_under_a_sharded_launch_is_refused_before_any_work(plan, tiny_model_dir, texts, tmp_path, capsys,
                                                               monkeypatch):
    from obliviate.cli import main

    monkeypatch.setenv(f"ACCELERATE_USE_{plan}", "true")
    out = tmp_path / "run"
    assert main(["unlearn", "--model", str(tiny_model_dir), "--method", "gradient_ascent", "--forget",
                 str(texts / "forget.txt"), "--out", str(out), "--set", "train.sam_rho=0.1"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: train.sam_rho (sharpness-aware unlearning) does not work under {plan}: it moves the whole weights "
        "in place between two backward passes; set train.sam_rho=0, or launch with DDP or one process")
    assert not out.exists()


@pytest.mark.parametrize("name", ["gradient_ascent", "grad_diff", "kl_retain", "npo", "simnpo", "rmu", "adaptive_rmu",
                                  "cosine_rmu"])
def test_split_methods_loss_is_forget_plus_retain_term(name, tiny_model, tiny_tokenizer):
    from obliviate.methods import make_method
    from obliviate.train import pad_collate

    method = make_method(name)
    model = copy.deepcopy(tiny_model)
    if hasattr(method, "prepare"):
        method.prepare(model, tiny_tokenizer)
    batch = pad_collate(_pairs(tiny_tokenizer, 2), tiny_tokenizer.pad_token_id)
    with torch.no_grad():
        loss, _ = method.loss(model, batch)
        forget, _ = method.forget_term(model, batch)
        retain, _ = method.retain_term(model, batch) if hasattr(method, "retain_term") else (0.0, {})
    torch.testing.assert_close(loss, forget + retain)


# --- UNDO --------------------------------------------------------------------------------------

def test_shrink_and_perturb_statistics():
    from obliviate.methods.undo import shrink_and_perturb

    generator = torch.Generator().manual_seed(0)
    weights = {"w": torch.full((400, 400), 0.3), "norm": torch.full((400,), 2.0)}
    noise = {"w": 0.02 * torch.randn(400, 400, generator=generator), "norm": torch.ones(400)}
    for alpha in (0.0, 0.25, 1.0):
        out = shrink_and_perturb(weights, noise, alpha)
        assert out["w"].mean().item() == pytest.approx((1 - alpha) * 0.3, abs=1e-4)
        assert out["w"].std().item() == pytest.approx(alpha * 0.02, rel=0.01, abs=1e-7)
        assert torch.allclose(out["norm"], torch.full((400,), (1 - alpha) * 2.0 + alpha))
    assert torch.equal(shrink_and_perturb(weights, noise, 0.0)["w"], weights["w"])
    assert out["w"].std().item() == pytest.approx(0.02, rel=0.01)
    half = shrink_and_perturb(weights, noise, 0.5, scale=2.0)["w"]  # beta scales the noise only
    assert half.std().item() == pytest.approx(0.02, rel=0.01) and half.mean().item() == pytest.approx(0.15, abs=1e-4)
    assert torch.equal(weights["w"], torch.full((400, 400), 0.3))  # inputs left as they were


def test_init_noise_has_the_initialisation_scale(tiny_model):
    from obliviate.methods.undo import init_noise

    noise = init_noise(tiny_model, seed=0)
    assert set(noise) == {n for n, _ in tiny_model.named_parameters()}
    std = tiny_model.config.initializer_range
    assert noise["model.layers.0.mlp.down_proj.weight"].std().item() == pytest.approx(std, rel=0.1)
    assert torch.equal(noise["model.norm.weight"], torch.ones_like(noise["model.norm.weight"]))
    assert torch.equal(init_noise(tiny_model, seed=0)["model.embed_tokens.weight"], noise["model.embed_tokens.weight"])


def test_distillation_kl_is_the_hand_computed_kl():
    from obliviate.losses import distillation_kl

    # teacher (0.5, 0.5); student (0.25, 0.75): KL = 0.5 ln(0.5/0.25) + 0.5 ln(0.5/0.75) = 0.5 ln(4/3)
    teacher = torch.tensor([[[0.0, 0.0], [5.0, 1.0], [0.0, 0.0]]])
    student = torch.tensor([[[0.0, math.log(3.0)], [5.0, 1.0], [9.0, -9.0]]], requires_grad=True)
    mask = torch.tensor([[1, 1, 0]])  # the third position is padding
    loss = distillation_kl(student, teacher, mask)
    assert loss.item() == pytest.approx((0.5 * math.log(4 / 3) + 0.0) / 2, rel=1e-6)
    loss.backward()
    assert student.grad[0, 2].abs().sum() == 0
    # temperature 2: logits halved, the KL scaled by 4
    t_teacher = torch.softmax(torch.tensor([0.0, 0.0]), -1)
    t_student = torch.softmax(torch.tensor([0.0, math.log(3.0) / 2]), -1)
    hand = float((t_teacher * (t_teacher.log() - t_student.log())).sum())
    got = distillation_kl(student[:, :1].detach(), teacher[:, :1], mask[:, :1], temperature=2.0)
    assert got.item() == pytest.approx(4 * hand, rel=1e-6)


def test_undo_distill_loss_is_zero_for_the_teacher_itself(tiny_model, tiny_tokenizer):
    from obliviate.methods import METHODS
    from obliviate.methods.undo import UndoDistill
    from obliviate.train import pad_collate

    assert METHODS["undo"][0] is UndoDistill and not UndoDistill.unlearning
    method = UndoDistill()
    method.reference = tiny_model
    batch = pad_collate([{"input_ids": tiny_tokenizer(TINY_TEXT)["input_ids"][:12]}], tiny_tokenizer.pad_token_id)
    loss, logs = method.loss(tiny_model, batch)
    assert loss.item() == pytest.approx(0.0, abs=1e-6) and "distill_kl" in logs


# --- `obliviate unlearn` with UNDO and SAM -----------------------------------------------------

@pytest.fixture(scope="module")
def texts(tmp_path_factory):
    folder = tmp_path_factory.mktemp("texts")
    harry_potter, farmer = TINY_TEXT.split("\n")[:2]
    (folder / "forget.txt").write_text((harry_potter + "\n") * 3)
    (folder / "retain.txt").write_text((farmer + "\n") * 3)
    (folder / "general.txt").write_text("The weather was cold. The train left the station at noon.\n" * 3)
    return folder


def _run(model_dir, texts, out, *extra: str) -> int:
    from obliviate.unlearn_cli import add_unlearn_parser

    parser = argparse.ArgumentParser(prog="obliviate")
    add_unlearn_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["unlearn", "--model", str(model_dir), "--method", "grad_diff",
                              "--forget", str(texts / "forget.txt"), "--retain", str(texts / "retain.txt"),
                              "--out", str(out), "--context-length", "16", "--general-text", str(texts / "retain.txt"),
                              "--set", "train.max_steps=2", "--set", "train.batch_size=4",
                              "--set", "train.learning_rate=1e-3", *extra])
    return args.func(args)


def test_unlearn_with_undo_end_to_end_then_resume(tiny_model_dir, texts, tmp_path, capsys):
    from transformers import AutoModelForCausalLM

    out = tmp_path / "run"
    undo = ["--set", "undo.enabled=true", "--set", "undo.alpha=0.3", "--set", "undo.train.max_steps=3",
            "--set", "undo.train.batch_size=4", "--set", f"undo.general=[{texts / 'general.txt'}]",
            "--set", "train.sam_rho=0.05"]
    assert _run(tiny_model_dir, texts, out, *undo) == 0
    state = json.loads((out / "state.json").read_text())["stages"]
    assert list(state) == ["unlearn", "undo", "eval"] and all(s["complete"] for s in state.values())
    assert state["unlearn"]["output"] == "teacher" and state["undo"]["output"] == "model"
    assert state["undo"]["steps"] == 3
    nll = state["undo"]["distill_text_heldout_nll"]
    assert nll["distilled"] < nll["damaged"]  # distillation repairs the damaged copy
    teacher = AutoModelForCausalLM.from_pretrained(out / "teacher")
    student = AutoModelForCausalLM.from_pretrained(out / "model")
    assert any(not torch.equal(p, q) for p, q in zip(teacher.parameters(), student.parameters()))
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["complete"] and manifest["hyperparameters"]["undo"]["alpha"] == 0.3
    assert manifest["hyperparameters"]["train"]["sam_rho"] == 0.05
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert any(r.get("stage") == "undo" and "distill_kl" in r for r in log)

    capsys.readouterr()
    assert _run(tiny_model_dir, texts, out, *undo) == 0
    err = capsys.readouterr().err
    assert all(f"[{s}] already complete" in err for s in ("unlearn", "undo", "eval"))


def test_a_run_without_undo_or_sam_records_what_it_always_did(tiny_model_dir, texts, tmp_path):
    from obliviate.config import to_dict
    from obliviate.settings import resolve

    config = resolve("unlearn", options={"model": str(tiny_model_dir), "method": "npo",
                                         "forget": {"sources": [str(texts / "forget.txt")]}})
    data = to_dict(config)
    # exactly the fields of the config before UNDO, SAM and the constant schedule (relearning attacks) existed
    old = dataclasses.asdict(config)
    del old["undo"], old["train"]["sam_rho"], old["train"]["schedule"]
    assert data == old
    out = tmp_path / "run"
    assert _run(tiny_model_dir, texts, out, "--set", "train.sam_rho=0") == 0
    assert "undo" not in (out / "config.yaml").read_text() and "sam_rho" not in (out / "config.yaml").read_text()
    assert list(json.loads((out / "state.json").read_text())["stages"]) == ["unlearn", "eval"]
    assert (out / "model").is_dir() and not (out / "teacher").exists()


@pytest.mark.parametrize(("extra", "message"), [
    (["--set", "train.sam_rho=-0.1"], "'train.sam_rho' must be >= 0 (0 = no sharpness-aware step), not -0.1"),
    (["--set", "undo.alpha=1.5"], "undo.alpha must be in [0, 1], not 1.5"),
    (["--set", "undo.alpha=-1"], "undo.alpha must be a finite number >= 0, not -1.0"),
    (["--set", "undo.noise_scale=-2"], "undo.noise_scale must be a finite number >= 0, not -2.0"),
    (["--set", "undo.temperature=0"], "undo.temperature must be a finite number > 0, not 0.0"),
    (["--set", "undo.train.learning_rate=0"], "'undo.train.learning_rate' must be > 0, not 0.0"),
    (["--set", "undo.stength=1"], "unknown setting 'undo.stength'"),
])
def test_bad_robust_settings_are_one_line_before_any_work(extra, message, tiny_model_dir, texts, tmp_path, capsys):
    from obliviate.cli import main

    out = tmp_path / "run"
    argv = ["unlearn", "--model", str(tiny_model_dir), "--method", "npo", "--forget", str(texts / "forget.txt"),
            "--out", str(out), *extra]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {message}") and "\n" not in err
    assert not out.exists()


def test_undo_without_text_to_distil_on_is_refused_before_any_work(tiny_model_dir, texts, tmp_path, capsys):
    from obliviate.cli import main

    out = tmp_path / "run"
    assert main(["unlearn", "--model", str(tiny_model_dir), "--method", "gradient_ascent", "--forget",
                 str(texts / "forget.txt"), "--out", str(out), "--set", "undo.enabled=true"]) == 2
    assert capsys.readouterr().err.strip() == ("error: undo.enabled needs text to distil on: pass --retain FILE or set "
                                               "undo.general (never the forget text)")
    assert not out.exists()
