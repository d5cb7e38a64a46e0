"""GGUF export: an unlearned model as one file that llama.cpp, Ollama and LM Studio load.

Written as llama.cpp's ``convert_hf_to_gguf.py`` writes a Llama-family checkpoint: its metadata
keys, its tensor names, its Q/K row permutation and its quantization rules, so that llama.cpp
runs the file and transformers reads it back (``from_pretrained(folder, gguf_file=name)``) to the
same logits (F32). The run's provenance travels in ``obliviate.*`` metadata keys.

Covered: Llama (SmolLM2, Llama 2/3), Mistral (written as ``llama``, as llama.cpp does) and Qwen2
checkpoints with a byte-level BPE tokenizer (``tokenizer.ggml.model = gpt2``).
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

from obliviate.errors import ConfigError, ExportError, RunFolderError
from obliviate.hashing import file_sha256
from obliviate.jsonl import display_path

__all__ = ["QUANT_TYPES", "GGUF_ARCHITECTURES", "export_gguf", "gguf_provenance", "default_gguf_path"]

# --quant -> (GGMLQuantizationType name, LlamaFileType name) as llama.cpp labels its files
QUANT_TYPES = {
    "f32": ("F32", "ALL_F32"),
    "f16": ("F16", "MOSTLY_F16"),
    "q8_0": ("Q8_0", "MOSTLY_Q8_0"),
    "q4_0": ("Q4_0", "MOSTLY_Q4_0"),
}

# HF model_type -> GGUF architecture, and whether llama.cpp permutes the Q/K rows for it
GGUF_ARCHITECTURES = {
    "llama": ("llama", True),
    "mistral": ("llama", True),  # llama.cpp runs Mistral as llama
    "qwen2": ("qwen2", False),
}

# HF parameter name (without .weight/.bias) -> GGUF tensor name; {n} is the block number
_GLOBAL_TENSORS = {"model.embed_tokens": "token_embd", "model.norm": "output_norm", "lm_head": "output"}
_BLOCK_TENSORS = {
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
    "input_layernorm": "attn_norm",
    "post_attention_layernorm": "ffn_norm",
}

# HF byte-level pre-tokenizer regexes -> llama.cpp `tokenizer.ggml.pre` names
_SPLIT_PRE_TOKENIZERS = {
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
    r"|\s+(?!\S)|\s+": "llama-bpe",
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
    r"|\s+(?!\S)|\s+": "qwen2",
}


# ------------------------------------------------------------------------------------ entry point
def export_gguf(source, out_path=None, quant: str = "f32", *, trust_remote_code: bool = False) -> Path:
    """Write a Llama-family model as a GGUF file, with obliviate's provenance in its metadata.

    Args:
        source: a finished run folder (its model; an adapter run is merged into its base first),
            any model spec ``load_model`` takes, or a :class:`obliviate.models.LoadedModel`.
        out_path: the ``.gguf`` file to write; default :func:`default_gguf_path`.
        quant: one of ``QUANT_TYPES``: ``f32``, ``f16``, ``q8_0`` or ``q4_0``. 1-D tensors (norms)
            and matrices whose rows are not a whole number of 32-value blocks stay F32, as in
            llama.cpp.
        trust_remote_code: allow custom model code when loading ``source``.

    Returns:
        The path written (replaced atomically: a failed export leaves no partial file).

    Raises:
        ConfigError: an unknown ``quant``, or ``out_path`` is a folder.
        RunFolderError: ``source`` is a run folder whose run is not finished.
        ExportError: the architecture, tokenizer or RoPE scaling has no GGUF mapping here.
    """
    from obliviate.models import LoadedModel, load_model

    if quant not in QUANT_TYPES:
        raise ConfigError(f"unknown GGUF quantization '{quant}': choose one of {', '.join(QUANT_TYPES)}")
    run_dir = None if isinstance(source, LoadedModel) else _run_folder(source)
    provenance = gguf_provenance(run_dir) if run_dir else {}
    if out_path is None:
        out_path = default_gguf_path(run_dir or (source.spec if isinstance(source, LoadedModel) else source), quant)
    out_path = Path(out_path)
    if out_path.is_dir():
        raise ConfigError(f"--out '{display_path(out_path)}' is a folder: give a file name ending in .gguf")
    if isinstance(source, LoadedModel):
        loaded = source
    else:
        _check_architecture_early(run_dir / "model" if run_dir else source)
        loaded = load_model(str(source), dtype="float32", trust_remote_code=trust_remote_code)
    if not provenance:  # a model, not a run: no manifest to cite
        from obliviate import __version__

        provenance = {"obliviate.version": __version__, "obliviate.source": str(loaded.spec)}
    _write(loaded.model, loaded.tokenizer, out_path, quant, provenance,
           name=(run_dir or Path(str(loaded.spec).rstrip("/"))).name)
    return out_path


def default_gguf_path(source, quant: str) -> Path:
    """``RUN/<run name>-<QUANT>.gguf`` for a run folder, else ``<model name>-<QUANT>.gguf`` here."""
    path = Path(str(source).rstrip("/"))
    folder = path if _is_run_folder(path) else Path(".")
    return folder / f"{path.stem}-{QUANT_TYPES[quant][0]}.gguf"


def gguf_provenance(run_dir) -> dict[str, str]:
    """The ``obliviate.*`` GGUF metadata of a finished run, read from its manifest.json and config.yaml."""
    import json

    from obliviate import __version__

    run_dir = Path(run_dir)
    manifest = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
    base = manifest.get("base_model") or {}
    unlearned = manifest.get("unlearned_model") or {}
    stages = manifest.get("stages") if isinstance(manifest.get("stages"), dict) else {}
    adapter = next((info["adapter_sha256"] for info in stages.values()
                    if isinstance(info, dict) and info.get("adapter_sha256")), None)
    values = {
        "obliviate.version": __version__,
        "obliviate.method": manifest.get("method"),
        "obliviate.removed": manifest.get("removed"),
        "obliviate.base_model": base.get("spec"),
        "obliviate.base_model_sha256": base.get("weights_sha256"),
        "obliviate.weights_sha256": unlearned.get("weights_sha256"),  # the HF weights this file was made from
        "obliviate.adapter_sha256": adapter,  # adapter runs: the LoRA adapter merged into the base
        "obliviate.manifest_sha256": file_sha256(run_dir / "manifest.json"),
        "obliviate.config_sha256": file_sha256(run_dir / "config.yaml")
        if (run_dir / "config.yaml").is_file() else None,
    }
    return {key: str(value) for key, value in values.items() if value not in (None, "")}


# -------------------------------------------------------------------------------- run folders
def _is_run_folder(path: Path) -> bool:
    return path.is_dir() and (path / "config.yaml").is_file() and (
        (path / "state.json").is_file() or (path / "manifest.json").is_file())


def _run_folder(source) -> Path | None:
    """``source`` as a run folder whose run is finished; None when it is not a run folder."""
    import json

    path = Path(str(source)).expanduser()
    if not _is_run_folder(path):
        return None
    shown = display_path(path)
    try:
        manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunFolderError(f"run '{shown}' is not finished (no manifest.json): run it to the end "
                             "(the same command again resumes it), then export") from None
    except (OSError, ValueError) as exc:
        raise RunFolderError(f"cannot read '{shown}/manifest.json' ({exc}): run the run again to rewrite it") from exc
    if not isinstance(manifest, dict) or not manifest.get("complete"):
        missing = [name for name, info in json.loads((path / "state.json").read_text()).get("stages", {}).items()
                   if not info.get("complete")] if (path / "state.json").is_file() else []
        which = f" (stage {', '.join(missing)} not complete)" if missing else ""
        raise RunFolderError(f"run '{shown}' is not finished{which}: run the same command again to finish it, "
                             "then export")
    if not (path / "model").is_dir():
        raise RunFolderError(f"run '{shown}' holds no model/ folder: it was removed; run the run again")
    return path


def _check_architecture_early(model_path) -> None:
    """Refuse an unsupported architecture from config.json alone, before loading any weights."""
    import json

    config = Path(str(model_path)).expanduser() / "config.json"
    if config.is_file():
        try:
            model_type = json.loads(config.read_text(encoding="utf-8")).get("model_type")
        except (OSError, ValueError, AttributeError):
            return
        _gguf_architecture(model_type)


def _gguf_architecture(model_type) -> tuple[str, bool]:
    if model_type not in GGUF_ARCHITECTURES:
        raise ExportError(f"GGUF export covers Llama-family models ({', '.join(GGUF_ARCHITECTURES)}), "
                          f"not '{model_type}': export it with llama.cpp's convert_hf_to_gguf.py instead")
    return GGUF_ARCHITECTURES[model_type]


# -------------------------------------------------------------------------------------- writing
def _write(model, tokenizer, out_path: Path, quant: str, provenance: dict, name: str) -> None:
    import gguf

    config = model.config
    arch, permute_qk = _gguf_architecture(config.model_type)
    vocab = _vocabulary(tokenizer, model.get_input_embeddings().weight.shape[0])
    tensors = list(_tensors(model, permute_qk))
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out_path.parent, prefix=f".{out_path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        writer = gguf.GGUFWriter(tmp, arch)
        writer.add_name(name)
        writer.add_file_type(getattr(gguf.LlamaFileType, QUANT_TYPES[quant][1]))
        if quant not in ("f32", "f16"):
            writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
        _add_hyperparameters(writer, config, len(vocab["tokens"]))
        _add_vocabulary(writer, vocab)
        for key, value in provenance.items():
            writer.add_string(key, value)
        for gguf_name, data in tensors + _rope_scaling_tensors(config):
            _add_tensor(writer, gguf_name, data, quant)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(tmp, out_path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _rope(config) -> tuple[float, dict]:
    """(rope theta, scaling settings) across transformers versions (``rope_parameters`` in 5.x)."""
    parameters = dict(getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {})
    theta = parameters.get("rope_theta", getattr(config, "rope_theta", 10000.0))
    return float(theta), parameters


def _head_dim(config) -> int:
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads


def _add_hyperparameters(writer, config, n_vocab: int) -> None:
    import gguf

    head_dim = _head_dim(config)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(getattr(config, "num_key_value_heads", None) or config.num_attention_heads)
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_vocab_size(n_vocab)
    writer.add_rope_dimension_count(head_dim)
    if head_dim != config.hidden_size // config.num_attention_heads:  # e.g. Mistral-Nemo
        writer.add_key_length(head_dim)
        writer.add_value_length(head_dim)
    theta, scaling = _rope(config)
    writer.add_rope_freq_base(theta)
    rope_type = scaling.get("rope_type", scaling.get("type", "default"))
    if rope_type == "linear":
        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(float(scaling["factor"]))
    elif rope_type not in ("default", "llama3"):  # llama3 is written as the rope_freqs tensor
        raise ExportError(f"RoPE scaling '{rope_type}' has no GGUF mapping here (default, linear and llama3 have): "
                          "export with llama.cpp's convert_hf_to_gguf.py instead")


def _rope_scaling_tensors(config) -> list[tuple[str, object]]:
    """Llama 3.1's RoPE scaling as llama.cpp stores it: one factor per rotary frequency (``rope_freqs``)."""
    import numpy as np

    theta, scaling = _rope(config)
    if scaling.get("rope_type", scaling.get("type")) != "llama3":
        return []
    dim = _head_dim(config)
    factor = scaling.get("factor", 8.0)
    low_freq_factor, high_freq_factor = scaling.get("low_freq_factor", 1.0), scaling.get("high_freq_factor", 4.0)
    old_context = scaling.get("original_max_position_embeddings", 8192)
    low_freq_wavelen, high_freq_wavelen = old_context / low_freq_factor, old_context / high_freq_factor
    factors = []
    for freq in 1.0 / theta ** (np.arange(0, dim, 2, dtype=np.float64) / dim):
        wavelen = 2 * math.pi / freq
        if wavelen < high_freq_wavelen:
            factors.append(1.0)
        elif wavelen > low_freq_wavelen:
            factors.append(factor)
        else:
            smooth = (old_context / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
            factors.append(1 / ((1 - smooth) / factor + smooth))
    return [("rope_freqs.weight", np.asarray(factors, dtype=np.float32))]


def _permute_qk(weights, n_head: int):
    """llama.cpp's Q/K row order: each head's rotary halves interleaved (convert_hf_to_gguf.py, LlamaModel.permute).

    transformers' GGUF loader undoes exactly this (LlamaTensorProcessor._reverse_permute_weights).
    """
    return (weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
            .swapaxes(1, 2)
            .reshape(weights.shape))


def _tensors(model, permute_qk: bool) -> list[tuple[str, object]]:
    """``(GGUF name, float32 numpy array)`` for every parameter, in llama.cpp's names and row order."""
    import numpy as np

    config = model.config
    state = model.state_dict()
    tied = bool(getattr(config, "tie_word_embeddings", False))
    n_kv_head = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    tensors = []
    for hf_name, tensor in state.items():
        stem, _, suffix = hf_name.rpartition(".")
        if (stem == "lm_head" and tied) or ".rotary_emb." in hf_name:
            continue  # tied: llama.cpp reads token_embd when there is no output; RoPE is recomputed
        if stem in _GLOBAL_TENSORS:
            gguf_stem = _GLOBAL_TENSORS[stem]
        else:
            parts = stem.split(".", 3)  # model.layers.N.<module path>
            if len(parts) < 4 or parts[:2] != ["model", "layers"] or parts[3] not in _BLOCK_TENSORS:
                raise ExportError(f"tensor '{hf_name}' has no GGUF name in the {config.model_type} mapping: "
                                  "export this model with llama.cpp's convert_hf_to_gguf.py instead")
            gguf_stem = f"blk.{int(parts[2])}.{_BLOCK_TENSORS[parts[3]]}"
        data = tensor.detach().to("cpu").float().numpy()
        if permute_qk and gguf_stem.endswith(".attn_q"):
            data = _permute_qk(data, config.num_attention_heads)
        elif permute_qk and gguf_stem.endswith(".attn_k"):
            data = _permute_qk(data, n_kv_head)
        tensors.append((f"{gguf_stem}.{suffix}", np.ascontiguousarray(data, dtype=np.float32)))
    return tensors


def _add_tensor(writer, name: str, data, quant: str) -> None:
    """Add one tensor in the export's type; norms, biases and odd-shaped matrices stay F32 (as llama.cpp)."""
    import gguf

    qtype = getattr(gguf.GGMLQuantizationType, QUANT_TYPES[quant][0])
    block_size = gguf.GGML_QUANT_SIZES[qtype][0]
    if quant == "f32" or data.ndim < 2 or data.shape[-1] % block_size:
        writer.add_tensor(name, data)
    elif quant == "f16":
        writer.add_tensor(name, data.astype("float16"))
    else:
        writer.add_tensor(name, gguf.quants.quantize(data, qtype), raw_dtype=qtype)


# ------------------------------------------------------------------------------------ tokenizer
def _tokenizer_json(tokenizer) -> dict:
    import json

    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise ExportError(f"the tokenizer ({type(tokenizer).__name__}) has no tokenizer.json form: GGUF export "
                          "needs a fast (tokenizers) byte-level BPE tokenizer")
    return json.loads(backend.to_str())


def _pre_tokenizer_name(spec: dict) -> str:
    """llama.cpp's name (``tokenizer.ggml.pre``) for a byte-level BPE pre-tokenizer."""
    pre = spec.get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers", []) if pre.get("type") == "Sequence" else [pre]
    kinds = [step.get("type") for step in steps]
    if kinds == ["ByteLevel"] and steps[0].get("use_regex", True):
        return "gpt2"
    if kinds == ["Digits", "ByteLevel"] and steps[0].get("individual_digits") and steps[1].get("use_regex", True):
        return "smollm"  # GPT-2's split after every digit on its own (SmolLM, SmolLM2)
    if kinds == ["Split", "ByteLevel"] and not steps[1].get("use_regex", True):
        name = _SPLIT_PRE_TOKENIZERS.get((steps[0].get("pattern") or {}).get("Regex"))
        if name:
            return name
    raise ExportError(f"the tokenizer's pre-tokenizer ({' + '.join(map(str, kinds)) or 'none'}) is not one GGUF "
                      "export knows (GPT-2, SmolLM, Llama 3 or Qwen2 byte-level splits): export with llama.cpp's "
                      "convert_hf_to_gguf.py instead")


def _vocabulary(tokenizer, n_rows: int) -> dict:
    """Token list, types, merges and special ids in llama.cpp's byte-level BPE (``gpt2``) form."""
    import gguf

    spec = _tokenizer_json(tokenizer)
    model = spec.get("model") or {}
    if model.get("type") != "BPE" or model.get("byte_fallback"):
        raise ExportError(f"GGUF export covers byte-level BPE tokenizers (GPT-2 style), not this "
                          f"{model.get('type')}{' byte-fallback' if model.get('byte_fallback') else ''} one "
                          "(SentencePiece-style): export with llama.cpp's convert_hf_to_gguf.py instead")
    pre = _pre_tokenizer_name(spec)
    by_id = {index: token for token, index in tokenizer.get_vocab().items()}
    if by_id and max(by_id) >= n_rows:
        raise ExportError(f"the tokenizer has token id {max(by_id)} but the model's embedding only {n_rows} rows: "
                          "the model and tokenizer do not belong together")
    added = {index: token for index, token in tokenizer.added_tokens_decoder.items()}
    tokens, types = [], []
    for index in range(n_rows):
        if index not in by_id:  # embedding rows past the tokenizer, as llama.cpp pads them
            tokens.append(f"[PAD{index}]")
            types.append(gguf.TokenType.UNUSED)
        elif index in added:
            tokens.append(added[index].content)
            types.append(gguf.TokenType.CONTROL if added[index].special else gguf.TokenType.USER_DEFINED)
        else:
            tokens.append(by_id[index])
            types.append(gguf.TokenType.NORMAL)
    merges = [merge if isinstance(merge, str) else " ".join(merge) for merge in model.get("merges", [])]
    probe = "a"
    with_specials = tokenizer(probe)["input_ids"]
    plain = tokenizer(probe, add_special_tokens=False)["input_ids"]
    return {
        "pre": pre, "tokens": tokens, "types": types, "merges": merges,
        "bos": tokenizer.bos_token_id, "eos": tokenizer.eos_token_id,
        "unk": tokenizer.unk_token_id, "pad": tokenizer.pad_token_id,
        "add_bos": len(with_specials) > len(plain) and with_specials[0] == tokenizer.bos_token_id,
        "add_eos": len(with_specials) > len(plain) and with_specials[-1] == tokenizer.eos_token_id,
        "chat_template": tokenizer.chat_template if isinstance(tokenizer.chat_template, str) else None,
    }


def _add_vocabulary(writer, vocab: dict) -> None:
    # No token scores: llama.cpp writes none for byte-level BPE, whose merges give the order.
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(vocab["pre"])
    writer.add_token_list(vocab["tokens"])
    writer.add_token_types([int(t) for t in vocab["types"]])
    writer.add_token_merges(vocab["merges"])
    for key, add in (("bos", writer.add_bos_token_id), ("eos", writer.add_eos_token_id),
                     ("unk", writer.add_unk_token_id), ("pad", writer.add_pad_token_id)):
        if vocab[key] is not None:
            add(vocab[key])
    writer.add_add_bos_token(vocab["add_bos"])
    writer.add_add_eos_token(vocab["add_eos"])
    if vocab["chat_template"]:
        writer.add_chat_template(vocab["chat_template"])
