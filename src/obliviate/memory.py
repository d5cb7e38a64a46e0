"""Memory per GPU of each stage and method: the theoretical need, from the model's shape.

Used by the README's multi-GPU table (``python -m obliviate.memory``) and by
``benchmarks/scale.py``, which divides measured peaks by it. The parts:

- weights: parameters x bytes per value (bf16: 2, fp32: 4);
- gradients: trainable parameters x bytes per value;
- optimizer: AdamW keeps two states per trainable parameter, in the parameters' dtype;
- reference: the frozen copy of NPO, KL, RMU (sharded like the trained model under FSDP / ZeRO-3 by
  ``obliviate.train.place_reference``; a full copy on every GPU otherwise);
- activations: kept for the backward pass, ``34 x tokens x hidden`` bytes per 16-bit layer
  (Korthikanti et al. 2022, arXiv 2205.05198, eq. 1 without the attention-score term that
  FlashAttention/SDPA does not store), scaled by bytes per value / 2, plus the logits
  (tokens x vocab: the values, their float32 copy in the loss and its gradient). Methods that
  train on retain text keep two graphs (forget and retain) until the backward pass.

FSDP and ZeRO-3 divide weights, gradients, optimizer state and the reference by the number of
processes (Accelerate's FSDP2 plan keeps the last group, embeddings, final norm and head, gathered
after a forward: up to ``2 x vocab x hidden`` more values per model, not counted); data parallelism
(DDP) keeps all of them on every GPU.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

GIB = 1024 ** 3


@dataclass(frozen=True)
class ModelShape:
    """What the estimate needs of a decoder-only model."""

    params: int  # all parameters (tied embeddings counted once)
    hidden: int
    layers: int
    vocab: int
    intermediate: int

    @classmethod
    def llama(cls, hidden: int, layers: int, vocab: int, intermediate: int, kv_heads: int, heads: int,
              tied: bool = False) -> "ModelShape":
        """A Llama-style model's shape from its configuration numbers."""
        head_dim = hidden // heads
        attention = hidden * hidden * 2 + hidden * kv_heads * head_dim * 2  # q, o; k, v
        mlp = 3 * hidden * intermediate  # gate, up, down
        per_layer = attention + mlp + 2 * hidden  # + two RMSNorm weights
        embeddings = vocab * hidden * (1 if tied else 2)
        return cls(params=layers * per_layer + embeddings + hidden, hidden=hidden, layers=layers, vocab=vocab,
                   intermediate=intermediate)

    @classmethod
    def of(cls, model) -> "ModelShape":
        """The shape of a loaded Hugging Face causal LM."""
        c = model.config
        return cls(params=sum(p.numel() for p in model.parameters()), hidden=c.hidden_size,
                   layers=c.num_hidden_layers, vocab=c.vocab_size,
                   intermediate=getattr(c, "intermediate_size", 4 * c.hidden_size))


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes per GPU, by part."""

    weights: float
    gradients: float
    optimizer: float
    reference: float
    activations: float

    @property
    def total(self) -> float:
        return self.weights + self.gradients + self.optimizer + self.reference + self.activations

    def gib(self) -> dict[str, float]:
        """Every part and the total in GiB (rounded to 0.1)."""
        return {k: round(v / GIB, 1) for k, v in {**asdict(self), "total": self.total}.items()}


def activation_bytes(shape: ModelShape, tokens: int, layers: int, bytes_per_value: int) -> float:
    """Activations kept for backward over ``layers`` decoder layers, plus the logits (see the module docstring)."""
    per_layer = 34 * tokens * shape.hidden * bytes_per_value / 2
    logits = tokens * shape.vocab * (bytes_per_value + 4 + 4)
    return layers * per_layer + logits


def estimate_training(shape: ModelShape, *, batch_size: int, seq_len: int, bytes_per_value: int = 2,
                      trainable: int | None = None, reference: bool = False, graphs: int = 1,
                      grad_layers: int | None = None, processes: int = 1, sharded: bool = False) -> MemoryEstimate:
    """Memory per GPU of one training stage.

    Args:
        shape: the model's shape.
        batch_size: examples per micro-batch per process.
        seq_len: tokens per example.
        bytes_per_value: 2 (bf16) or 4 (fp32).
        trainable: trainable parameters (default: all).
        reference: a frozen copy of the model is kept (NPO, KL, the RMU family).
        graphs: forward graphs alive at the backward pass (2 when retain text is trained on).
        grad_layers: decoder layers whose activations are kept (default: all).
        processes: GPUs.
        sharded: FSDP or ZeRO-3 (weights, gradients, optimizer state and reference divided by ``processes``).
    """
    trainable = shape.params if trainable is None else trainable
    share = processes if sharded else 1
    tokens = batch_size * seq_len
    layers = shape.layers if grad_layers is None else grad_layers
    return MemoryEstimate(weights=shape.params * bytes_per_value / share,
                          gradients=trainable * bytes_per_value / share,
                          optimizer=2 * trainable * bytes_per_value / share,
                          reference=shape.params * bytes_per_value / share if reference else 0.0,
                          activations=graphs * activation_bytes(shape, tokens, layers, bytes_per_value))


def estimate_labels(shape: ModelShape, *, batch_size: int, seq_len: int, bytes_per_value: int = 2) -> MemoryEstimate:
    """The WHP labels stage: the baseline and the reinforced model, each process whole, no gradient;
    both models' logits of a batch are held together."""
    logits = 2 * batch_size * seq_len * shape.vocab * (bytes_per_value + 4)
    return MemoryEstimate(weights=2 * shape.params * bytes_per_value, gradients=0.0, optimizer=0.0, reference=0.0,
                          activations=logits)


def estimate_method(shape: ModelShape, method: str, *, batch_size: int, seq_len: int, bytes_per_value: int = 2,
                    processes: int = 1, sharded: bool = False) -> MemoryEstimate:
    """Memory per GPU of ``obliviate unlearn --method METHOD`` (facts from the method's class).

    Methods with a ``params`` setting (the RMU family, probe_direction) train chosen layers: the
    estimate takes the MLP down-projections of 3 layers (RMU's default) and keeps the activations
    of those layers only.
    """
    import dataclasses

    from obliviate.methods import METHODS

    method_class, config_class = METHODS[method]
    graphs = 1 if method_class.retain_text == "unused" else 2
    trainable, grad_layers = None, None
    if "params" in {f.name for f in dataclasses.fields(config_class)}:
        trainable, grad_layers = 3 * shape.hidden * shape.intermediate, 3
    return estimate_training(shape, batch_size=batch_size, seq_len=seq_len, bytes_per_value=bytes_per_value,
                             trainable=trainable, reference=method_class.frozen_reference, graphs=graphs,
                             grad_layers=grad_layers, processes=processes, sharded=sharded)


# Llama-2-7B's shape (the README's 7B row).
LLAMA_7B = ModelShape.llama(hidden=4096, layers=32, vocab=32000, intermediate=11008, kv_heads=32, heads=32)


def readme_table(shape: ModelShape = LLAMA_7B, processes: int = 8, batch_size: int = 1, seq_len: int = 2048) -> str:
    """The README's table: GiB per GPU for each stage and method, bf16, DDP and FSDP/ZeRO-3."""
    from obliviate.methods import UNLEARNING_METHODS

    rows = [("WHP reinforce / finetune", lambda sharded: estimate_training(
        shape, batch_size=batch_size, seq_len=seq_len, processes=processes, sharded=sharded)),
            ("WHP labels", lambda sharded: estimate_labels(shape, batch_size=batch_size, seq_len=seq_len))]
    rows += [(f"unlearn --method {name}", lambda sharded, name=name: estimate_method(
        shape, name, batch_size=batch_size, seq_len=seq_len, processes=processes, sharded=sharded))
             for name in UNLEARNING_METHODS]
    lines = [f"| stage or method | DDP (GiB per GPU) | FSDP / ZeRO-3 on {processes} GPUs (GiB per GPU) |",
             "|---|---:|---:|"]
    for label, estimate in rows:
        lines.append(f"| {label} | {estimate(False).gib()['total']} | {estimate(True).gib()['total']} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(readme_table())
