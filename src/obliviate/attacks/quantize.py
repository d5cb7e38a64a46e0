"""Quantization attack: round the weights as a downloader would, then measure again.

Forgetting that lives in small weight changes can vanish when the weights are rounded (Zhang et
al. 2025, "Catastrophic Failure of LLM Unlearning via Quantization", arXiv 2410.16454). Each
scheme rounds every matrix of a copy of the model and writes the rounded values back in float:

- ``gguf_q8_0`` / ``gguf_q4_0``: a round trip through llama.cpp's block quantizers (blocks of 32
  along the last axis, one scale each), with the ``gguf`` package's own ``quantize`` /
  ``dequantize``, as ``obliviate export --gguf --quant`` writes them. A matrix whose last axis
  is not a multiple of 32 stays in float, as the export leaves it.
- ``rtn8`` / ``rtn4``: symmetric round-to-nearest to 8 or 4 bits with one scale per output
  channel (row), the plain weight-only quantization of bitsandbytes-style int8 / AWQ baselines.

Norms and biases (1-D tensors) stay in float, as llama.cpp keeps them.
"""

from __future__ import annotations

import copy

from obliviate.errors import ConfigError

__all__ = ["SCHEMES", "gguf_round_trip", "round_to_nearest", "quantized_copy"]

# scheme -> what it is (the CLI's help); the one list of schemes
SCHEMES = {
    "gguf_q8_0": "GGUF Q8_0 round trip (blocks of 32, 8-bit)",
    "gguf_q4_0": "GGUF Q4_0 round trip (blocks of 32, 4-bit)",
    "rtn8": "8-bit round-to-nearest, one scale per output channel",
    "rtn4": "4-bit round-to-nearest, one scale per output channel",
}
_GGUF_TYPES = {"gguf_q8_0": "Q8_0", "gguf_q4_0": "Q4_0"}


def gguf_round_trip(weight, qtype_name: str):
    """``weight`` (a tensor) quantized to a GGUF block type and back (float32 tensor, same shape).

    Raises:
        ConfigError: the last axis is not a multiple of the type's block size.
    """
    import gguf
    import torch

    qtype = getattr(gguf.GGMLQuantizationType, qtype_name)
    block = gguf.GGML_QUANT_SIZES[qtype][0]
    if weight.shape[-1] % block:
        raise ConfigError(f"a GGUF {qtype_name} round trip needs a last axis that is a multiple of {block}, "
                          f"not {tuple(weight.shape)}")
    data = weight.detach().to("cpu", torch.float32).numpy()
    back = gguf.quants.dequantize(gguf.quants.quantize(data, qtype), qtype)
    return torch.from_numpy(back.reshape(data.shape).copy())


def round_to_nearest(weight, bits: int):
    """Symmetric per-row round-to-nearest: ``round(w / s) * s`` with ``s = max|w_row| / (2^(bits-1) - 1)``."""
    levels = 2 ** (bits - 1) - 1
    w = weight.detach().float()
    scale = w.abs().amax(dim=-1, keepdim=True).clamp(min=1e-12) / levels  # (rows, 1)
    return (w / scale).round().clamp(-levels, levels) * scale


def quantized_copy(model, scheme: str):
    """A copy of ``model`` with every matrix rounded by ``scheme`` (one of :data:`SCHEMES`).

    Returns:
        ``(copy, n_rounded)``: the copy and the number of matrices rounded.

    Raises:
        ConfigError: unknown scheme.
    """
    import torch

    if scheme not in SCHEMES:
        raise ConfigError(f"unknown quantization '{scheme}': use one of {', '.join(SCHEMES)}")
    rounded = copy.deepcopy(model)
    count = 0
    with torch.no_grad():
        for _, param in rounded.named_parameters():  # tied weights are listed (and rounded) once
            if param.dim() != 2:
                continue
            if scheme in _GGUF_TYPES:
                if param.shape[-1] % 32:
                    continue
                new = gguf_round_trip(param, _GGUF_TYPES[scheme])
            else:
                new = round_to_nearest(param, 8 if scheme == "rtn8" else 4)
            param.copy_(new.to(param.device, param.dtype))
            count += 1
    return rounded, count
