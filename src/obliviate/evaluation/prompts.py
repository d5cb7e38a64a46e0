"""Prompt files: prompts with the reference words a model that knows the target would produce.

Read by the familiarity and token-probability metrics (``{"prompt", "references"}`` JSONL).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from obliviate.errors import DataError
from obliviate.jsonl import jsonl_objects

__all__ = ["PromptItem", "load_prompt_file", "require_items", "reference_continuation"]


@dataclass
class PromptItem:
    """A prompt with the reference words that a model knowing the target would produce.

    Attributes:
        prompt: text the model continues.
        references: expected answer first, then other words that reveal familiarity.
        meta: every other key of the JSONL line (e.g. `subtlety`).
    """

    prompt: str
    references: list[str]
    meta: dict = field(default_factory=dict)


def load_prompt_file(path) -> list[PromptItem]:
    """Read a JSONL file of `{"prompt": str, "references": [str, ...], ...}` lines (blank lines skipped).

    Args:
        path: the JSONL file.

    Returns:
        One `PromptItem` per line, in file order; keys other than prompt/references go to `meta`.

    Raises:
        DataError: the file is missing, unreadable or empty, a line is not a JSON object, its
            `prompt` is missing or blank, or its `references` is not a non-empty list of non-empty
            strings. The message names the file and line.
    """
    path = Path(path)
    items = []
    for where, record in jsonl_objects(path, "prompt file", '{"prompt": ..., "references": [...]}'):
        prompt = record.pop("prompt", None)
        if not isinstance(prompt, str) or not prompt.strip():
            raise DataError(f'{where}: "prompt" is missing or empty; give each line a non-empty prompt string.')
        references = record.pop("references", None)
        if (
            not isinstance(references, list)
            or not references
            or not all(isinstance(ref, str) and ref.strip() for ref in references)
        ):
            raise DataError(
                f'{where}: "references" must be a non-empty list of non-empty strings, got {references!r}.'
            )
        items.append(PromptItem(prompt=prompt, references=references, meta=record))
    if not items:
        raise DataError(f"prompt file {path} holds no prompts; add one JSON object per line.")
    return items


def require_items(items) -> None:
    if not items:
        raise DataError("no prompt items to evaluate; load at least one with load_prompt_file.")


def reference_continuation(prompt: str, reference: str) -> str:
    """The continuation scored after `prompt`: `" " + reference`, unless the prompt ends with whitespace."""
    return reference if prompt[-1:].isspace() else " " + reference
