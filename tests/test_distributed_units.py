"""Pieces of the multi-process path that need no second process: sharded labels joined, the
process-group timeout setting, the checkpoint's process count."""

from __future__ import annotations

import pytest
import torch

from obliviate.errors import RunFolderError


def test_label_shares_join_into_the_one_process_labels(tiny_model, tiny_tokenizer):
    from obliviate.whp.anchors import AnchorMatcher
    from obliviate.whp.labels import LabelConfig, gather_labels, generate_generic_labels

    text = "Harry Potter went to Hogwarts with Ron. The farmer walked to the market. " * 6
    ids = tiny_tokenizer(text)["input_ids"]
    blocks = [ids[i:i + 12] for i in range(0, len(ids) - 12, 12)][:7]  # 7 blocks: batches of 2, 2, 2, 1
    matcher = AnchorMatcher(tiny_tokenizer, {"Harry Potter": ["Jon Smith"], "Hogwarts": ["the Academy"]})
    config = LabelConfig(batch_size=2)
    pad = tiny_tokenizer.pad_token_id
    whole = generate_generic_labels(tiny_model, tiny_model, blocks, matcher, config, pad)
    shares = [generate_generic_labels(tiny_model, tiny_model, blocks, matcher, config, pad, shard=(r, 3))
              for r in range(3)]
    assert [len(s["examples"]) for s in shares] == [3, 2, 2]  # batches 0 and 3, 1, 2
    joined = gather_labels(shares)
    assert joined["stats"] == whole["stats"] and joined["index"] == list(range(7))
    for a, b in zip(joined["examples"], whole["examples"]):
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_timeout_setting(monkeypatch):
    from obliviate.runs import DEFAULT_TIMEOUT_MINUTES, timeout_minutes

    monkeypatch.delenv("OBLIVIATE_TIMEOUT_MINUTES", raising=False)
    assert timeout_minutes() == DEFAULT_TIMEOUT_MINUTES > 10  # above NCCL's default of 10 minutes
    monkeypatch.setenv("OBLIVIATE_TIMEOUT_MINUTES", "45")
    assert timeout_minutes() == 45.0
    for bad in ("0", "-3", "soon", "nan", "inf"):
        monkeypatch.setenv("OBLIVIATE_TIMEOUT_MINUTES", bad)
        with pytest.raises(RunFolderError, match="OBLIVIATE_TIMEOUT_MINUTES must be a number of minutes > 0"):
            timeout_minutes()


def test_single_process_helpers_need_no_process_group(monkeypatch):
    from obliviate.runs import broadcast_from_main, main_result, process_index

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert process_index() == (0, 1)
    assert broadcast_from_main({"a": 1}) == {"a": 1}
    assert main_result(lambda: 7) == 7
    with pytest.raises(ValueError):
        main_result(lambda: int("x"))


def test_a_checkpoint_of_another_process_count_is_refused(tiny_model, tiny_tokenizer, tmp_path):
    import json

    from obliviate.errors import TrainingError
    from obliviate.methods import FineTune
    from obliviate.train import TrainConfig, train

    ids = tiny_tokenizer("Harry Potter went to Hogwarts with Ron and Hermione. " * 4)["input_ids"]
    examples = [{"input_ids": ids[i:i + 8]} for i in range(0, 32, 8)]
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "progress.json").write_text(json.dumps({"step": 1, "epoch": 0, "batch_in_epoch": 1, "processes": 2}))
    with pytest.raises(TrainingError, match=r"written by 2 process\(es\), this run has 1"):
        train(tiny_model, FineTune(), examples, TrainConfig(max_steps=2, batch_size=1), checkpoint_dir=ckpt,
              pad_id=tiny_tokenizer.pad_token_id)


def test_npo_with_precomputed_reference_trains_as_with_the_frozen_copy(tiny_model_dir, tiny_tokenizer):
    """``method.precompute_reference``: no frozen copy in memory, the same updates."""
    from transformers import AutoModelForCausalLM

    from obliviate.methods.npo import NPO, NPOConfig
    from obliviate.train import TrainConfig, train
    from obliviate.unlearn import pair_examples

    ids = tiny_tokenizer("Harry Potter went to Hogwarts with Ron and Hermione. The owl flew. " * 4)["input_ids"]
    forget = [ids[i:i + n] for i, n in zip(range(0, 60, 12), (12, 9, 12, 7, 12))]  # unequal lengths: padding
    retain = [ids[1:10], ids[20:31]]
    weights = []
    for precompute in (False, True):
        model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
        method = NPO(NPOConfig(precompute_reference=precompute))
        method.prepare(model, tiny_tokenizer)
        assert (method.reference is None) == precompute
        examples = method.attach_reference(model, pair_examples(forget, retain), tiny_tokenizer.pad_token_id)
        assert ("ref_logp" in examples[0]["forget"]) == precompute
        train(model, method, examples, TrainConfig(max_steps=3, batch_size=2, learning_rate=1e-3),
              pad_id=tiny_tokenizer.pad_token_id)
        weights.append({k: v.clone() for k, v in model.state_dict().items()})
    for name in weights[0]:
        assert torch.allclose(weights[0][name], weights[1][name], atol=1e-5), name
