"""How much of the unlearning gap survives an attack (pure maths, no model).

An attack A that lifts the unlearned model back towards the base may lift the base itself just
as much (plain learning, not relearning). The control is the base under the same attack: the
share of the gap that survives is ``(m(base+A) - m(unlearned+A)) / (m(base) - m(unlearned))``;
1 means the attack left the whole gap, 0 that it closed it, below 0 that the unlearned model
overtook the attacked base. The same against a gold (retain-only) model uses gold for base.
"""

from __future__ import annotations

import math

__all__ = ["surviving_gap"]


def surviving_gap(reference_attacked, unlearned_attacked, reference, unlearned, tolerance: float = 1e-12):
    """Share of the unlearning gap that survives an attack.

    Args:
        reference_attacked: m(reference + A), the base (or gold) model under the attack.
        unlearned_attacked: m(unlearned + A).
        reference: m(reference) without attack.
        unlearned: m(unlearned) without attack.
        tolerance: a gap no larger than this counts as no gap.

    Returns:
        The share, or None where it is undefined: no gap (``reference == unlearned``) or a
        missing or non-finite value.
    """
    values = (reference_attacked, unlearned_attacked, reference, unlearned)
    if any(v is None or isinstance(v, bool) or not math.isfinite(float(v)) for v in values):
        return None
    gap = float(reference) - float(unlearned)
    if abs(gap) <= tolerance:
        return None
    return (float(reference_attacked) - float(unlearned_attacked)) / gap
