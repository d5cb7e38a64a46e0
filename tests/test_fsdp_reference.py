"""The frozen reference model sharded on the training's plan (FSDP2), on 2 gloo processes.

Accelerate runs FSDP only on GPUs (on CPU it falls back to plain data parallelism), so this test
calls :func:`obliviate.train.place_reference` with an accelerator that states an FSDP2 plan (accelerate's
own ``FullyShardedDataParallelPlugin``, transformer-layer wrapping): the reference is then sharded by
accelerate's ``fsdp2_prepare_model`` on 2 gloo processes. The sharded reference must give the same
KL-retain loss and the same RMU frozen activations as the whole one, while each process holds only
its half of the reference's parameters (after a forward, of its decoder layers: accelerate's plan keeps
the last group, embeddings, final norm and head, gathered). Not run: FSDP through accelerate on GPUs,
FSDP1 and ZeRO-3 (no GPU, no DeepSpeed here).
"""

from __future__ import annotations


from types import SimpleNamespace

import pytest
import torch

from conftest import gloo_group, spawn_gloo

pytestmark = pytest.mark.distributed


def _part(tokenizer, texts: list[str]) -> dict:
    from obliviate.train import pad_collate

    return pad_collate([{"input_ids": tokenizer(t)["input_ids"]} for t in texts], tokenizer.pad_token_id or 0)


def _fsdp2_accelerator(rank: int):
    """What place_reference reads of an Accelerator launched with an FSDP2 config (on GPUs)."""
    from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

    plugin = FullyShardedDataParallelPlugin(fsdp_version=2, auto_wrap_policy="transformer_based_wrap",
                                            reshard_after_forward=True)
    return SimpleNamespace(distributed_type=DistributedType.FSDP, is_fsdp2=True, state=SimpleNamespace(fsdp_plugin=plugin),
                           device=torch.device("cpu"), mixed_precision="no", is_main_process=rank == 0)


def _local_numel(module) -> int:
    return sum((p.to_local() if hasattr(p, "to_local") else p).numel() for p in module.parameters())


def _worker(rank: int, world: int, port: int, model_dir: str, out_dir: str) -> None:
    import torch.distributed as dist
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from obliviate.methods import KLRetain, RMU, RMUConfig
    from obliviate.methods._common import hidden_at
    from obliviate.train import place_reference

    with gloo_group(rank, world, port):
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
        forget = _part(tokenizer, ["Harry Potter went to Hogwarts with Ron.", "Dumbledore told Harry."])
        retain = _part(tokenizer, ["The farmer walked to the market with his dog.", "The river ran past the mill."])
        batch = {"forget": forget, "retain": retain}
        results = {}

        kl = KLRetain()
        kl.prepare(model, tokenizer)
        torch.manual_seed(0)
        with torch.no_grad():  # the trained model moved off the original, so the KL is not 0
            for p in model.parameters():
                p.add_(0.01 * torch.randn_like(p))
        full = sum(p.numel() for p in kl.reference.parameters())
        whole_loss, whole_logs = kl.loss(model, batch)
        full_layers = sum(p.numel() for p in kl.reference.model.layers.parameters())
        kl.reference = place_reference(_fsdp2_accelerator(rank), kl.reference)
        results["kl_numel"] = (full, _local_numel(kl.reference))
        sharded_loss, sharded_logs = kl.loss(model, batch)
        results["kl"] = (whole_loss.detach(), sharded_loss.detach(), whole_logs["retain_kl"], sharded_logs["retain_kl"])
        # after a forward the decoder layers are sharded again (accelerate keeps the embeddings, final
        # norm and head gathered: reshard_after_forward=False on that last group)
        results["kl_layers_numel"] = (full_layers, _local_numel(kl.reference.model.layers))
        results["kl_grad"] = any(p.requires_grad for p in kl.reference.parameters()) or kl.reference.training

        rmu = RMU(RMUConfig(layer=1))
        rmu.prepare(AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32), tokenizer)
        with torch.no_grad():
            whole = hidden_at(rmu.reference, retain, rmu.layer)  # (B, T, H)
            rmu.reference = place_reference(_fsdp2_accelerator(rank), rmu.reference)
            results["rmu_numel"] = (full, _local_numel(rmu.reference))
            sharded = hidden_at(rmu.reference, retain, rmu.layer)
        results["rmu"] = (whole, sharded)
        torch.save(results, f"{out_dir}/rank{rank}.pt")
        dist.barrier()


def test_reference_sharded_by_place_reference_computes_as_the_whole_one(tiny_model_dir, tmp_path):

    if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    try:
        from torch.distributed.fsdp import fully_shard  # noqa: F401
    except ImportError:
        pytest.skip("this torch has no FSDP2 (fully_shard)")
    spawn_gloo(_worker, str(tiny_model_dir), str(tmp_path))

    for rank in range(2):
        results = torch.load(tmp_path / f"rank{rank}.pt")
        whole_loss, sharded_loss, whole_kl, sharded_kl = results["kl"]
        assert whole_kl > 0
        assert torch.allclose(whole_loss, sharded_loss, atol=1e-5), rank
        assert torch.allclose(whole_kl, sharded_kl, atol=1e-5), rank
        whole, sharded = results["rmu"]
        assert torch.allclose(whole, sharded, atol=1e-5), rank
        assert not results["kl_grad"]  # eval mode, no parameter requiring grad
        for key in ("kl_numel", "rmu_numel", "kl_layers_numel"):
            full, local = results[key]
            assert 0.45 * full <= local <= 0.55 * full, (key, full, local)  # this process's half only
