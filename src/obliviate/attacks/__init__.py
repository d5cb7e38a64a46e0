"""Attacks on unlearning, measured against controls (``obliviate attack``).

One module per concern: :mod:`~obliviate.attacks.gap` (the share of the unlearning gap that
survives, and the gap table), :mod:`~obliviate.attacks.quantize` (weight rounding),
:mod:`~obliviate.attacks.probes` (latent-knowledge probes), :mod:`~obliviate.attacks.prompts`
(TOFU's paraphrased questions), :mod:`~obliviate.attacks.plan` (settings and input checks) and
:mod:`~obliviate.attacks.run` (the units, resume and attacks.json). Relearning reuses
:func:`obliviate.evaluation.relearning.relearn` (the one training loop).
"""

from obliviate.attacks.gap import gap_table, surviving_gap

__all__ = ["surviving_gap", "gap_table"]
