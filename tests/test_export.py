"""`obliviate export --gguf`: the file transformers reads back, its quantized forms, its provenance, bad inputs."""

from __future__ import annotations

import json
import os
import shutil

import pytest
import torch

from conftest import TINY_TEXT
from obliviate.cli import main
from obliviate.errors import ConfigError, ExportError, RunFolderError
from obliviate.export import export_gguf
from obliviate.hashing import file_sha256

os.environ["OBLIVIATE_PROGRESS"] = "0"

PROBES = ["Harry Potter went to Hogwarts.", "The farmer's dog, 42 miles\nnaïve café <|endoftext|>", " spaces  x"]


def _reload(path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)


def _logits(model, tokenizer, text=TINY_TEXT[:200]):
    ids = torch.tensor([tokenizer(text)["input_ids"]])
    with torch.no_grad():
        return model(ids).logits


def _fields(path) -> dict:
    import gguf

    reader = gguf.GGUFReader(path)
    return {key: field.contents() for key, field in reader.fields.items()}, {t.name: t.tensor_type.name
                                                                               for t in reader.tensors}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, tiny_model_dir):
    """A finished two-step NPO run on the tiny model (real manifest.json and config.yaml)."""
    folder = tmp_path_factory.mktemp("export_run")
    harry_potter, farmer = TINY_TEXT.split("\n")[:2]
    (folder / "forget.txt").write_text((harry_potter + "\n") * 3)
    (folder / "retain.txt").write_text((farmer + "\n") * 3)
    run = folder / "npo_run"
    assert main(["unlearn", "--model", str(tiny_model_dir), "--method", "npo", "--forget", str(folder / "forget.txt"),
                 "--retain", str(folder / "retain.txt"), "--out", str(run), "--context-length", "16",
                 "--set", "train.max_steps=2", "--set", "train.batch_size=4",
                 "--set", "train.learning_rate=1e-3"]) == 0
    return run


# ------------------------------------------------------------------------------------- F32 round trip
def test_f32_export_reloads_with_the_same_logits_and_tokens(tiny_model, tiny_tokenizer, tiny_model_dir, tmp_path):
    path = export_gguf(tiny_model_dir, tmp_path / "tiny.gguf")
    model, tokenizer = _reload(path)
    for text in PROBES:
        assert tokenizer(text)["input_ids"] == tiny_tokenizer(text)["input_ids"], text
    assert torch.allclose(_logits(model, tokenizer), _logits(tiny_model, tiny_tokenizer), atol=1e-5, rtol=0)

    fields, types = _fields(path)
    assert fields["general.architecture"] == "llama" and fields["general.file_type"] == 0  # ALL_F32
    assert fields["llama.block_count"] == 4 and fields["llama.embedding_length"] == 32
    assert fields["llama.attention.head_count"] == 4 and fields["llama.attention.head_count_kv"] == 2
    assert fields["llama.feed_forward_length"] == 64 and fields["llama.rope.dimension_count"] == 8
    assert fields["tokenizer.ggml.model"] == "gpt2" and fields["tokenizer.ggml.pre"] == "gpt2"
    assert len(fields["tokenizer.ggml.tokens"]) == len(tiny_tokenizer)
    assert fields["tokenizer.ggml.token_type"][:3] == [3, 3, 1]  # <|endoftext|>, <pad>: control
    assert fields["tokenizer.ggml.eos_token_id"] == tiny_tokenizer.eos_token_id
    assert fields["tokenizer.ggml.padding_token_id"] == tiny_tokenizer.pad_token_id
    assert "output.weight" not in types  # tied to token_embd, as llama.cpp reads it
    assert set(types.values()) == {"F32"}
    assert fields["obliviate.source"] == str(tiny_model_dir) and fields["obliviate.version"]


def test_qk_rows_are_in_llama_cpp_order(tiny_model, tiny_model_dir, tmp_path):
    import gguf

    path = export_gguf(tiny_model_dir, tmp_path / "tiny.gguf")
    tensor = next(t for t in gguf.GGUFReader(path).tensors if t.name == "blk.0.attn_k.weight")
    hf = tiny_model.model.layers[0].self_attn.k_proj.weight.detach().numpy()  # (2 kv heads x 8, 32)
    written = tensor.data.reshape(hf.shape)
    # per head, llama.cpp interleaves the two rotary halves: rows 0, 4, 1, 5, 2, 6, 3, 7
    order = [head * 8 + i for head in range(2) for pair in range(4) for i in (pair, pair + 4)]
    assert (written == hf[order]).all()


# ----------------------------------------------------------------------------------- quantized forms
@pytest.mark.parametrize("quant, tolerance", [("f16", 1e-3), ("q8_0", 0.03), ("q4_0", 0.3)])
def test_quantized_exports_reload_close(tiny_model, tiny_tokenizer, tiny_model_dir, tmp_path, quant, tolerance):
    path = export_gguf(tiny_model_dir, tmp_path / f"tiny-{quant}.gguf", quant=quant)
    fields, types = _fields(path)
    matrix_type = quant.upper()
    assert types["token_embd.weight"] == types["blk.3.ffn_down.weight"] == matrix_type
    assert types["blk.0.attn_norm.weight"] == types["output_norm.weight"] == "F32"  # 1-D: kept F32
    assert fields["general.file_type"] == {"f16": 1, "q8_0": 7, "q4_0": 2}[quant]
    model, tokenizer = _reload(path)
    expected = _logits(tiny_model, tiny_tokenizer)
    difference = (_logits(model, tokenizer) - expected).abs().max().item()
    assert 0 < difference < tolerance * expected.abs().max().item()


def test_quantized_files_shrink(tiny_model_dir, tmp_path):
    sizes = [export_gguf(tiny_model_dir, tmp_path / f"{q}.gguf", quant=q).stat().st_size
             for q in ("f32", "f16", "q8_0", "q4_0")]
    assert sizes == sorted(sizes, reverse=True) and sizes[-1] < sizes[0] / 4


def test_matrices_that_do_not_fit_the_block_stay_f32(tiny_tokenizer, tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tiny_tokenizer), hidden_size=48, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=4, num_key_value_heads=4, tie_word_embeddings=False)
    model = LlamaForCausalLM(config).eval()
    model.save_pretrained(tmp_path / "odd")
    tiny_tokenizer.save_pretrained(tmp_path / "odd")
    path = export_gguf(tmp_path / "odd", tmp_path / "odd-q8.gguf", quant="q8_0")
    _, types = _fields(path)
    assert types["blk.0.attn_q.weight"] == types["output.weight"] == "F32"  # rows of 48: not whole 32-blocks
    assert types["blk.0.ffn_down.weight"] == "Q8_0"  # rows of 64
    reloaded, tokenizer = _reload(path)
    assert torch.allclose(_logits(reloaded, tokenizer), _logits(model, tiny_tokenizer), atol=0.05)


# --------------------------------------------------------------------------- other Llama-family layouts
def test_qwen2_export_keeps_its_rows_and_biases(tiny_tokenizer, tmp_path):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=len(tiny_tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True)
    model = Qwen2ForCausalLM(config).eval()
    model.save_pretrained(tmp_path / "qwen")
    tiny_tokenizer.save_pretrained(tmp_path / "qwen")
    path = export_gguf(tmp_path / "qwen", tmp_path / "qwen.gguf")
    fields, types = _fields(path)
    assert fields["general.architecture"] == "qwen2" and "blk.0.attn_q.bias" in types
    reloaded, tokenizer = _reload(path)
    assert torch.allclose(_logits(reloaded, tokenizer), _logits(model, tiny_tokenizer), atol=1e-5, rtol=0)


def test_llama3_rope_scaling_is_written_as_rope_freqs(tiny_tokenizer, tmp_path):
    import gguf
    from transformers import LlamaConfig, LlamaForCausalLM

    rope = {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
            "high_freq_factor": 4.0, "original_max_position_embeddings": 64}
    config = LlamaConfig(vocab_size=len(tiny_tokenizer), hidden_size=64, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=512, rope_parameters=rope)
    LlamaForCausalLM(config).save_pretrained(tmp_path / "l3")
    tiny_tokenizer.save_pretrained(tmp_path / "l3")
    path = export_gguf(tmp_path / "l3", tmp_path / "l3.gguf")
    factors = next(t for t in gguf.GGUFReader(path).tensors if t.name == "rope_freqs.weight").data
    assert factors.shape == (16,) and factors[0] == 1.0 and factors[-1] == 8.0  # fast: unscaled; slow: factor
    assert (factors[1:] >= factors[:-1]).all()


# ------------------------------------------------------------------------------ a run, through the CLI
def test_cli_exports_a_run_with_its_provenance(finished_run, capsys):
    from obliviate.models import load_model

    assert main(["export", str(finished_run), "--gguf", "--quant", "q8_0"]) == 0
    path = finished_run / f"{finished_run.name}-Q8_0.gguf"
    printed = capsys.readouterr().out
    assert printed.startswith("wrote ") and path.name in printed and "q8_0" in printed
    fields, _ = _fields(path)
    manifest = json.loads((finished_run / "manifest.json").read_text())
    assert fields["obliviate.method"] == "npo"
    assert fields["obliviate.manifest_sha256"] == file_sha256(finished_run / "manifest.json")
    assert fields["obliviate.config_sha256"] == file_sha256(finished_run / "config.yaml")
    assert fields["obliviate.base_model"] == manifest["base_model"]["spec"]
    assert fields["obliviate.base_model_sha256"] == manifest["base_model"]["weights_sha256"]
    assert fields["obliviate.weights_sha256"] == manifest["unlearned_model"]["weights_sha256"]
    assert fields["obliviate.version"] and fields["general.name"] == finished_run.name

    out = finished_run.parent / "exported" / "npo.gguf"
    assert main(["export", str(finished_run), "--gguf", "--out", str(out)]) == 0
    unlearned = load_model(str(finished_run), dtype="float32")
    model, tokenizer = _reload(out)
    assert torch.allclose(_logits(model, tokenizer), _logits(unlearned.model, unlearned.tokenizer), atol=1e-5, rtol=0)


def test_adapter_run_is_merged_before_export(tiny_model_dir, tmp_path):
    from obliviate.models import load_model

    harry_potter, farmer = TINY_TEXT.split("\n")[:2]
    (tmp_path / "forget.txt").write_text((harry_potter + "\n") * 3)
    (tmp_path / "retain.txt").write_text((farmer + "\n") * 3)
    run = tmp_path / "lora_run"
    assert main(["unlearn", "--model", str(tiny_model_dir), "--method", "gradient_ascent",
                 "--forget", str(tmp_path / "forget.txt"), "--retain", str(tmp_path / "retain.txt"),
                 "--out", str(run), "--context-length", "16", "--lora", "--lora-save", "adapter",
                 "--set", "train.max_steps=2", "--set", "train.batch_size=4", "--set", "train.learning_rate=1e-2"]) == 0
    assert (run / "model" / "adapter_config.json").is_file()
    path = export_gguf(run)
    fields, _ = _fields(path)
    state = json.loads((run / "state.json").read_text())["stages"]["unlearn"]
    assert fields["obliviate.adapter_sha256"] == state["adapter_sha256"] and "obliviate.weights_sha256" not in fields
    merged = load_model(str(run), dtype="float32")
    model, tokenizer = _reload(path)
    expected = _logits(merged.model, merged.tokenizer)
    assert torch.allclose(_logits(model, tokenizer), expected, atol=1e-5, rtol=0)
    base = load_model(str(tiny_model_dir), dtype="float32")
    assert not torch.allclose(_logits(base.model, base.tokenizer), expected, atol=1e-5)  # the adapter is in


# ------------------------------------------------------------------------------------------ bad input
def _cli_error(argv, capsys) -> str:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's usage errors
        code = exc.code
    assert code == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in captured.err
    return lines[0]


def test_other_architectures_are_refused(tiny_tokenizer, tmp_path, capsys):
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(vocab_size=len(tiny_tokenizer), n_embd=32, n_layer=1, n_head=2, n_positions=64)
    GPT2LMHeadModel(config).save_pretrained(tmp_path / "gpt2")
    tiny_tokenizer.save_pretrained(tmp_path / "gpt2")
    out = tmp_path / "gpt2.gguf"
    line = _cli_error(["export", str(tmp_path / "gpt2"), "--gguf", "--out", str(out)], capsys)
    assert "covers Llama-family models" in line and "not 'gpt2'" in line
    assert not out.exists()
    model = GPT2LMHeadModel(config)
    from obliviate.models import LoadedModel

    with pytest.raises(ExportError, match="not 'gpt2'"):
        export_gguf(LoadedModel(model=model, tokenizer=tiny_tokenizer, spec="gpt2", path="gpt2"), out)
    assert not list(tmp_path.glob("*.gguf*"))  # no partial file left behind


def test_unfinished_run_is_refused(finished_run, tmp_path, capsys):
    run = tmp_path / "unfinished"
    shutil.copytree(finished_run, run, ignore=shutil.ignore_patterns("*.gguf"))
    manifest = json.loads((run / "manifest.json").read_text())
    (run / "manifest.json").write_text(json.dumps({**manifest, "complete": False}))
    state = json.loads((run / "state.json").read_text())
    state["stages"]["eval"]["complete"] = False
    (run / "state.json").write_text(json.dumps(state))
    line = _cli_error(["export", str(run), "--gguf"], capsys)
    assert "is not finished (stage eval not complete)" in line
    (run / "manifest.json").unlink()
    with pytest.raises(RunFolderError, match="no manifest.json"):
        export_gguf(run)
    assert not list(run.glob("*.gguf"))


def test_bad_options_are_one_line(finished_run, tmp_path, capsys):
    assert "choose the export format: --gguf" in _cli_error(["export", str(finished_run)], capsys)
    assert "invalid choice: 'q2_k'" in _cli_error(["export", str(finished_run), "--gguf", "--quant", "q2_k"], capsys)
    assert "is a folder" in _cli_error(["export", str(finished_run), "--gguf", "--out", str(tmp_path)], capsys)
    assert "does not exist" in _cli_error(["export", str(tmp_path / "nowhere"), "--gguf"], capsys)
    with pytest.raises(ConfigError, match="unknown GGUF quantization 'q5'"):
        export_gguf(finished_run, tmp_path / "x.gguf", quant="q5")


def test_unsupported_tokenizer_and_rope_scaling_are_refused(tiny_model, tiny_tokenizer, tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from obliviate.models import LoadedModel

    backend = Tokenizer(models.WordLevel(vocab={"[UNK]": 0, "Harry": 1}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    word_level = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]")
    with pytest.raises(ExportError, match="byte-level BPE tokenizers .* not this WordLevel one"):
        export_gguf(LoadedModel(model=tiny_model, tokenizer=word_level, spec="t", path="t"), tmp_path / "w.gguf")

    config = LlamaConfig(vocab_size=len(tiny_tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=4, rope_parameters={"rope_type": "yarn", "rope_theta": 10000.0,
                                                                 "factor": 4.0, "original_max_position_embeddings": 64})
    yarn = LoadedModel(model=LlamaForCausalLM(config), tokenizer=tiny_tokenizer, spec="y", path="y")
    with pytest.raises(ExportError, match="RoPE scaling 'yarn'"):
        export_gguf(yarn, tmp_path / "y.gguf")
    assert not list(tmp_path.iterdir())
