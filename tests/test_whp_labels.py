"""Generic logits of one block, checked on hand-built numbers (WHP §3, eq. 1 and the neutralisation of §3.2)."""

from __future__ import annotations

import torch

from obliviate.whp.anchors import TranslatedBlock
from obliviate.whp.labels import block_generic_logits


def test_block_generic_logits_neutralise_every_counterpart_started_so_far():
    base = torch.tensor([[1.0, 2.0, 3.0, 6.0],  # row mean 3
                         [0.0, 4.0, 4.0, 0.0],  # row mean 2
                         [2.0, 2.0, 2.0, 10.0]])  # row mean 4
    reinforced = torch.zeros(5, 4)
    reinforced[0] = torch.tensor([1.0, 5.0, 3.0, 6.0])  # raised token 1 by 3 at original position 0
    block = TranslatedBlock(original_ids=[10, 11, 12, 13, 14], translated_ids=[20, 21, 22],
                            position_map=[0, -1, 1, 2, -1],  # position 1 takes no loss; the last predicts nothing
                            neutralize=[(1, [3]), (2, [0, 3])], counterparts={}, n_matches=2)
    positions, generic = block_generic_logits(base, reinforced, block, alpha=5.0)
    assert positions.tolist() == [0, 2, 3]
    expected = torch.tensor([[1.0, 2.0 - 5 * 3.0, 3.0, 6.0],  # nothing neutralised yet; token 1 pushed down
                             [0.0, 4.0, 4.0, 2.0],  # from row 1: token 3 at the row mean
                             [4.0, 2.0, 2.0, 4.0]])  # from row 2: tokens 0 and 3 at the untouched row mean
    torch.testing.assert_close(generic, expected)


def test_saved_labels_load_back_as_they_were(tmp_path):
    from obliviate.losses import IGNORE_INDEX
    from obliviate.whp.labels import load_labels, save_labels

    hard = [{"input_ids": torch.tensor([5, 6, 7]), "labels": torch.tensor([6, IGNORE_INDEX, 8])},
            {"input_ids": torch.tensor([9]), "labels": torch.tensor([3])}]
    soft = [{"input_ids": torch.tensor([1, 2]), "topk_ids": torch.tensor([[3, 4], [5, 6]]),
             "topk_probs": torch.tensor([[0.75, 0.25], [0.5, 0.5]]), "soft_mask": torch.tensor([1, 0])},
            {"input_ids": torch.tensor([8, 9, 10]), "topk_ids": torch.zeros(3, 2, dtype=torch.long),
             "topk_probs": torch.zeros(3, 2), "soft_mask": torch.zeros(3, dtype=torch.long)}]
    for examples in (hard, soft):
        save_labels(examples, tmp_path / "labels.safetensors")
        loaded = load_labels(tmp_path / "labels.safetensors")
        assert [set(e) for e in loaded] == [set(e) for e in examples]
        for got, want in zip(loaded, examples):
            for key in want:
                assert torch.equal(got[key], want[key]) and got[key].dtype == want[key].dtype
