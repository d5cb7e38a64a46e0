"""Quantization attack as a suite metric: round a copy of the model's weights, then re-run metrics.

Forgetting kept in small weight changes can vanish when a downloader quantizes the weights (Zhang
et al. 2025, arXiv 2410.16454). The schemes are those of :mod:`obliviate.attacks.quantize` (GGUF
Q8_0 / Q4_0 round trips, 8/4-bit round-to-nearest). As for the relearning metric, the value is the
mean of the re-run metrics' values after the attack; the details give each one before and after.
``obliviate attack`` runs the same attack on the base and gold models too, for the controls.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from obliviate.attacks.quantize import SCHEMES
from obliviate.errors import SkippedMetric
from obliviate.evaluation.result import MetricContext, MetricResult

__all__ = ["QuantizationSpec", "compute_quantization"]


@dataclass
class QuantizationSpec:
    name: str
    type: str = "quantization"
    group: str = "robustness"
    scheme: str = "gguf_q4_0"  # one of obliviate.attacks.quantize.SCHEMES
    metrics: list[str] = field(default_factory=list)  # names of this suite's metrics to re-run

    def check(self) -> list[tuple]:
        """Rules of the settings: ``(key, holds, rule)`` (obliviate.config convention)."""
        return [("scheme", self.scheme in SCHEMES, f"one of {', '.join(SCHEMES)}")]


def compute_quantization(model, tokenizer, spec: QuantizationSpec, ctx: MetricContext) -> MetricResult:
    """Re-run ``spec.metrics`` on a copy of the model whose matrices are rounded by ``spec.scheme``.

    Raises:
        SkippedMetric: none of the re-run metrics gave a value after the attack.
    """
    from obliviate.attacks.quantize import quantized_copy

    before = {name: ctx.results[name].get("value") for name in spec.metrics if name in ctx.results}
    rounded, count = quantized_copy(model, spec.scheme)
    after = {name: ctx.compute(rounded, tokenizer, ctx.specs[name]).value for name in spec.metrics}
    del rounded
    changed = {name: after[name] - before[name] for name in spec.metrics
               if before.get(name) is not None and after[name] is not None}
    values = [value for value in after.values() if value is not None]
    if not values:
        raise SkippedMetric(f"none of {', '.join(spec.metrics)} could be computed after the {spec.scheme} rounding")
    return MetricResult(value=sum(values) / len(values), higher_is_better=False, n=len(values),
                        settings=asdict(spec),
                        details={"before": before, "after": after, "changed": changed, "matrices_rounded": count})
