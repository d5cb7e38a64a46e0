"""One suite over every registered unlearning method (in the manner of peft's shared tests).

Each method trains the tiny model for a few steps to forget the Harry Potter half of TINY_TEXT
while keeping the farmer/river half; then: the right parameters changed, the forget objective
moved the right way, the retain NLL stayed bounded, and the model saves and reloads (whole, as a
LoRA adapter, and LoRA merged).
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import re
from pathlib import Path

import pytest
import torch

from conftest import TINY_TEXT
from obliviate.errors import ConfigError
from obliviate.lora import LoraSettings, is_lora, save_model
from obliviate.methods import METHODS, UNLEARNING_METHODS, make_method, uses_retain
from obliviate.methods._common import (decoder_layers, default_params_regex, hidden_at, layer_param_selector,
                                       nll_of)
from obliviate.train import TrainConfig, pad_collate, train
from obliviate.unlearn import pair_examples, prepare_unlearning

os.environ["OBLIVIATE_PROGRESS"] = "0"

# How forgetting shows after a few steps on the tiny model: output-level methods raise the forget
# NLL; representation methods (RMU family) move the forget activations towards their target.
FORGETTING_SIGNAL = {
    "gradient_ascent": "forget_nll_rose",
    "grad_diff": "forget_nll_rose",
    "kl_retain": "forget_nll_rose",
    "npo": "forget_nll_rose",
    "simnpo": "forget_nll_rose",
    "rmu": "forget_loss_fell",
    "adaptive_rmu": "forget_loss_fell",
    "cosine_rmu": "forget_loss_fell",
    "probe_direction": "forget_loss_fell",
}
# The tiny model's NLL (~3.7 nats/token) saturates SimNPO's default beta=2.5 (sigmoid(-9) ~ 0 gradient); and
# its forget and retain text share most tokens, so RMU's default alpha=100 holds the layer still for 6 steps.
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
TEST_SETTINGS = {"simnpo": {"beta": 0.5}, "rmu": {"alpha": 10.0}, "adaptive_rmu": {"alpha": 10.0},
                 "probe_direction": {"data_dir": str(SHARED_DATA), "probe_texts_per_class": 20}}
# Representation methods update two down-projections only: they need a larger step to move in 6 steps.
LEARNING_RATE = {"rmu": 1e-2, "adaptive_rmu": 1e-2, "cosine_rmu": 1e-2}
STEPS = 6
RETAIN_GROWTH = 1.5  # generous bound on retain NLL after / before


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The tiny model's ops are too small to gain from threads; on a busy 2-core box they lose a lot."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _blocks(ids: list[int], length: int = 12) -> list[list[int]]:
    return [ids[i:i + length] for i in range(0, len(ids) - length + 1, length // 2)]


@pytest.fixture(scope="module")
def data(tiny_tokenizer):
    harry_potter, farmer = TINY_TEXT.split("\n")[:2]
    forget, retain = _blocks(tiny_tokenizer(harry_potter)["input_ids"]), _blocks(tiny_tokenizer(farmer)["input_ids"])
    examples = pair_examples(forget, retain)
    eval_batch = pad_collate(examples[:len(retain)], tiny_tokenizer.pad_token_id)
    return examples, eval_batch


def _measure(model, method, batch) -> dict:
    with torch.no_grad():
        _, logs = method.loss(model, batch)
        return {"forget_nll": float(nll_of(model, batch["forget"])),
                "retain_nll": float(nll_of(model, batch["retain"])), **{k: float(v) for k, v in logs.items()}}


def _setup(name, model, tokenizer, lora=None):
    if name == "probe_direction" and not SHARED_DATA.is_dir():
        pytest.skip("probe_direction trains its probes on the shared toxicity data, absent here")
    method = make_method(name, TEST_SETTINGS.get(name))
    return prepare_unlearning(model, tokenizer, method, lora or LoraSettings()), method


def _train(name, model, method, tokenizer, examples, lr=1e-3) -> None:
    config = TrainConfig(max_steps=STEPS, learning_rate=LEARNING_RATE.get(name, lr), batch_size=4)
    examples = examples if uses_retain(name, method.config) else [{"forget": e["forget"]} for e in examples]
    assert train(model, method, examples, config, pad_id=tokenizer.pad_token_id).steps == STEPS


def _logits(model, batch) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=batch["forget"]["input_ids"], attention_mask=batch["forget"]["attention_mask"]).logits


def test_every_unlearning_method_is_registered_and_tested():
    assert set(UNLEARNING_METHODS) <= set(METHODS)
    assert set(FORGETTING_SIGNAL) == set(UNLEARNING_METHODS), "add the new method to FORGETTING_SIGNAL"
    assert {"finetune", "whp"} <= set(METHODS)


@pytest.mark.parametrize("name", sorted(UNLEARNING_METHODS))
def test_config_fields_have_help(name):
    config_class = METHODS[name][1]
    source = inspect.getsource(config_class)
    for f in dataclasses.fields(config_class):
        on_line, above = rf"^\s+{f.name}: .*#\s*\S", rf"^\s+#\s*\S.*\n\s+{f.name}: "
        assert re.search(on_line, source, re.M) or re.search(above, source, re.M), f"{name}: '{f.name}' needs help"


@pytest.mark.parametrize("name", sorted(UNLEARNING_METHODS))
def test_method_unlearns(name, tiny_model, tiny_tokenizer, data, tmp_path):
    from transformers import AutoModelForCausalLM

    examples, batch = data
    original = {n: p.detach().clone() for n, p in tiny_model.named_parameters()}
    model, method = _setup(name, tiny_model, tiny_tokenizer)
    before = _measure(model, method, batch)
    _train(name, model, method, tiny_tokenizer, examples)
    after = _measure(model, method, batch)

    changed = {n for n, p in model.named_parameters() if not torch.equal(p, original[n])}
    assert changed, f"{name}: no parameter changed"
    if hasattr(method, "settings_used"):  # RMU family: exactly the selected down-projections
        assert changed == set(method.settings_used["trainable"])
        assert all(re.search(r"layers\.\d+\.mlp\.down_proj\.weight$", n) for n in changed)

    if FORGETTING_SIGNAL[name] == "forget_nll_rose":
        assert after["forget_nll"] > before["forget_nll"] + 0.05, (before, after)
    else:
        assert after["forget_loss"] < 0.98 * before["forget_loss"], (before, after)
    assert after["retain_nll"] < RETAIN_GROWTH * before["retain_nll"], (before, after)

    out = tmp_path / "model"
    save_model(model, tiny_tokenizer, out, LoraSettings())
    reloaded = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    torch.testing.assert_close(_logits(reloaded, batch), _logits(model, batch))


@pytest.mark.parametrize("name", sorted(UNLEARNING_METHODS))
def test_method_with_lora(name, tiny_model, tiny_model_dir, tiny_tokenizer, data, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    examples, batch = data
    original = {n: p.detach().clone() for n, p in tiny_model.named_parameters()}
    settings = LoraSettings(enabled=True, r=4, alpha=8)
    model, method = _setup(name, tiny_model, tiny_tokenizer, lora=settings)
    _train(name, model, method, tiny_tokenizer, examples, lr=1e-2)
    assert is_lora(model)

    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    for n, p in model.get_base_model().named_parameters():
        if "lora_" not in n:
            assert torch.equal(p, original[n.replace(".base_layer", "")]), f"{name}: base weight {n} changed"
    assert any(not torch.all(p == 0) for n, p in model.named_parameters() if "lora_B" in n), "LoRA did not train"
    if hasattr(method, "lora_layers_regex"):  # RMU family: adapters only in the steered layers
        layers = {int(re.search(r"layers\.(\d+)\.", n).group(1)) for n in trainable}
        assert layers == {int(re.search(r"layers\.(\d+)\.", n).group(1)) for n in method.settings_used["trainable"]}

    expected = _logits(model, batch)
    save_model(model, tiny_tokenizer, tmp_path / "adapter", dataclasses.replace(settings, save="adapter"))
    assert (tmp_path / "adapter" / "adapter_config.json").exists()
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    torch.testing.assert_close(_logits(PeftModel.from_pretrained(base, tmp_path / "adapter"), batch), expected)

    save_model(model, tiny_tokenizer, tmp_path / "merged", settings)
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged", dtype=torch.float32)
    torch.testing.assert_close(_logits(merged, batch), expected, atol=1e-4, rtol=1e-4)


def test_unknown_method_and_setting_are_clear_errors():
    with pytest.raises(ConfigError, match="unknown unlearning method 'nope': choose one of gradient_ascent"):
        make_method("nope")
    with pytest.raises(ConfigError, match="'whp'.*have their own commands"):
        make_method("whp")
    with pytest.raises(ConfigError, match="unknown setting 'method.betta'"):
        make_method("npo", {"betta": 0.1})
    with pytest.raises(ConfigError, match="unknown setting 'method.alpha': method 'gradient_ascent' has no settings"):
        make_method("gradient_ascent", {"alpha": 1})
    with pytest.raises(ConfigError, match="method.beta"):
        make_method("npo", {"beta": "high"})


def test_uses_retain():
    assert not uses_retain("gradient_ascent", make_method("gradient_ascent").config)
    assert uses_retain("rmu", make_method("rmu").config)
    assert uses_retain("npo", make_method("npo").config)
    assert not uses_retain("npo", make_method("npo", {"alpha": 0}).config)


# --- shared helpers --------------------------------------------------------------------------

def test_pad_collate_pads_each_part_of_a_pair():
    batch = pad_collate([{"forget": {"input_ids": [1, 2, 3]}, "retain": {"input_ids": [7]}},
                         {"forget": {"input_ids": [4]}, "retain": {"input_ids": [8, 9]}}], pad_id=0)
    assert batch["forget"]["input_ids"].tolist() == [[1, 2, 3], [4, 0, 0]]
    assert batch["forget"]["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["retain"]["input_ids"].tolist() == [[7, 0], [8, 9]]
    assert batch["retain"]["attention_mask"].tolist() == [[1, 0], [1, 1]]
    assert set(pad_collate([{"forget": {"input_ids": [1]}}], pad_id=0)) == {"forget"}


def test_hidden_at_is_the_layer_output(tiny_model, tiny_tokenizer):
    ids = torch.tensor([tiny_tokenizer("Harry raised his wand.")["input_ids"]])
    part = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    with torch.no_grad():
        states = tiny_model(**part, output_hidden_states=True).hidden_states  # embeddings, then each layer
        torch.testing.assert_close(hidden_at(tiny_model, part, 1), states[2])


def test_default_params_regex_for_three_architectures():
    from transformers import (GPT2Config, GPT2LMHeadModel, GPTNeoXConfig, GPTNeoXForCausalLM, LlamaConfig,
                              LlamaForCausalLM)

    small = dict(vocab_size=64, hidden_size=16, num_attention_heads=2, intermediate_size=32, num_hidden_layers=6)
    models = {
        "model.layers.{}.mlp.down_proj.weight": LlamaForCausalLM(LlamaConfig(**small)),
        "gpt_neox.layers.{}.mlp.dense_4h_to_h.weight": GPTNeoXForCausalLM(GPTNeoXConfig(**small)),
        "transformer.h.{}.mlp.c_proj.weight": GPT2LMHeadModel(GPT2Config(vocab_size=64, n_embd=16, n_head=2,
                                                                         n_layer=6)),
    }
    for template, model in models.items():
        assert len(decoder_layers(model)[1]) == 6
        names = [n for n, _ in layer_param_selector(model, default_params_regex(model, 4))]
        assert names == [template.format(i) for i in (2, 3, 4)], names
    with pytest.raises(ConfigError, match="method.layer: layer 9 is out of range: the model has 6 layers; use 0 to 5"):
        default_params_regex(models["model.layers.{}.mlp.down_proj.weight"], 9)
    with pytest.raises(ConfigError, match="matches no parameter"):
        layer_param_selector(models["model.layers.{}.mlp.down_proj.weight"], r"nothing\.here")


@pytest.mark.parametrize("name", ["rmu", "adaptive_rmu", "cosine_rmu"])
def test_representation_losses_ignore_padding(name, tiny_model, tiny_tokenizer, data):
    _, batch = data
    model, method = _setup(name, tiny_model, tiny_tokenizer)
    padded = {part: {"input_ids": torch.nn.functional.pad(b["input_ids"], (0, 3), value=tiny_tokenizer.pad_token_id),
                     "attention_mask": torch.nn.functional.pad(b["attention_mask"], (0, 3), value=0)}
              for part, b in batch.items()}
    with torch.no_grad():
        plain, extra = method.loss(model, batch)[0], method.loss(model, padded)[0]
    torch.testing.assert_close(plain, extra)
