"""Draft a dictionary of anchored terms for the user to edit (`obliviate anchors propose`).

WHP (Eldan & Russinovich 2023, Sec. 3.2) anchors on expressions idiosyncratic to the target
text. We rank candidate words and short capitalised phrases by how much more frequent they are
in the target than in a reference corpus and, given a base and a reinforced model, by how much
more the reinforced model expects them; then draw generic counterparts from built-in pools.
"""

from __future__ import annotations

import json
import math
import random
import re
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path

import yaml

from obliviate.errors import ConfigError, DataError
from obliviate.jsonl import check_output_file, display_path, write_text_atomic

MAX_CONTEXTS = 20  # occurrences scored per expression by the models
CONTEXT_TOKENS = 64  # tokens of a scored window, expression included
SHORTLIST_FACTOR = 3  # the models score the top_k * 3 expressions by frequency only

_WORD = re.compile(r"[^\W\d_]+(?:['’\-][^\W\d_]+)*")
_SENTENCE_START = re.compile(r"[.!?\n\"“‘':]")
STOPWORDS = set(
    "a an the and or but if then than so as of in on at to for from by with without into onto "
    "out up down over under about after before again all any both each few more most other some "
    "such no nor not only own same too very can will just don should now i me my we our you your "
    "he him his she her it its they them their what which who whom this that these those am is "
    "are was were be been being have has had do does did oh yes well there here when where why "
    "how said one two also would could against between through during while until upon like "
    "because since though although".split()
)
TITLES = {"Mr", "Mrs", "Ms", "Miss", "Dr", "Professor", "Prof", "Madam", "Madame", "Sir",
          "Lady", "Lord", "Aunt", "Uncle", "Captain"}
_ABBREVIATIONS = {"Mr", "Mrs", "Ms", "Dr", "Prof", "St"}
PLACE_WORDS = {"School", "Hall", "Street", "Castle", "Alley", "Forest", "Academy", "Lane", "Road",
               "Drive", "House", "Village", "Tower", "Lake", "Inn", "Shop", "Station", "Hospital",
               "Ministry", "Bank", "Manor", "Park", "Square", "Hill", "Valley", "Cottage",
               "Market", "Island", "Prison", "Palace", "Bridge", "Wood", "Woods", "Library"}
_PREPOSITIONS = {"in", "at", "to", "into", "from", "near", "inside", "outside", "towards",
                 "toward", "through", "reach", "reached", "visit", "visited", "left"}
_SPEECH = {"said", "asked", "replied", "whispered", "shouted", "yelled", "told", "thought",
           "muttered", "answered", "cried", "called", "nodded", "smiled", "laughed", "sighed"}


@dataclass
class _Stats:
    count: int = 0
    initial: int = 0  # occurrences at a sentence start (a capital there says nothing)
    title_before: int = 0
    speech_near: int = 0
    prep_before: int = 0
    first_of_pair: int = 0  # followed by another capitalised word ("Harry" Potter)
    second_of_pair: int = 0  # preceded by one (Harry "Potter")
    occurrences: list[tuple[int, int, int]] = field(default_factory=list)  # (text, start, end)


@dataclass
class _Word:
    text: str  # possessive 's stripped
    start: int
    end: int
    initial: bool
    joined: bool  # separated from the previous word by spaces only (may continue a phrase)
    possessive: bool


def _words(text: str) -> list[_Word]:
    words: list[_Word] = []
    for found in _WORD.finditer(text):
        raw, start = found.group(), found.start()
        possessive = len(raw) > 2 and raw[-2:] in ("'s", "’s")
        prev = words[-1] if words else None
        gap = text[prev.end + 2 * prev.possessive : start] if prev else ""
        after_abbreviation = prev is not None and prev.text in _ABBREVIATIONS and gap == ". "
        initial = prev is None or (bool(_SENTENCE_START.search(gap)) and not after_abbreviation)
        joined = prev is not None and not prev.possessive and (gap == " " or after_abbreviation)
        word = raw[:-2] if possessive else raw
        words.append(_Word(word, start, start + len(word), initial, joined, possessive))
    return words


def _is_capitalised(word: str) -> bool:
    return word[:1].isupper() and word.lower() not in STOPWORDS


def _record(stats: dict[str, _Stats], key: str, words: list[_Word], i: int, j: int,
            where: int | None) -> None:
    """Count the expression made of words[i..j] with the clues its neighbours give; keep the
    occurrence unless `where` (the index of the text) is None."""
    entry = stats.setdefault(key, _Stats())
    entry.count += 1
    entry.initial += words[i].initial
    before = words[i - 1].text if i > 0 and not words[i].initial else ""
    after = words[j + 1] if j + 1 < len(words) else None
    entry.title_before += before in TITLES
    entry.prep_before += before.lower() in _PREPOSITIONS
    entry.speech_near += before in _SPEECH or (after is not None and after.text in _SPEECH)
    entry.first_of_pair += after is not None and after.joined and _is_capitalised(after.text)
    entry.second_of_pair += bool(before) and words[i].joined and _is_capitalised(before)
    if where is not None:
        entry.occurrences.append((where, words[i].start, words[j].end))


def _record_phrases(stats, text: str, words: list[_Word], run: list[int], where) -> None:
    """Every 2-3 word phrase inside a run of joined capitalised words."""
    for first in range(len(run)):
        for last in range(first + 1, min(first + 3, len(run))):
            a, b = words[run[first]], words[run[last]]
            phrase = " ".join(text[a.start : b.end].split())  # keeps "Mr. Weasley"
            _record(stats, phrase, words, run[first], run[last], where)


def _single_candidate(word: str) -> bool:
    if len(word) < 2 or word.lower() in STOPWORDS or word in TITLES or word in PLACE_WORDS:
        return False
    return not (word.islower() and word.endswith(("ed", "ly")))  # verbs and adverbs: no objects


def _count(texts: list[str], words_per_text: list[list[_Word]], common: set[str],
           keep_occurrences: bool) -> dict[str, _Stats]:
    """Single words and 2-3 word capitalised phrases -> their stats."""
    stats: dict[str, _Stats] = {}
    for index, (text, words) in enumerate(zip(texts, words_per_text)):
        where = index if keep_occurrences else None
        run: list[int] = []  # indices of the current run of joined capitalised words
        for i, word in enumerate(words):
            if _single_candidate(word.text):
                _record(stats, word.text, words, i, i, where)
            # "Then Harry ...": a common word capitalised by its position starts no phrase
            extends = _is_capitalised(word.text) and not (word.initial and word.text.lower() in common)
            if extends and run and word.joined:
                run.append(i)
            else:
                _record_phrases(stats, text, words, run, where)
                run = [i] if extends else []
            if word.possessive:  # "Harry Potter's": the phrase ends here
                _record_phrases(stats, text, words, run, where)
                run = []
        _record_phrases(stats, text, words, run, where)
    return stats


def _kind(expression: str, stats: _Stats, common: set[str]) -> str:
    """person name / place / object / other, from the expression and its neighbours."""
    words = expression.split()
    if expression[:1].islower():
        return "object"
    if any(w in PLACE_WORDS for w in words):
        return "place"
    if words[0].rstrip(".") in TITLES or stats.title_before or stats.speech_near:
        return "name"
    if stats.prep_before * 2 >= stats.count:
        return "place"
    if any(w.lower() in common for w in words):
        return "other"  # "Dark Arts", "Elder Wand": capitalised common words
    return "name"  # a word never written in lower case: most likely someone's name


def load_generic_pools() -> dict[str, list[str]]:
    """The built-in pools of generic counterparts (`resources/generic_pools.yaml`).

    Returns:
        pool name -> entries: first_names, surnames, places, place_stems, objects, other.
    """
    resource = files("obliviate") / "resources" / "generic_pools.yaml"
    pools = yaml.safe_load(resource.read_text(encoding="utf-8"))
    for name in ("first_names", "surnames", "places", "place_stems", "objects", "other"):
        entries = pools.get(name) if isinstance(pools, dict) else None
        if not entries or not all(isinstance(e, str) and e.strip() for e in entries):
            raise DataError(f"{resource}: pool {name!r} must be a non-empty list of strings; "
                            "reinstall obliviate or fix the file")
    return pools


def _plural(word: str) -> str:
    if word.endswith(("s", "x", "ch", "sh")):
        return word + "es"
    return word[:-1] + "ies" if word.endswith("y") and word[-2:-1] not in "aeiou" else word + "s"


def _draw_counterparts(expression: str, kind: str, stats: _Stats, pools, forbidden: set[str],
                       n: int, seed: int) -> list[str]:
    rng = random.Random(f"{seed}:{expression}")  # independent of the other candidates

    def pool(name):
        return sorted(e for e in pools[name] if e.lower() not in forbidden)

    words = expression.split()
    if kind == "name" and words[0].rstrip(".") in TITLES and len(words) > 1:
        options = [f"{words[0]} {s}" for s in pool("surnames")]
    elif kind == "name" and len(words) > 1:
        firsts, lasts = pool("first_names"), pool("surnames")
        k = min(n, len(firsts), len(lasts))
        options = [f"{f} {s}" for f, s in zip(rng.sample(firsts, k), rng.sample(lasts, k))]
    elif kind == "name":
        surname = stats.title_before + stats.second_of_pair > stats.first_of_pair
        options = pool("surnames" if surname else "first_names")
    elif kind == "place" and len(words) > 1 and words[-1] in PLACE_WORDS:
        options = [f"{stem} {words[-1]}" for stem in pool("place_stems")]
    elif kind == "place":
        options = pool("places")
    elif kind == "object":
        plural = expression.endswith("s") and not expression.endswith("ss")
        options = [_plural(o) if plural else o for o in pool("objects")]
    else:
        options = pool("other")
    options = [o for o in options if o.lower() != expression.lower()]
    return rng.sample(options, min(n, len(options)))


def _zscores(values: list[float]) -> list[float]:
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
    return [(v - mean) / std if std > 0 else 0.0 for v in values]


def _sequence_logprobs(model, sequences: list[tuple[list[int], int]], pad_id: int,
                       batch_size: int = 8) -> list[float]:
    """Sum of log p(last n tokens | the tokens before) for each (ids, n)."""
    import torch

    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    sums: list[float] = []
    with torch.no_grad():
        for b in range(0, len(sequences), batch_size):
            batch = sequences[b : b + batch_size]
            width = max(len(ids) for ids, _ in batch)
            input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
            mask = torch.zeros_like(input_ids)
            for row, (ids, _) in enumerate(batch):  # right padding: positions stay 0..len-1
                input_ids[row, : len(ids)] = torch.tensor(ids)
                mask[row, : len(ids)] = 1
            logits = model(input_ids=input_ids.to(device), attention_mask=mask.to(device)).logits
            logprobs = logits.float().log_softmax(-1)[:, :-1]  # (B, T-1, V)
            picked = logprobs.gather(-1, input_ids[:, 1:].to(device).unsqueeze(-1)).squeeze(-1)
            for row, (ids, n) in enumerate(batch):
                sums.append(picked[row, len(ids) - 1 - n : len(ids) - 1].sum().item())
    model.train(was_training)
    return sums


def _scoring_windows(stats: _Stats, texts: list[str], tokenizer, rng: random.Random):
    """Up to MAX_CONTEXTS (context + expression ids, expression length) windows."""
    occurrences = stats.occurrences
    if len(occurrences) > MAX_CONTEXTS:
        occurrences = sorted(rng.sample(occurrences, MAX_CONTEXTS))
    windows = []
    for where, start, end in occurrences:
        left = texts[where][max(0, start - 8 * CONTEXT_TOKENS) : start]
        context = left.rstrip(" ")
        expression = left[len(context) :] + texts[where][start:end]  # " Hogwarts"
        target = tokenizer.encode(expression, add_special_tokens=False)
        context_ids = tokenizer.encode(context, add_special_tokens=False) if context else []
        if not context_ids and tokenizer.bos_token_id is not None:
            context_ids = [tokenizer.bos_token_id]
        keep = max(1, CONTEXT_TOKENS - len(target))
        if context_ids and target:
            windows.append((context_ids[-keep:] + target, len(target)))
    return windows


def _model_scores(candidates, target_texts, tokenizer, base_model, reinforced_model, seed):
    """Mean over occurrences of log p_reinforced(expression | context) - log p_base(...)."""
    rng = random.Random(seed)
    windows, owners = [], []
    for index, stats in enumerate(candidates):
        for window in _scoring_windows(stats, target_texts, tokenizer, rng):
            windows.append(window)
            owners.append(index)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    base = _sequence_logprobs(base_model, windows, pad_id)
    reinforced = _sequence_logprobs(reinforced_model, windows, pad_id)
    gains: list[list[float]] = [[] for _ in candidates]
    for owner, b, r in zip(owners, base, reinforced):
        gains[owner].append(r - b)
    return [sum(g) / len(g) if g else None for g in gains]


def propose_anchored_terms(target_texts: list[str], reference_texts: list[str], tokenizer,
                           base_model=None, reinforced_model=None, top_k: int = 100,
                           min_count: int = 3, seed: int = 0, n_counterparts: int = 3) -> list[dict]:
    """Rank expressions specific to the target text and draw generic counterparts for them.

    Args:
        target_texts: texts of the knowledge to forget.
        reference_texts: generic texts to compare word frequencies against.
        tokenizer: the models' tokenizer (used only when both models are given).
        base_model, reinforced_model: give both to add the model score (WHP's reinforced
            model knows the target better than the base model), or neither.
        top_k: number of expressions returned.
        min_count: least number of occurrences in the target texts.
        seed: makes the sampled contexts and drawn counterparts reproducible.
        n_counterparts: counterparts drawn per expression.

    Returns:
        Rows, best first: {expression, counterparts, kind, count_target, count_reference,
        freq_score, model_score (None without models), score}.

    Raises:
        DataError: no target or reference text. ConfigError: only one model, or bad counts.
    """
    if not any(isinstance(t, str) and t.strip() for t in target_texts or []):
        raise DataError("no target text to propose anchored terms from; give the target corpus")
    if not any(isinstance(t, str) and t.strip() for t in reference_texts or []):
        raise DataError("no reference text to compare frequencies against; give a generic corpus "
                        "(e.g. `--reference FILE`)")
    if (base_model is None) != (reinforced_model is None):
        raise ConfigError("give both base_model and reinforced_model for the model score, or neither")
    if top_k < 1 or min_count < 1 or n_counterparts < 1:
        raise ConfigError("top_k, min_count and n_counterparts must be at least 1")
    target_words = [_words(t) for t in target_texts]
    reference_words = [_words(t) for t in reference_texts]
    lowercase = {w.text for ws in target_words + reference_words for w in ws if w.text.islower()}
    target = _count(target_texts, target_words, lowercase, keep_occurrences=True)
    reference = _count(reference_texts, reference_words, lowercase, keep_occurrences=False)
    n_target, n_reference = sum(map(len, target_words)), max(1, sum(map(len, reference_words)))

    scored = []  # (freq_score, expression, stats, count_reference)
    for expression, stats in target.items():
        if stats.count < min_count:
            continue
        single_capitalised = expression[:1].isupper() and " " not in expression
        if single_capitalised and stats.initial == stats.count and expression.lower() in lowercase:
            continue  # capitalised only at sentence starts: a common word
        count_reference = reference[expression].count if expression in reference else 0
        # Kilgarriff's "simple maths": ratio of per-million frequencies, add-one smoothed
        per_million_target = stats.count / n_target * 1e6
        per_million_reference = count_reference / n_reference * 1e6
        freq = math.log((per_million_target + 1) / (per_million_reference + 1))
        if freq > 0:
            scored.append((freq, expression, stats, count_reference))
    if not scored:
        return []
    scored.sort(key=lambda row: (-row[0], row[1]))

    if base_model is not None:
        scored = scored[: top_k * SHORTLIST_FACTOR]
        gains = _model_scores([stats for _, _, stats, _ in scored], target_texts, tokenizer,
                              base_model, reinforced_model, seed)
        present = [g for g in gains if g is not None]
        fill = sum(present) / len(present) if present else 0.0  # no usable context: average
        filled = [fill if g is None else g for g in gains]
        z_freq, z_model = _zscores([row[0] for row in scored]), _zscores(filled)
        scores = [f + m for f, m in zip(z_freq, z_model)]
    else:
        gains = [None] * len(scored)
        scores = [row[0] for row in scored]

    ranked = sorted(zip(scores, scored, gains), key=lambda r: (-r[0], r[1][1]))[:top_k]
    pools = load_generic_pools()
    forbidden = {expression.lower() for _, (_, expression, _, _), _ in ranked}
    rows = []
    for score, (freq, expression, stats, count_reference), gain in ranked:
        kind = _kind(expression, stats, lowercase)
        avoid = forbidden | {w.lower() for w in expression.split()}
        rows.append({
            "expression": expression,
            "counterparts": _draw_counterparts(expression, kind, stats, pools, avoid, n_counterparts, seed),
            "kind": kind,
            "count_target": stats.count,
            "count_reference": count_reference,
            "freq_score": freq,
            "model_score": gain,
            "score": score,
        })
    return rows


PROPOSAL_HEADER = """\
Anchored terms proposed by `obliviate anchors propose` (WHP, Eldan & Russinovich 2023).
EDIT THIS FILE BEFORE USE: delete expressions that are not specific to the target text, and fix
or add counterparts (generic, plausible replacements; one is drawn per text block).
Only `anchored_terms` is read; `scores` explains the ranking: freq_score is the log ratio of
per-million frequencies (target / reference, add-one smoothed), model_score the mean gain in
log-probability of the reinforced over the base model, score their z-score sum."""


def check_proposal_path(path) -> Path:
    """Refuse, before any work, a proposal path that is not a writable .yaml/.yml/.json file.

    Raises:
        DataError: another suffix, an existing folder, or an unwritable place.
    """
    path = Path(path)
    if path.suffix.lower() not in (".yaml", ".yml", ".json"):
        raise DataError(f"{display_path(path)}: write the proposal to a .yaml, .yml or .json file")
    return check_output_file(path, "proposal file")


def write_proposal(rows: list[dict], path) -> None:
    """Write proposed anchored terms as an editable YAML (.yaml/.yml) or JSON (.json) file.

    Args:
        rows: the output of `propose_anchored_terms`.
        path: the file to write; it loads back with `load_anchored_terms`.

    Raises:
        DataError: no rows, a repeated expression, or an unsupported suffix.
    """
    path = check_proposal_path(path)
    suffix = path.suffix.lower()
    if not rows:
        raise DataError("no expressions to write; lower min_count or give more target text")
    anchored_terms: dict[str, list[str]] = {}
    for row in rows:
        if row["expression"] in anchored_terms:
            raise DataError(f"expression {row['expression']!r} appears twice in the proposal")
        anchored_terms[row["expression"]] = list(row["counterparts"])
    scores = [{k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()} for row in rows]
    if suffix == ".json":
        document = {"comment": PROPOSAL_HEADER, "anchored_terms": anchored_terms, "scores": scores}
        write_text_atomic(path, json.dumps(document, indent=2, ensure_ascii=False) + "\n", "proposal file")
        return
    header = "".join(f"# {line}".rstrip() + "\n" for line in PROPOSAL_HEADER.splitlines())
    body = yaml.safe_dump({"anchored_terms": anchored_terms, "scores": scores},
                          sort_keys=False, allow_unicode=True, width=100)
    write_text_atomic(path, header + body, "proposal file")
