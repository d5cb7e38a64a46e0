"""Anchored terms for WHP: load and prune the dictionary, find it in token blocks, translate.

WHP (Eldan & Russinovich 2023, Sec. 3.2) replaces idiosyncratic expressions ("Hogwarts") by
generic counterparts ("the Academy") and takes the baseline model's predictions on the
translated block as generic labels. This module does the token-level bookkeeping: which
translated position stands for which original position, where no loss may be taken, and from
where the baseline's logits of a counterpart must be neutralised.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from obliviate.errors import DataError
from obliviate.jsonl import display_path, read_bytes

ANCHOR_SUFFIXES = (".json", ".yaml", ".yml")
# How an expression can be written in a block: as encoded alone (start of block), after a
# newline, after a space. A counterpart is inserted in the style of the occurrence it replaces.
STYLES = ("bare", "newline", "space")
_POSSESSIVE = re.compile(r"^(.+?)['’]s$")


# --------------------------------------------------------------------------- loading


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe YAML loader that refuses duplicate keys instead of keeping the last one."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, (str, int, float, bool)) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            if isinstance(key, (str, int, float, bool)):
                seen.add(key)
        return super().construct_mapping(node, deep)


def _refuse_duplicates(pairs):
    keys = [key for key, _ in pairs]
    duplicates = sorted({key for key in keys if keys.count(key) > 1})
    if duplicates:
        raise ValueError(f"duplicate key {duplicates[0]!r}")
    return dict(pairs)


def _read(path: Path):
    shown = display_path(path)
    if path.suffix.lower() not in ANCHOR_SUFFIXES:
        raise DataError(
            f"{shown}: anchored terms must be a .json, .yaml or .yml file; rename or convert it"
        )
    if not path.exists():
        raise DataError(f"{shown}: anchored-terms file not found; check the path")
    raw = read_bytes(path, "anchored-terms file")
    if b"\x00" in raw[:8192]:
        raise DataError(f"{shown}: looks like a binary file; anchored terms must be UTF-8 JSON or YAML")
    try:
        text = raw.decode("utf-8").lstrip("\ufeff")
    except UnicodeDecodeError as exc:
        raise DataError(f"{shown}: not valid UTF-8 (byte {exc.start}); convert it, e.g. "
                        "`iconv -f latin1 -t utf-8`") from exc
    try:
        if path.suffix.lower() == ".json":
            return json.loads(text, object_pairs_hook=_refuse_duplicates)
        return yaml.load(text, Loader=_UniqueKeyLoader)
    except (ValueError, yaml.YAMLError, RecursionError) as exc:
        detail = " ".join(str(exc).split())
        raise DataError(f"{shown}: cannot decode anchored terms ({detail}); fix the file") from exc


def _parse_entry(key, value, shown: str, where: str) -> tuple[str, list[str]]:
    """One `expression: counterpart(s)` entry -> (expression, distinct non-identity counterparts)."""
    if not isinstance(key, str):
        raise DataError(f"{shown}: {where}expression {key!r} is not a string; quote it")
    expression = key.strip()
    if not expression:
        raise DataError(f"{shown}: {where}an expression is empty; remove that entry")
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not values:
        raise DataError(
            f"{shown}: {where}{expression!r} must map to a counterpart string or a non-empty "
            f"list of them, got {value!r}"
        )
    counterparts: list[str] = []
    for item in values:
        if not isinstance(item, str) or not item.strip():
            raise DataError(
                f"{shown}: {where}{expression!r} has counterpart {item!r}; counterparts must be "
                "non-empty strings"
            )
        item = item.strip()
        if item != expression and item not in counterparts:
            counterparts.append(item)
    return expression, counterparts


def _merge(terms: dict[str, list[str]], expression: str, counterparts: list[str]) -> None:
    merged = terms.setdefault(expression, [])
    merged.extend(c for c in counterparts if c not in merged)


def load_anchored_terms(path) -> dict[str, list[str]]:
    """Load a dictionary of anchored terms (expression -> generic counterparts).

    Args:
        path: a .json/.yaml/.yml file holding either a mapping expression -> counterpart or
            list of counterparts; or a list of such mappings, one per text block (the GPT-4
            file of the WHP authors), merged here; or a file written by `propose` (a mapping
            with an `anchored_terms:` key; other top-level keys are ignored).

    Returns:
        expression -> distinct counterparts in order of first appearance, whitespace stripped,
        identity counterparts dropped. In the per-block format an expression that only ever
        maps to itself is dropped; in a mapping it is an error.

    Raises:
        DataError: the file is missing, undecodable, empty or malformed; the message names
            the file and the entry.
    """
    path = Path(path)
    shown = display_path(path)
    raw = _read(path)
    terms: dict[str, list[str]] = {}
    if isinstance(raw, dict) and "anchored_terms" in raw:
        raw = raw["anchored_terms"]
        if not isinstance(raw, dict):
            raise DataError(f"{shown}: 'anchored_terms' must be a mapping expression -> counterparts")
    if isinstance(raw, list):
        for index, block in enumerate(raw):
            if not isinstance(block, dict):
                raise DataError(f"{shown}: block {index} is not a mapping expression -> counterpart")
            for key, value in block.items():
                expression, counterparts = _parse_entry(key, value, shown, f"block {index}: ")
                if counterparts:
                    _merge(terms, expression, counterparts)
    elif isinstance(raw, dict):
        for key, value in raw.items():
            expression, counterparts = _parse_entry(key, value, shown, "")
            if not counterparts:
                raise DataError(
                    f"{shown}: {expression!r} only maps to itself; give it a different counterpart"
                )
            _merge(terms, expression, counterparts)
    elif raw is not None:
        raise DataError(
            f"{shown}: expected a mapping expression -> counterparts (or a list of them), "
            f"got {type(raw).__name__}"
        )
    if not terms:
        raise DataError(f"{shown}: no anchored terms in the file; add `expression: [counterpart]` entries")
    return terms


# --------------------------------------------------------------------------- pruning


def _possessive_base(word: str) -> str | None:
    found = _POSSESSIVE.match(word)
    return found.group(1) if found else None


def prune_anchored_terms(
    terms: dict[str, list[str]],
) -> tuple[dict[str, list[str]], list[tuple[str, str]]]:
    """Drop expressions that other expressions already cover.

    "Harry Potter" is dropped when "Harry" and "Potter" are both expressions (each word is
    translated on its own), and "Harry's" / "Harry’s" when "Harry" is one.

    Args:
        terms: expression -> counterparts, e.g. from `load_anchored_terms`.

    Returns:
        (kept, dropped): the kept entries in their input order, and (expression, reason) for
        each dropped one.
    """
    keys = set(terms)
    kept: dict[str, list[str]] = {}
    dropped: list[tuple[str, str]] = []
    for expression, counterparts in terms.items():
        base = _possessive_base(expression)
        words = expression.split()
        if base is not None and base in keys:
            dropped.append((expression, f"possessive of the anchored term {base!r}"))
        elif len(words) > 1 and all(w in keys or _possessive_base(w) in keys for w in words):
            dropped.append((expression, "each of its words is an anchored term itself"))
        else:
            kept[expression] = list(counterparts)
    return kept, dropped


# --------------------------------------------------------------------------- matching


@dataclass
class TranslatedBlock:
    """A token block with its anchored expressions replaced by generic counterparts.

    The loss at original position i trains the prediction of original token i+1;
    `position_map[i]` is the translated position whose next-token prediction stands for it,
    or -1 where no loss must be taken. `neutralize` holds (p, token ids): from translated
    position p on, the baseline's logits of these ids are set to the row mean.
    """

    original_ids: list[int]
    translated_ids: list[int]
    position_map: list[int]
    neutralize: list[tuple[int, list[int]]]
    counterparts: dict[str, str]
    n_matches: int


def _is_word_char(char: str) -> bool:
    return char.isalnum() or char == "_"


_FUNCTION_WORDS = frozenset("the a an of in on at to for and or his her their its my our your".split())


class AnchorMatcher:
    """Finds anchored expressions in token blocks and translates them, token by token."""

    def __init__(self, tokenizer, anchored_terms: dict[str, list[str]]):
        """Precompute every token sequence the tokenizer can write each expression as.

        Args:
            tokenizer: a Hugging Face tokenizer (the one the blocks were encoded with).
            anchored_terms: expression -> non-empty list of counterparts.

        Raises:
            DataError: the dictionary is empty or an expression has no counterparts.
        """
        if not anchored_terms:
            raise DataError("no anchored terms to match; load a dictionary with entries")
        self.tokenizer = tokenizer
        self.anchored_terms: dict[str, list[str]] = {}
        for expression, counterparts in anchored_terms.items():
            if not counterparts:
                raise DataError(f"anchored term {expression!r} has no counterparts; add one")
            self.anchored_terms[expression] = sorted(set(counterparts))
        self._newline_ids = self._encode("\n")
        self._reference_ids = self._encode("a")
        self._token_texts: dict[int, str] = {}
        self._counterpart_ids: dict[tuple[str, str], list[int]] = {}
        # first token -> [(token sequence, expression, style)], longest first
        self._patterns: dict[int, list[tuple[tuple[int, ...], str, str]]] = {}
        for expression in self.anchored_terms:
            for style, sequence in self._variants(expression).items():
                self._patterns.setdefault(sequence[0], []).append((sequence, expression, style))
        for candidates in self._patterns.values():
            candidates.sort(key=lambda candidate: -len(candidate[0]))

    def _encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def _encode_style(self, text: str, style: str) -> tuple[int, ...] | None:
        if style == "space":
            return tuple(self._encode(" " + text)) or None
        if style == "newline":
            ids, k = self._encode("\n" + text), len(self._newline_ids)
            if k and ids[:k] == self._newline_ids and len(ids) > k:
                return tuple(ids[k:])
            return None  # the newline merged into the expression: no clean variant
        return tuple(self._encode(text)) or None

    def _variants(self, text: str) -> dict[str, tuple[int, ...]]:
        variants: dict[str, tuple[int, ...]] = {}
        for style in STYLES:
            sequence = self._encode_style(text, style)
            if sequence and sequence not in variants.values():
                variants[style] = sequence
        return variants

    def _counterpart(self, counterpart: str, style: str) -> list[int]:
        key = (counterpart, style)
        if key not in self._counterpart_ids:
            sequence = self._encode_style(counterpart, style) or self._encode_style(counterpart, "bare")
            self._counterpart_ids[key] = list(sequence)
        return self._counterpart_ids[key]

    def _token_text(self, token_id: int) -> str:
        """The text a token adds after another token (keeps the leading space that
        sentencepiece tokenizers drop when decoding a token alone)."""
        if token_id not in self._token_texts:
            decode = lambda ids: self.tokenizer.decode(  # noqa: E731
                ids, skip_special_tokens=False, clean_up_tokenization_spaces=False
            )
            prefix = decode(self._reference_ids)
            both = decode(self._reference_ids + [token_id])
            text = both[len(prefix):] if prefix and both.startswith(prefix) else decode([token_id])
            self._token_texts[token_id] = text
        return self._token_texts[token_id]

    def _on_word_boundaries(self, ids: list[int], start: int, end: int) -> bool:
        """False when the match continues a word ("Ron" inside "Ronan", "Harry" in "xHarry")."""
        if start > 0:
            first, before = self._token_text(ids[start]), self._token_text(ids[start - 1])
            if first and before and _is_word_char(first[0]) and _is_word_char(before[-1]):
                return False
        if end < len(ids):
            last, after = self._token_text(ids[end - 1]), self._token_text(ids[end])
            if last and after and _is_word_char(last[-1]) and _is_word_char(after[0]):
                return False
        return True

    def _find(self, ids: list[int]) -> list[tuple[int, int, str, str]]:
        matches, i = [], 0
        while i < len(ids):
            for sequence, expression, style in self._patterns.get(ids[i], ()):
                end = i + len(sequence)
                if tuple(ids[i:end]) == sequence and self._on_word_boundaries(ids, i, end):
                    matches.append((i, end, expression, style))
                    i = end
                    break
            else:
                i += 1
        return matches

    def find(self, ids: list[int]) -> list[tuple[int, int, str]]:
        """Non-overlapping occurrences, left to right, the longest expression at each start.

        Args:
            ids: token ids of one block.

        Returns:
            (start, end, expression) with the expression at ids[start:end].
        """
        return [(s, e, expression) for s, e, expression, _ in self._find([int(t) for t in ids])]

    def translate(self, ids: list[int], rng: random.Random) -> TranslatedBlock:
        """Replace every expression in a block by one counterpart drawn for the whole block.

        Args:
            ids: token ids of one block.
            rng: draws the counterpart of each expression (in order of first occurrence).

        Returns:
            The translated block with its position map and neutralisation entries.
        """
        ids = [int(t) for t in ids]
        matches = self._find(ids)
        counterparts: dict[str, str] = {}
        for _, _, expression, _ in matches:
            if expression not in counterparts:
                counterparts[expression] = rng.choice(self.anchored_terms[expression])
        translated: list[int] = []
        position_map = [-1] * len(ids)  # positions inside a multi-token expression stay -1
        neutralize: list[tuple[int, list[int]]] = []
        seen_expressions: set[str] = set()
        seen_counterparts: set[str] = set()
        cursor = 0
        for start, end, expression, style in matches:
            for i in range(cursor, start):
                position_map[i] = len(translated)
                translated.append(ids[i])
            if expression in seen_expressions and start > 0:
                position_map[start - 1] = -1  # later occurrences: no loss on their first token
            counterpart = counterparts[expression]
            translated.extend(self._counterpart(counterpart, style))
            position_map[end - 1] = len(translated) - 1
            first_tokens = self._first_tokens(counterpart)
            if counterpart not in seen_counterparts and first_tokens:
                neutralize.append((len(translated), first_tokens))
            seen_expressions.add(expression)
            seen_counterparts.add(counterpart)
            cursor = end
        for i in range(cursor, len(ids)):
            position_map[i] = len(translated)
            translated.append(ids[i])
        if ids:
            position_map[-1] = -1  # nothing follows the last token of a block
        neutralize = [(p, tokens) for p, tokens in neutralize if p < len(translated)]
        return TranslatedBlock(ids, translated, position_map, neutralize, counterparts, len(matches))

    def _first_tokens(self, counterpart: str) -> list[int]:
        # The first tokens that mark the counterpart. Leading function words ("the Academy") are
        # skipped: neutralising " the" for the rest of a block would teach the model to avoid it.
        # A lone space token (" Jon" -> [" ", "Jon"] in small vocabularies) is skipped too.
        words = counterpart.split()
        while len(words) > 1 and words[0].lower() in _FUNCTION_WORDS:
            words = words[1:]
        firsts = {sequence[0] for sequence in self._variants(" ".join(words)).values()}
        return sorted(t for t in firsts if any(map(_is_word_char, self._token_text(t))))

    def count_occurrences(self, blocks: list[list[int]]) -> dict[str, int]:
        """How often each expression occurs in the blocks (0 for those that never do).

        Args:
            blocks: token-id blocks.

        Returns:
            expression -> number of occurrences, for every expression of the dictionary.
        """
        counts = dict.fromkeys(self.anchored_terms, 0)
        for block in blocks:
            for _, _, expression in self.find(block):
                counts[expression] += 1
        return counts
