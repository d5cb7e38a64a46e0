"""Sharded (FSDP2) training, saving and loading on 2 gloo processes.

Accelerate runs FSDP only on GPUs (on CPU it falls back to plain data parallelism), so this test
drives torch's FSDP2 (``fully_shard``) directly: 2 processes shard the tiny model, take one
optimizer step on their halves of a batch, gather the full state dict with the options accelerate's
``get_state_dict`` uses for FSDP2, and the main process saves it with obliviate's ``save_model``.
The saved folder must hold the weights one unsharded process gets from the same step on the whole
batch, and must load back into a sharded model that computes the same logits.
"""

from __future__ import annotations



import pytest
import torch

from conftest import gloo_group, spawn_gloo

pytestmark = pytest.mark.distributed

LR = 1e-3


def _batch(tokenizer) -> torch.Tensor:
    """Two sequences of equal length (2, T): no padding, so the token mean is the mean of the two."""
    a = tokenizer("Harry Potter went to Hogwarts with Ron and Hermione.")["input_ids"]
    b = tokenizer("The farmer walked to the market with his dog and a cat.")["input_ids"]
    n = min(len(a), len(b))
    return torch.tensor([a[:n], b[:n]])


def _shard(model):
    from torch.distributed.fsdp import fully_shard

    for layer in model.model.layers:
        fully_shard(layer)
    fully_shard(model)
    return model


def _worker(rank: int, world: int, port: int, model_dir: str, out_dir: str) -> None:
    import torch.distributed as dist
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict, set_model_state_dict
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from obliviate.lora import LoraSettings, save_model

    with gloo_group(rank, world, port):
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        model = _shard(AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32))
        optimizer = torch.optim.AdamW(model.parameters(), lr=LR)
        ids = _batch(tokenizer)[rank:rank + 1]  # (1, T): this process's half of the global batch
        model(input_ids=ids, labels=ids).loss.backward()  # gradients averaged over the processes
        optimizer.step()
        # what accelerate's get_state_dict does for FSDP2: every process takes part, rank 0 gets it all
        full = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        if rank == 0:
            save_model(model, tokenizer, f"{out_dir}/saved", LoraSettings(), state_dict=full)
        dist.barrier()

        # load the saved folder into a freshly sharded model (rank 0 reads, the others receive)
        fresh = _shard(AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32))
        saved = AutoModelForCausalLM.from_pretrained(f"{out_dir}/saved", dtype=torch.float32).state_dict() \
            if rank == 0 else {}
        set_model_state_dict(fresh, saved, options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=True))
        with torch.no_grad():
            logits = fresh(input_ids=_batch(tokenizer)).logits  # (2, T, V), computed sharded
        if rank == 0:
            torch.save(logits, f"{out_dir}/sharded_logits.pt")
        dist.barrier()


def test_fsdp2_sharded_save_and_load(tiny_model_dir, tiny_tokenizer, tmp_path):
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    try:
        from torch.distributed.fsdp import fully_shard  # noqa: F401
    except ImportError:
        pytest.skip("this torch has no FSDP2 (fully_shard)")
    spawn_gloo(_worker, str(tiny_model_dir), str(tmp_path))

    # one unsharded process, the same step on the whole batch
    reference = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    optimizer = torch.optim.AdamW(reference.parameters(), lr=LR)
    ids = _batch(tiny_tokenizer)
    reference(input_ids=ids, labels=ids).loss.backward()
    optimizer.step()
    saved = load_file(str(tmp_path / "saved" / "model.safetensors"))
    expected = reference.state_dict()
    assert saved and (tmp_path / "saved" / "tokenizer.json").is_file()
    for name, value in saved.items():
        assert torch.allclose(value, expected[name], atol=1e-5), name
    base = load_file(str(tiny_model_dir / "model.safetensors"))
    assert any(not torch.equal(saved[k], base[k]) for k in saved)  # the step changed the weights

    loaded = AutoModelForCausalLM.from_pretrained(tmp_path / "saved", dtype=torch.float32)
    with torch.no_grad():
        logits = loaded(input_ids=ids).logits
    assert torch.allclose(torch.load(tmp_path / "sharded_logits.pt"), logits, atol=1e-5)
