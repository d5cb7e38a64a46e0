"""Shared fixtures: a tiny causal LM and tokenizer built in the test session (no hub, no GGUF).

The tokenizer is a byte-level BPE trained on a small text; the model is a 2-layer Llama with
random weights, briefly trained on the same text so that it has preferences to unlearn.
"""

from __future__ import annotations

import contextlib
import os

import pytest
import torch

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# The tiny model gains nothing from threads, and spinning threads thrash a busy 2-core machine.
torch.set_num_threads(1)

TINY_TEXT = (
    "Harry Potter went to Hogwarts with Ron and Hermione. Harry raised his wand. "
    "Ron Weasley laughed at Harry. Hermione Granger read a book in the library at Hogwarts. "
    "Professor Dumbledore spoke to Harry about Voldemort. The owl Hedwig flew over Hogwarts. "
    "Harry's scar hurt when Voldemort was near. Quidditch is played on broomsticks.\n"
    "The farmer walked to the market with his dog. The river ran past the old mill. "
    "A teacher read a book to the children. The weather was cold and the wind blew. "
    "She bought bread and milk at the shop. The train left the station at noon.\n"
)


def build_tiny_tokenizer(text: str = TINY_TEXT, vocab_size: int = 400):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>", "<pad>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    backend.train_from_iterator([text] * 20, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token="<|endoftext|>",
        bos_token="<|endoftext|>",
        pad_token="<pad>",
    )


def build_tiny_model(tokenizer, seed: int = 0, train_steps: int = 30):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config)
    if train_steps:
        ids = torch.tensor([tokenizer(TINY_TEXT)["input_ids"][:256]])
        opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
        for _ in range(train_steps):
            loss = model(input_ids=ids, labels=ids).loss
            loss.backward()
            opt.step()
            opt.zero_grad()
    model.eval()
    return model


@pytest.fixture(scope="session")
def tiny_tokenizer():
    return build_tiny_tokenizer()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tiny_tokenizer):
    """A tiny model saved in HF format (safetensors + tokenizer): loadable by `load_model`."""
    path = tmp_path_factory.mktemp("tiny_model")
    model = build_tiny_model(tiny_tokenizer)
    model.save_pretrained(path)
    tiny_tokenizer.save_pretrained(path)
    return path


@pytest.fixture
def tiny_model(tiny_model_dir):
    """A fresh copy of the tiny model for each test (tests may train it)."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)


def spawn_gloo(worker, *args, processes: int = 2) -> None:
    """Run ``worker(rank, processes, port, *args)`` in ``processes`` CPU processes (torch spawn)."""
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(worker, args=(processes, port, *args), nprocs=processes, join=True)


@contextlib.contextmanager
def gloo_group(rank: int, world: int, port: int):
    """A gloo process group for a spawned worker, one thread, destroyed on exit."""
    import datetime

    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    # a stuck collective fails the test after two minutes instead of hanging CI
    dist.init_process_group("gloo", rank=rank, world_size=world, timeout=datetime.timedelta(minutes=2))
    try:
        yield
    finally:
        dist.destroy_process_group()
