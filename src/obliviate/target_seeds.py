"""Seed prompts that cover the target: every anchored term, summary sentence and tune-half trivia fact.

WHP's fine-tune only reaches the knowledge its training text touches (Eldan & Russinovich 2023), so
`obliviate synthesize --token-budget` samples from many seeds spread over the target instead of a
handful of hand-written ones. Three sources, each a list of `Seed`:

- ``anchors``: every expression of the anchored-terms dictionary, typed as a character, place, object,
  event or spell (`expression_kind`) and put into each template of its kind (`TEMPLATES`);
- ``summaries``: the opening of each summary sentence, up to and including the first anchored term it
  mentions ("Hagrid escorts Harry to Diagon Alley");
- ``trivia``: each trivia question of the *tune* half (`obliviate.evaluation.halves.dev_half`) rendered
  as a statement with its true answer. Held-out questions are never read into a seed, so held-out
  trivia cannot become training text.

`interleave` orders the seeds so that any prefix is spread over sources and kinds, deterministically
for a given seed.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from obliviate.errors import DataError
from obliviate.jsonl import display_path, jsonl_objects, text_lines

__all__ = ["KINDS", "TEMPLATES", "Seed", "expression_kind", "anchor_seeds", "summary_seeds", "trivia_statement",
           "trivia_seeds", "interleave"]

KINDS = ("character", "place", "object", "event", "spell")
# Several openings per kind; "{term}" is the expression as written in the dictionary.
TEMPLATES = {
    "character": ("{term} was", "{term} said", "Everyone knew that {term}", "The story of {term} begins",
                  "When {term} arrived,", "{term} looked at", "Few people knew that {term}", "{term} had always"),
    "place": ("In {term},", "{term} is a place where", "They walked into {term}", "The history of {term}",
              "Inside {term}, the", "Nobody could find {term} unless", "On the way to {term},"),
    "object": ("The {term} was", "He reached for the {term}", "Everyone wanted the {term} because",
               "The {term} had belonged to", "She looked at the {term} and", "What made the {term} special was"),
    "event": ("During the {term},", "The {term} began when", "After the {term},",
              "Everyone remembered the {term} because", "Before the {term}, Harry"),
    "spell": ("The spell {term}", "She raised her wand and cast {term}", "\"{term}!\" he shouted, and",
              "The {term} is used to", "To perform {term}, a wizard", "He had learnt {term} from"),
}
# Words that type an expression when they end it (or end one of its counterparts). From the GPT-4
# dictionary: "Imperius Curse" -> "Domination Hex", "Crucio" -> "Torture Spell", "Halloween" -> "Autumn Festival".
SPELL_WORDS = {"spell", "spells", "charm", "charms", "curse", "curses", "hex", "hexes", "jinx", "jinxes",
               "incantation", "incantatem", "enchantment"}
EVENT_WORDS = {"tournament", "ball", "cup", "match", "matches", "feast", "war", "battle", "day", "holidays",
               "holiday", "festival", "task", "final", "christmas", "halloween", "wedding", "funeral", "trial",
               "hearing", "exam", "exams", "party", "ceremony", "games", "championship", "eve", "celebration"}
CAPITALISED_EVENT_WORDS = {"ball", "cup", "match", "final", "party", "games"}  # "Yule Ball", not "crystal ball"
PLACE_WORDS = {"school", "hall", "street", "castle", "alley", "forest", "academy", "lane", "road", "drive",
               "house", "village", "tower", "lake", "inn", "shop", "station", "hospital", "ministry", "bank",
               "manor", "park", "square", "hill", "valley", "cottage", "market", "island", "prison", "palace",
               "bridge", "wood", "woods", "library", "room", "office", "platform", "corridor", "dungeon",
               "dungeons", "classroom", "store", "pub", "tavern", "town", "city", "department", "kingdom",
               "burrow", "chamber", "emporium", "stadium", "grounds", "tunnel", "cave"}
OBJECT_WORDS = {"potion", "potions", "wand", "wands", "cloak", "stone", "map", "book", "sword", "hat", "locket",
                "diary", "ring", "egg", "broom", "broomstick", "mirror", "elixir", "cauldron", "beans", "frogs",
                "robes", "letter", "newspaper", "quill", "prophet", "horcrux", "horcruxes", "hallows"}
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"“])")
MIN_OPENING_WORDS = 3


@dataclass(frozen=True)
class Seed:
    """One seed prompt and where it comes from (written with every sample, as its provenance).

    Attributes:
        prompt: the raw text the model continues.
        source: ``anchors``, ``summaries``, ``trivia``, ``file`` (--seeds) or ``prompt`` (--prompt).
        kind: the term's kind (one of `KINDS`), ``trivia`` for trivia, ``given`` for given prompts.
        term: the anchored term or trivia answer the seed is about (None for given prompts).
    """

    prompt: str
    source: str
    kind: str
    term: str | None = None


def _last_word(text: str) -> str:
    words = re.findall(r"[^\W\d_]+", text.lower())
    return words[-1] if words else ""


def expression_kind(expression: str, counterparts: list[str] = ()) -> str:
    """Type an anchored expression, first rule that matches wins (a heuristic: the dictionary holds no kinds).

    1. spell: it ends in a spell word ("Shield Charm") or is one word of five or more letters in
       upper case ("STUPEFY"); 2. event: it ends in an event word ("Yule Ball", not "crystal ball");
    3. place: any of its words is a place word ("Diagon Alley", "Ministry of Magic"); 4. spell, event:
    a counterpart ends in such a word ("Crucio" -> "Torture Spell"; "Halloween" -> "Autumn Festival");
    5. object: an object word ends it ("Polyjuice Potion") or it starts in lower case ("owls");
    6. character: the rest, capitalised names ("Hermione", "Madam Pince").

    Args:
        expression: the dictionary's expression.
        counterparts: its generic counterparts (they often name the kind the expression hides).
    """
    ends = [_last_word(expression)] + [_last_word(c) for c in counterparts]
    texts = [expression, *counterparts]
    spell = [e in SPELL_WORDS for e in ends]
    event = [e in EVENT_WORDS and (e not in CAPITALISED_EVENT_WORDS or t[:1].isupper()) for e, t in zip(ends, texts)]
    shouted = expression.isupper() and expression.isalpha() and len(expression) > 4  # not "DA", "O.W.L."
    if spell[0] or shouted:
        return "spell"
    if event[0]:
        return "event"
    if {w.lower() for w in re.findall(r"[^\W\d_]+", expression)} & PLACE_WORDS:
        return "place"
    if any(spell):  # the expression's own words first: "Ministry of Magic" stays a place
        return "spell"
    if any(event):
        return "event"
    if ends[0] in OBJECT_WORDS or expression[:1].islower():
        return "object"
    return "character"


def _render(template: str, term: str) -> str:
    if template.startswith("The {term}") or " the {term}" in template:
        term = re.sub(r"^(?:the|The)\s+", "", term)  # "the Sorting Hat" -> "The Sorting Hat", not "The the"
    return template.format(term=term)


def anchor_seeds(anchored_terms: dict[str, list[str]]) -> list[Seed]:
    """Every expression in every template of its kind.

    Args:
        anchored_terms: expression -> counterparts (`obliviate.whp.anchors.load_anchored_terms`).

    Returns:
        Seeds with source ``anchors``, in dictionary order then template order.
    """
    seeds = []
    for expression, counterparts in anchored_terms.items():
        kind = expression_kind(expression, counterparts)
        seeds += [Seed(_render(t, expression), "anchors", kind, expression) for t in TEMPLATES[kind]]
    return seeds


def summary_seeds(text: str, anchored_terms: dict[str, list[str]]) -> list[Seed]:
    """Sentence openings that mention an anchored term: the words up to the end of its first mention.

    The longest expression wins where several start at the same place ("Lord Voldemort" over
    "Lord"). Openings shorter than three words are skipped (too little context to steer the model).

    Args:
        text: the summaries (plain text).
        anchored_terms: the dictionary; its expressions are matched case-sensitively on word boundaries.

    Returns:
        Seeds with source ``summaries`` and the kind of the term, distinct, in text order.
    """
    expressions = sorted(anchored_terms, key=len, reverse=True)
    if not expressions:
        return []
    pattern = re.compile(r"(?<!\w)(?:" + "|".join(re.escape(e) for e in expressions) + r")(?!\w)")
    seeds, seen = [], set()
    for sentence in _SENTENCE.split(" ".join(text.split())):
        match = pattern.search(sentence)
        if not match:
            continue
        opening = sentence[: match.end()].rstrip(" ,;:")
        if len(opening.split()) < MIN_OPENING_WORDS or opening in seen:
            continue
        seen.add(opening)
        term = match.group(0)
        seeds.append(Seed(opening, "summaries", expression_kind(term, anchored_terms[term]), term))
    return seeds


def trivia_statement(question: str, answer: str) -> str:
    """A trivia question and its answer as one statement ("What is X?" + "A" -> "X is A.").

    Wh-questions of a few common shapes are rewritten; any other question is kept and followed by
    its answer ("Which house ...? Gryffindor.").
    """
    question, answer = " ".join(question.split()), answer.strip().rstrip(".")
    cap = lambda s: s[:1].upper() + s[1:]  # noqa: E731
    for pattern, render in (
        (r"What (is|was|are|were) (.+)\?$", lambda m: f"{cap(m[2])} {m[1]} {answer}."),
        (r"Who (is|was|are|were) (.+)\?$", lambda m: f"{answer} {m[1]} {m[2]}."),
        (r"Who (?!did |does |do )(.+)\?$", lambda m: f"{answer} {m[1]}."),
    ):
        m = re.match(pattern, question)
        if m:
            return render(m)
    return f"{question} {answer}."


def trivia_seeds(path, half: str = "tune") -> list[Seed]:
    """Statements from a trivia JSONL file (``question``, ``true_answer``), of one dev half only.

    Args:
        path: the trivia file.
        half: the half kept; by default ``tune``, so that the held-out half never becomes training text.

    Returns:
        Seeds with source and kind ``trivia`` and the true answer as term, in file order.

    Raises:
        DataError: the file is unreadable, a line lacks a string question or true_answer, or no
            question falls in the half.
    """
    from obliviate.evaluation.halves import dev_half

    seeds = []
    example = '{"question": "...", "true_answer": "..."}'
    for where, record in jsonl_objects(path, "trivia file", example):
        question, answer = record.get("question"), record.get("true_answer")
        if not isinstance(question, str) or not isinstance(answer, str) or not question.strip() or not answer.strip():
            raise DataError(f"{where}: needs string fields question and true_answer, like {example}.")
        if dev_half(question) == half:
            seeds.append(Seed(trivia_statement(question, answer), "trivia", "trivia", answer.strip()))
    if not seeds:
        raise DataError(f"trivia file {display_path(path)}: no question falls in the {half} half; give more questions.")
    return seeds


def read_summaries(path) -> str:
    """The summaries file as one text (UTF-8), or a DataError that names it."""
    return "\n".join(text_lines(path, "summaries file", "give a UTF-8 text file of summaries"))


def interleave(seeds: list[Seed], seed: int = 0) -> list[Seed]:
    """Shuffle within each (source, kind) group, then take one seed from each group in turn.

    Any prefix of the result (what a small token budget reaches) is spread over every source and
    kind; duplicates of a prompt are dropped (first kept). Deterministic for a given `seed`.
    """
    groups: dict[tuple[str, str], list[Seed]] = {}
    seen = set()
    for s in seeds:
        if s.prompt not in seen:
            seen.add(s.prompt)
            groups.setdefault((s.source, s.kind), []).append(s)
    rng = random.Random(seed)
    queues = [rng.sample(groups[key], len(groups[key])) for key in sorted(groups)]
    ordered = []
    for i in range(max((len(q) for q in queues), default=0)):
        ordered += [q[i] for q in queues if i < len(q)]
    return ordered
