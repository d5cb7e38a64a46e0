"""Every metric type, registered once: ``METRICS[type] = Metric(spec class, compute function, family)``.

A metric family lives in its own module (``evaluation/<family>.py``): a strict spec dataclass
(the keys a suite file may set) and ``compute(model, tokenizer, spec, ctx) -> MetricResult``.
Adding a metric means writing that module and one line here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from obliviate.evaluation.cloze import ClozeSpec, compute_cloze
from obliviate.evaluation.familiarity import FamiliaritySpec, compute_familiarity
from obliviate.evaluation.general_ability import GeneralAbilitySpec, compute_general_ability
from obliviate.evaluation.mia import MembershipSpec, compute_membership
from obliviate.evaluation.perplexity import PerplexitySpec, compute_perplexity
from obliviate.evaluation.qa import QASpec, compute_qa
from obliviate.evaluation.quantization import QuantizationSpec, compute_quantization
from obliviate.evaluation.relearning import RelearningSpec, compute_relearning
from obliviate.evaluation.tofu import TofuSpec, compute_tofu
from obliviate.evaluation.token_probability import TokenProbabilitySpec, compute_token_probability
from obliviate.evaluation.toxicity import ToxicitySpec, compute_toxicity

__all__ = ["Metric", "METRICS"]


@dataclass(frozen=True)
class Metric:
    """A registered metric type.

    Attributes:
        spec: its spec dataclass (fields = the keys a suite entry may set).
        compute: ``compute(model, tokenizer, spec, ctx) -> MetricResult``.
        family: the family recorded in metrics.json (what the report groups and charts by).
    """

    spec: type
    compute: Callable
    family: str


METRICS = {
    "familiarity": Metric(FamiliaritySpec, compute_familiarity, "familiarity"),
    "token_probability": Metric(TokenProbabilitySpec, compute_token_probability, "token_probability"),
    "qa": Metric(QASpec, compute_qa, "qa"),
    "perplexity": Metric(PerplexitySpec, compute_perplexity, "perplexity"),
    "general_ability": Metric(GeneralAbilitySpec, compute_general_ability, "general"),
    "membership_inference": Metric(MembershipSpec, compute_membership, "mia"),
    "relearning": Metric(RelearningSpec, compute_relearning, "relearn"),
    "quantization": Metric(QuantizationSpec, compute_quantization, "quantization"),
    "toxicity": Metric(ToxicitySpec, compute_toxicity, "toxicity"),
    "tofu": Metric(TofuSpec, compute_tofu, "tofu"),
    "cloze": Metric(ClozeSpec, compute_cloze, "cloze"),
}
