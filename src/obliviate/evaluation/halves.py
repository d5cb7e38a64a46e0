"""Tune / held-out halves of a dev evaluation: a fixed rule, so tuning cannot fit the held-out half.

Every prompt (or trivia question) belongs to one half, decided by its own text alone:
``sha256(SALT + key)`` (UTF-8), first byte even -> ``tune``, odd -> ``heldout``. The key is the item's
``split_key`` field when it has one (prompts built from a trivia question carry the question, so
the same rule splits the trivia file for any code that trains on it), else the prompt. Adding or
removing prompts never moves another prompt to the other half. ``SALT`` was fixed once, from the
files' prompts alone (no model scored): the first ``obliviate-hp-dev-N:`` that splits every shipped
dev file (and the WHP authors' 20 dev prompts) within 10% of even; an unsalted hash left 26 of 40
completion prompts in one half. Settings searches may look at
``tune`` metrics only; ``heldout`` numbers are for reports.
"""

from __future__ import annotations

import hashlib

from obliviate.errors import DataError

__all__ = ["HALVES", "SALT", "dev_half", "item_half", "select_half", "check_half", "half_metrics"]

HALVES = ("tune", "heldout")
SALT = "obliviate-hp-dev-60:"  # fixed: changing it reshuffles the halves that tuning must not see


def dev_half(key: str) -> str:
    """The half of a text: ``"tune"`` when the first byte of sha256(SALT + text) is even, else ``"heldout"``."""
    return HALVES[hashlib.sha256((SALT + key).encode("utf-8")).digest()[0] % 2]


def item_half(item) -> str:
    """The half of a prompt item (``PromptItem``): by its ``split_key`` meta field, else its prompt."""
    return dev_half(item.meta.get("split_key") or item.prompt)


def select_half(items: list, half: str | None) -> list:
    """The items of one half (all of them for None), in file order.

    Raises:
        DataError: the half holds no item.
    """
    if half is None:
        return items
    chosen = [item for item in items if item_half(item) == half]
    if not chosen:
        raise DataError(f"no prompt falls in the '{half}' half ({len(items)} prompts in all); add prompts or "
                        "set half: null")
    return chosen


def check_half(half) -> tuple:
    """The ``check()`` rule of a spec's ``half`` field."""
    return ("half", half is None or half in HALVES, "tune, heldout or null (all prompts)")


def half_metrics(suite, half: str) -> list[str]:
    """Names of a suite's metrics in one half: by the spec's ``half`` field, else by the name's
    ``_tune`` / ``_heldout`` suffix (metrics split by text span, e.g. general perplexity).

    Args:
        suite: an ``obliviate.evaluation.suite.Suite``.
        half: ``"tune"`` or ``"heldout"``.
    """
    if half not in HALVES:
        raise ValueError(f"half must be one of {', '.join(HALVES)}, not {half!r}")
    return [spec.name for spec in suite.metrics
            if (getattr(spec, "half", None) or next((h for h in HALVES if spec.name.endswith(f"_{h}")), None)) == half]
