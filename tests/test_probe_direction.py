"""The probe-direction unlearning method on the tiny model, through the one training loop."""

from __future__ import annotations

import dataclasses
import inspect
import os
import random
import re
from pathlib import Path

import pytest
import torch

from obliviate.errors import ConfigError, DataError
from obliviate.losses import probe_direction_loss
from obliviate.methods._common import nll_of
from obliviate.methods.probe_direction import ProbeDirection, ProbeDirectionConfig, spread_layers
from obliviate.toxicity.probes import hidden_states_at, layer_features, save_probes, train_probes
from obliviate.train import TrainConfig, pad_collate, train

os.environ["OBLIVIATE_PROGRESS"] = "0"
DATA_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data"
LAYERS = [1, 2]
FILLER = ("the farmer walked to the market with his dog the river ran past old mill teacher read a book "
          "to children weather was cold and wind blew").split()
RETAIN = ["The farmer walked to the market with his dog.", "The river ran past the old mill.",
          "She bought bread and milk at the shop.", "The train left the station at noon."]


def marker_texts(n: int = 80, marker: str = "Voldemort", seed: int = 0) -> tuple[list[str], list[int]]:
    """Toy separable data: filler sentences, half of them with a marker word (label 1)."""
    rng = random.Random(seed)
    texts, labels = [], []
    for i in range(n):
        words = [rng.choice(FILLER) for _ in range(8)]
        if i % 2:
            words.insert(rng.randrange(len(words)), marker)
        texts.append(" ".join(words))
        labels.append(i % 2)
    return texts, labels


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The tiny model's ops are too small to gain from threads; on a busy 2-core box they lose a lot."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def marker_probes(tiny_model, tiny_tokenizer, tmp_path) -> Path:
    """Probes for a marker word ("Voldemort" = the behaviour to forget), saved as a folder."""
    texts, labels = marker_texts()
    probes = train_probes(layer_features(tiny_model, tiny_tokenizer, texts, LAYERS), labels)
    return save_probes(probes, tmp_path / "probes")


def _examples(tokenizer) -> list[dict]:
    texts, labels = marker_texts(16, seed=2)
    forget = [tokenizer(t)["input_ids"] for t, label in zip(texts, labels) if label]
    retain = [tokenizer(t)["input_ids"] for t in RETAIN]
    return [{"forget": {"input_ids": f}, "retain": {"input_ids": retain[i % len(retain)]}}
            for i, f in enumerate(forget)]


def _projection(model, method, batch) -> float:
    with torch.no_grad():
        states = hidden_states_at(model, batch["forget"], method.layers)
        return float(probe_direction_loss(states, method.directions, batch["forget"]["attention_mask"]))


def test_config_fields_have_help():
    source = inspect.getsource(ProbeDirectionConfig)
    for f in dataclasses.fields(ProbeDirectionConfig):
        assert re.search(rf"^\s+{f.name}: .*#\s*\S", source, re.M), f"field '{f.name}' needs a # help comment"


def test_spread_layers():
    assert spread_layers(30) == [6, 12, 18, 24]
    assert spread_layers(4) == [1, 2, 3]
    assert spread_layers(1) == [0]


def test_probe_direction_removes_the_direction(tiny_model, tiny_tokenizer, marker_probes):
    original = {n: p.detach().clone() for n, p in tiny_model.named_parameters()}
    method = ProbeDirection(ProbeDirectionConfig(probes=str(marker_probes)))
    method.prepare(tiny_model, tiny_tokenizer)
    assert method.layers == LAYERS  # the saved probes' layers
    assert all(float(d.norm()) == pytest.approx(1.0, abs=1e-5) for d in method.directions)
    examples = _examples(tiny_tokenizer)
    batch = pad_collate(examples, tiny_tokenizer.pad_token_id)
    projection_before = _projection(tiny_model, method, batch)
    with torch.no_grad():
        retain_before = float(nll_of(tiny_model, batch["retain"]))

    result = train(tiny_model, method, examples, TrainConfig(max_steps=8, learning_rate=1e-2, batch_size=4),
                   pad_id=tiny_tokenizer.pad_token_id)
    assert result.steps == 8 and {"forget_loss", "retain_nll"} <= set(result.history[-1])

    projection_after = _projection(tiny_model, method, batch)
    with torch.no_grad():
        retain_after = float(nll_of(tiny_model, batch["retain"]))
    assert projection_after < 0.8 * projection_before, (projection_before, projection_after)
    assert retain_after < 1.5 * retain_before, (retain_before, retain_after)
    changed = {n for n, p in tiny_model.named_parameters() if not torch.equal(p, original[n])}
    assert changed == set(method.settings_used["trainable"]) == {
        f"model.layers.{i}.mlp.down_proj.weight" for i in LAYERS}


def test_benign_target_measures_the_distance_to_the_benign_projection(tiny_model, tiny_tokenizer, marker_probes):
    method = ProbeDirection(ProbeDirectionConfig(probes=str(marker_probes), target="benign", alpha=0.0))
    method.prepare(tiny_model, tiny_tokenizer)
    assert method.targets == [method.probes[layer].benign_projection for layer in LAYERS] and any(method.targets)
    batch = pad_collate(_examples(tiny_tokenizer), tiny_tokenizer.pad_token_id)
    with torch.no_grad():
        loss, _ = method.loss(tiny_model, batch)
        states = hidden_states_at(tiny_model, batch["forget"], LAYERS)
    mask = batch["forget"]["attention_mask"].bool()
    expected = sum(((h @ d)[mask] - c).pow(2).mean() for h, d, c in zip(states, method.directions, method.targets))
    assert float(loss) == pytest.approx(float(expected) / len(LAYERS), rel=1e-4)
    with pytest.raises(ConfigError, match="method.target must be 'zero' or 'benign'"):
        ProbeDirection(ProbeDirectionConfig(target="mean"))


def test_retain_weight_zero_needs_no_retain_text(tiny_model, tiny_tokenizer, marker_probes):
    method = ProbeDirection(ProbeDirectionConfig(probes=str(marker_probes), alpha=0.0, layers=[2]))
    method.prepare(tiny_model, tiny_tokenizer)
    batch = pad_collate([{"forget": e["forget"]} for e in _examples(tiny_tokenizer)], tiny_tokenizer.pad_token_id)
    loss, logs = method.loss(tiny_model, batch)
    assert set(logs) == {"forget_loss"} and loss.requires_grad
    method = ProbeDirection(ProbeDirectionConfig(probes=str(marker_probes)))
    method.prepare(tiny_model, tiny_tokenizer)
    with pytest.raises(DataError, match="needs retain text"):
        method.loss(tiny_model, batch)


def test_bad_settings_are_clear_errors(tiny_model, tiny_tokenizer, marker_probes):
    with pytest.raises(ConfigError, match="layer 9 is out of range: the model has 4 layers"):
        ProbeDirection(ProbeDirectionConfig(probes=str(marker_probes), layers=[9])).prepare(tiny_model, tiny_tokenizer)
    with pytest.raises(ConfigError, match="has no probe for layer 3"):
        ProbeDirection(ProbeDirectionConfig(probes=str(marker_probes), layers=[1, 3])).prepare(tiny_model,
                                                                                               tiny_tokenizer)
    with pytest.raises(ConfigError, match="forget_weight"):
        ProbeDirection(ProbeDirectionConfig(forget_weight=0))


@pytest.mark.skipif(not (DATA_DIR / "toxigen").is_dir(), reason=f"shared data not found at {DATA_DIR}")
def test_probes_trained_in_prepare_from_the_data(tiny_model, tiny_tokenizer):
    method = ProbeDirection(ProbeDirectionConfig(data_dir=str(DATA_DIR), probe_texts_per_class=20))
    method.prepare(tiny_model, tiny_tokenizer)
    assert method.layers == [1, 2, 3]
    assert set(method.settings_used["probe_accuracy"]) == {1, 2, 3}
    assert method.settings_used["probes"] == "trained in prepare"
