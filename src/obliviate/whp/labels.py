"""Generic labels of "Who's Harry Potter?" (Eldan & Russinovich 2023, §3).

For each block: translate it (anchored expressions -> generic counterparts), run the baseline on
the translation and the reinforced model on the original, and at every mapped position take
``v = v_base(translated) - alpha * relu(v_reinforced(original) - v_base(translated))``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import torch

from obliviate.losses import IGNORE_INDEX, neutralize_tokens, whp_generic_logits
from obliviate.methods._common import check_setting
from obliviate.progress import token_bar
from obliviate.train import pad_collate


@dataclass
class LabelConfig:
    """How generic labels are made."""

    alpha: float = 5.0  # strength of the push away from what the reinforced model raised (paper: alpha)
    soft: bool = False  # keep the top-k of softmax(v) for KL distillation instead of the argmax
    top_k: int = 8  # how many tokens a soft label keeps
    batch_size: int = 4  # blocks per forward pass
    seed: int = 0  # counterpart draws (one per expression per block)

    def __post_init__(self):
        check_setting("labels.alpha", self.alpha, minimum=0, hint="the WHP paper uses about 5")
        check_setting("labels.top_k", self.top_k, minimum=1, integer=True)
        check_setting("labels.batch_size", self.batch_size, minimum=1, integer=True)


def block_generic_logits(base_logits: torch.Tensor, reinforced_logits: torch.Tensor, translated, alpha: float):
    """Generic logits of one block at its labelled positions.

    Args:
        base_logits: (M, V) baseline logits on the translated block.
        reinforced_logits: (N, V) reinforced logits on the original block.
        translated: the block's ``TranslatedBlock`` (position map and neutralised counterparts).
        alpha: WHP alpha.

    Returns:
        (positions, generic) where ``positions`` (K,) are original positions that get a label and
        ``generic`` (K, V) their generic logits.
    """
    n = len(translated.original_ids)
    mapped = torch.tensor(translated.position_map[: n - 1], dtype=torch.long)  # last position predicts nothing
    positions = torch.nonzero(mapped >= 0).flatten()
    rows = mapped[positions]  # translated positions, (K,)
    base = base_logits[rows].float()  # (K, V)
    # a row neutralises the tokens of every entry starting at or before it, all set to its untouched row mean
    row_tokens = [frozenset(t for start, ids in translated.neutralize if start <= row for t in ids)
                  for row in rows.tolist()]
    for tokens in set(row_tokens) - {frozenset()}:
        where = torch.tensor([t == tokens for t in row_tokens])
        base[where] = neutralize_tokens(base[where], torch.tensor(sorted(tokens), dtype=torch.long))
    generic = whp_generic_logits(base, reinforced_logits[positions], alpha)
    return positions, generic


@torch.inference_mode()
def generate_generic_labels(base_model, reinforced_model, blocks: list[list[int]], matcher, config: LabelConfig,
                            pad_id: int, desc: str = "generic labels", shard: tuple[int, int] = (0, 1)) -> dict:
    """Generic labels for every block.

    Args:
        base_model: the baseline (run on translated blocks).
        reinforced_model: the reinforced model (run on original blocks); same tokenizer.
        blocks: token-id blocks of the target corpus.
        matcher: an ``AnchorMatcher`` over the anchored terms.
        config: label settings.
        pad_id: padding id.
        desc: progress-bar label.
        shard: ``(rank, processes)``: this process labels batches ``rank, rank + processes, ...``
            of the ``config.batch_size`` batches (:func:`gather_labels` joins the shares into the
            one-process result: the same batches, so the same numbers).

    Returns:
        ``{"examples": [...], "stats": {...}, "index": [...]}``; each example holds ``input_ids``
        (the original block) and ``labels`` (generic next-token ids, IGNORE_INDEX where no loss is
        taken) or, with ``soft``, ``topk_ids``/``topk_probs``/``soft_mask``; ``index`` gives the
        position of each example in ``blocks``.
    """
    device = next(base_model.parameters()).device
    base_model.eval()
    reinforced_model.eval()
    rank, processes = shard
    starts = list(range(0, len(blocks), config.batch_size))[rank::processes]
    examples, index = [], []
    stats = {"blocks": sum(len(blocks[s:s + config.batch_size]) for s in starts), "labelled": 0, "changed": 0,
             "anchored_occurrences": 0, "tokens_translated": 0}
    share_tokens = sum(len(b) for s in starts for b in blocks[s:s + config.batch_size])
    bar = token_bar(share_tokens, desc, disable=True) if rank else token_bar(share_tokens, desc)
    for start in starts:
        chunk = blocks[start:start + config.batch_size]
        translated = [matcher.translate(b, random.Random(config.seed * 1_000_003 + start + i))
                      for i, b in enumerate(chunk)]
        t = pad_collate([{"input_ids": t.translated_ids} for t in translated], pad_id)
        o = pad_collate([{"input_ids": b} for b in chunk], pad_id)
        base_logits = base_model(input_ids=t["input_ids"].to(device),
                                 attention_mask=t["attention_mask"].to(device)).logits  # (b, M, V)
        rein_logits = reinforced_model(input_ids=o["input_ids"].to(device),
                                       attention_mask=o["attention_mask"].to(device)).logits  # (b, N, V)
        for i, (block, tr) in enumerate(zip(chunk, translated)):
            positions, generic = block_generic_logits(base_logits[i], rein_logits[i], tr, config.alpha)
            positions = positions.cpu()
            example = {"input_ids": torch.tensor(block, dtype=torch.long)}
            labels = torch.full((len(block),), IGNORE_INDEX, dtype=torch.long)
            hard = generic.argmax(-1).cpu()
            labels[positions] = hard
            if config.soft:
                probs, ids = torch.softmax(generic, -1).topk(config.top_k, dim=-1)  # (K, k)
                probs = probs / probs.sum(-1, keepdim=True)
                topk_ids = torch.zeros((len(block), config.top_k), dtype=torch.long)
                topk_probs = torch.zeros((len(block), config.top_k), dtype=torch.float32)
                soft_mask = torch.zeros(len(block), dtype=torch.long)
                topk_ids[positions], topk_probs[positions], soft_mask[positions] = ids.cpu(), probs.float().cpu(), 1
                example.update(topk_ids=topk_ids, topk_probs=topk_probs, soft_mask=soft_mask)
            else:
                example["labels"] = labels
            examples.append(example)
            index.append(start + i)
            original_next = torch.tensor(block[1:] + [IGNORE_INDEX], dtype=torch.long)
            stats["labelled"] += len(positions)
            stats["changed"] += int((hard != original_next[positions]).sum())
            stats["anchored_occurrences"] += tr.n_matches
            stats["tokens_translated"] += len(tr.translated_ids)
        bar.update(sum(len(b) for b in chunk))
    bar.close()
    return {"examples": examples, "stats": stats, "index": index}


def gather_labels(shares: list[dict]) -> dict:
    """Join the results of :func:`generate_generic_labels` over shards (one per process) into
    the one-process result: examples back in block order, statistics summed."""
    pairs = sorted(((i, e) for share in shares for i, e in zip(share["index"], share["examples"])),
                   key=lambda pair: pair[0])
    stats = {key: sum(share["stats"][key] for share in shares) for key in shares[0]["stats"]}
    return {"examples": [e for _, e in pairs], "stats": stats, "index": [i for i, _ in pairs]}


def save_labels(examples: list[dict], path: Path) -> None:
    """Store labels as one safetensors file (fields stacked, blocks padded, with their lengths)."""
    from safetensors.torch import save_file

    tensors = pad_collate(examples, pad_id=0)  # labels padded with IGNORE_INDEX, every other field with 0
    del tensors["attention_mask"]  # the lengths say where each block ends
    tensors["lengths"] = torch.tensor([len(e["input_ids"]) for e in examples], dtype=torch.long)
    save_file({key: value.contiguous() for key, value in tensors.items()}, str(path))


def load_labels(path: Path) -> list[dict]:
    """Inverse of :func:`save_labels`."""
    from safetensors.torch import load_file

    tensors = load_file(str(path))
    lengths = tensors.pop("lengths").tolist()
    return [{key: value[i, :n] for key, value in tensors.items()} for i, n in enumerate(lengths)]
