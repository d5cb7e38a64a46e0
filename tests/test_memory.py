"""The memory estimate on hand-computed numbers."""

import pytest

from obliviate.memory import LLAMA_7B, ModelShape, estimate_labels, estimate_method, estimate_training, readme_table

SHAPE = ModelShape(params=1000, hidden=10, layers=2, vocab=50, intermediate=20)


def test_training_parts_by_hand():
    e = estimate_training(SHAPE, batch_size=2, seq_len=3, bytes_per_value=2)
    assert (e.weights, e.gradients, e.optimizer, e.reference) == (2000, 2000, 4000, 0)
    # 2 layers x 34 x 6 tokens x 10 hidden x 2/2, plus 6 tokens x 50 vocab x (2 + 4 + 4)
    assert e.activations == 2 * 34 * 6 * 10 + 6 * 50 * 10
    assert e.total == 2000 + 2000 + 4000 + 4080 + 3000


def test_sharding_divides_the_model_state_and_the_reference():
    ddp = estimate_training(SHAPE, batch_size=1, seq_len=1, reference=True, processes=4)
    fsdp = estimate_training(SHAPE, batch_size=1, seq_len=1, reference=True, processes=4, sharded=True)
    assert (fsdp.weights, fsdp.gradients, fsdp.optimizer) == (ddp.weights / 4, ddp.gradients / 4, ddp.optimizer / 4)
    assert ddp.reference == 2000 and fsdp.reference == 500  # place_reference shards it on the same plan
    assert fsdp.activations == ddp.activations


def test_method_facts_drive_the_estimate():
    npo = estimate_method(SHAPE, "npo", batch_size=1, seq_len=4)
    ascent = estimate_method(SHAPE, "gradient_ascent", batch_size=1, seq_len=4)
    rmu = estimate_method(SHAPE, "rmu", batch_size=1, seq_len=4)
    assert npo.reference == 2000 and ascent.reference == 0  # NPO keeps a frozen copy
    assert npo.activations == 2 * ascent.activations  # forget and retain graphs
    assert rmu.gradients == 3 * 10 * 20 * 2  # three MLP down-projections
    labels = estimate_labels(SHAPE, batch_size=1, seq_len=4)
    assert labels.weights == 4000 and labels.gradients == 0


def test_llama_7b_shape_and_readme_table():
    assert LLAMA_7B.params == pytest.approx(6.74e9, rel=1e-3)  # Llama-2-7B
    table = readme_table()
    assert "| unlearn --method npo |" in table and "| WHP labels |" in table
