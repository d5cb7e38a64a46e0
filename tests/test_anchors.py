"""Anchored terms: loading, pruning, token-level matching and block translation (WHP Sec. 3.2)."""

from __future__ import annotations

import json
import random
from importlib.resources import files
from pathlib import Path

import pytest

from obliviate.errors import DataError
from obliviate.whp.anchors import (
    AnchorMatcher,
    TranslatedBlock,
    load_anchored_terms,
    prune_anchored_terms,
)

GPT4_FILE = Path("/work/shared/data/targets/harry_potter/anchored_terms_gpt4_blocks.json")
BLOCK = "Harry went to Hogwarts. Harry saw Ron."


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def tokens(tokenizer, ids):
    return tokenizer.convert_ids_to_tokens(list(ids))


# --------------------------------------------------------------------------- loading


def test_load_mapping_yaml_strips_merges_and_drops_identities(tmp_path):
    path = write(
        tmp_path,
        "a.yaml",
        "Harry: Jon\n' Hogwarts ': [' the Academy', Hogwarts, the Academy, Mystic School]\n",
    )
    assert load_anchored_terms(path) == {
        "Harry": ["Jon"],
        "Hogwarts": ["the Academy", "Mystic School"],
    }


def test_load_blocks_json_merges_in_order_of_first_appearance(tmp_path):
    blocks = [{"Harry": "Jon", "Ron": "Tom"}, {"Harry": "Sam", "Ron": "Tom"}, {"Harry": "Jon"}]
    path = write(tmp_path, "blocks.json", json.dumps(blocks))
    assert load_anchored_terms(path) == {"Harry": ["Jon", "Sam"], "Ron": ["Tom"]}


def test_load_blocks_drops_expressions_that_only_map_to_themselves(tmp_path):
    path = write(tmp_path, "b.json", json.dumps([{"CHAPTER ONE": "CHAPTER ONE", "Ron": "Tom"}]))
    assert load_anchored_terms(path) == {"Ron": ["Tom"]}


def test_load_proposal_format_ignores_other_keys(tmp_path):
    text = "# edit me\nanchored_terms:\n  Harry: [Jon, Sam]\nscores:\n  - {expression: Harry}\n"
    assert load_anchored_terms(write(tmp_path, "p.yml", text)) == {"Harry": ["Jon", "Sam"]}


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("a.txt", "Harry: Jon\n", "must be a .json, .yaml or .yml"),
        ("a.yaml", "Harry: [Jon\n", "cannot decode"),
        ("a.json", "{'Harry': 'Jon'}", "cannot decode"),
        ("a.yaml", "", "no anchored terms"),
        ("a.json", "{}", "no anchored terms"),
        ("a.yaml", "1984: Jon\n", "expression 1984 is not a string"),
        ("a.yaml", "Harry: []\n", "'Harry' must map to a counterpart"),
        ("a.yaml", "Harry: [Jon, 3]\n", "'Harry' has counterpart 3"),
        ("a.yaml", "Harry: '  '\n", "'Harry' has counterpart '  '"),
        ("a.yaml", "'  ': Jon\n", "an expression is empty"),
        ("a.yaml", "Harry: Harry\n", "'Harry' only maps to itself"),
        ("a.yaml", "Harry: Jon\nHarry: Sam\n", "duplicate key 'Harry'"),
        ("a.json", '{"Harry": "Jon", "Harry": "Sam"}', "duplicate key 'Harry'"),
        ("a.json", '[{"Harry": "Jon"}, "Ron"]', "block 1 is not a mapping"),
        ("a.json", '[{"Harry": 5}]', "block 0: 'Harry' must map"),
        ("a.yaml", "anchored_terms: [Harry]\n", "'anchored_terms' must be a mapping"),
        ("a.yaml", "just a string\n", "expected a mapping"),
    ],
)
def test_load_errors_name_the_file_and_the_entry(tmp_path, name, text, message):
    path = write(tmp_path, name, text)
    with pytest.raises(DataError, match=message) as caught:
        load_anchored_terms(path)
    assert str(path) in str(caught.value)


def test_load_missing_file(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_anchored_terms(tmp_path / "nope.yaml")


def test_load_undecodable_bytes(tmp_path):
    path = tmp_path / "a.yaml"
    path.write_bytes(b"Harry: \xff\xfe\n")
    with pytest.raises(DataError, match="not valid UTF-8"):
        load_anchored_terms(path)


@pytest.mark.skipif(not GPT4_FILE.is_file(), reason="shared GPT-4 dictionary not present")
def test_load_the_gpt4_block_dictionary():
    terms = load_anchored_terms(GPT4_FILE)
    # 1,676 distinct keys, of which two chapter titles only ever map to themselves
    assert 1670 <= len(terms) <= 1676
    assert len(terms["Harry"]) > 1 and "Harry" not in terms["Harry"]
    assert all(counterparts for counterparts in terms.values())


def test_demo_dictionary_loads():
    path = files("obliviate") / "resources" / "demo" / "harry_potter" / "anchors.yaml"
    terms = load_anchored_terms(Path(str(path)))
    assert len(terms) >= 35
    assert {"Harry", "Hogwarts", "Quidditch", "Diagon Alley"} <= set(terms)
    assert all(len(c) >= 2 for c in terms.values())


# --------------------------------------------------------------------------- pruning


def test_prune_drops_covered_phrases_and_possessives():
    terms = {
        "Harry": ["Jon"],
        "Potter": ["Smith"],
        "Harry Potter": ["Jon Smith"],
        "Harry's": ["Jon's"],
        "Potter’s": ["Smith’s"],
        "Harry Potter's": ["Jon Smith's"],
        "Ron Weasley": ["Tom Baker"],
        "Ron's": ["Tom's"],
    }
    kept, dropped = prune_anchored_terms(terms)
    assert kept == {"Harry": ["Jon"], "Potter": ["Smith"], "Ron Weasley": ["Tom Baker"], "Ron's": ["Tom's"]}
    assert [expression for expression, _ in dropped] == [
        "Harry Potter",
        "Harry's",
        "Potter’s",
        "Harry Potter's",
    ]
    assert all(reason for _, reason in dropped)
    assert prune_anchored_terms(terms) == (kept, dropped)


# --------------------------------------------------------------------------- matching


@pytest.fixture(scope="module")
def matcher(tiny_tokenizer):
    return AnchorMatcher(tiny_tokenizer, {"Harry": ["Jon"], "Hogwarts": ["the Academy"]})


def test_translate_text_position_map_and_neutralize(tiny_tokenizer, matcher):
    ids = tiny_tokenizer.encode(BLOCK)
    # the fixture tokenizer writes the block as
    # 0 Harry | 1 Ġw 2 en 3 t 4 Ġto | 5 ĠHogwarts | 6 . | 7 ĠHarry | 8 Ġs 9 a 10 w 11 ĠRon 12 .
    assert tokens(tiny_tokenizer, ids)[5:8] == ["ĠHogwarts", ".", "ĠHarry"]
    block = matcher.translate(ids, random.Random(0))
    assert isinstance(block, TranslatedBlock)
    assert tiny_tokenizer.decode(block.translated_ids) == "Jon went to the Academy. Jon saw Ron."
    # translated: 0 J 1 on | 2 Ġw 3 en 4 t 5 Ġto | 6 Ġthe ... 12 y | 13 . | 14 Ġ 15 J 16 on |
    #             17 Ġs 18 a 19 w 20 ĠRon 21 .
    assert block.original_ids == ids
    assert block.position_map == [1, 2, 3, 4, 5, 12, -1, 16, 17, 18, 19, 20, -1]
    assert block.counterparts == {"Harry": "Jon", "Hogwarts": "the Academy"}
    assert block.n_matches == 3
    # "Jon" first ends at 1: neutralise "J" from 2 on (the lone "Ġ" of " Jon" is no mark of it);
    # "the Academy" ends at 12: neutralise the first tokens of "Academy"/" Academy" from 13 on
    # (a leading function word is skipped: neutralising " the" would teach the model to avoid it).
    assert [(p, tokens(tiny_tokenizer, ids_)) for p, ids_ in block.neutralize] == [
        (2, ["J"]),
        (13, ["A", "ĠA"]),
    ]


def test_translate_maps_every_kept_position_to_the_same_next_token(tiny_tokenizer, matcher):
    ids = tiny_tokenizer.encode("Ron laughed at Harry. The owl flew over Hogwarts.")
    block = matcher.translate(ids, random.Random(0))
    expressions = {s + k for s, e, _ in matcher.find(ids) for k in range(e - s)}
    for i, p in enumerate(block.position_map):
        if p >= 0 and i + 1 not in expressions:
            # outside expressions, both predictions target the same token
            assert block.translated_ids[p + 1] == ids[i + 1]
    assert len(block.position_map) == len(ids)


def test_multi_token_expression_inner_positions_take_no_loss(tiny_tokenizer):
    matcher = AnchorMatcher(tiny_tokenizer, {"Potter": ["Smith"]})
    ids = tiny_tokenizer.encode("Harry Potter went")
    assert tokens(tiny_tokenizer, ids) == ["Harry", "ĠP", "ot", "ter", "Ġw", "en", "t"]
    block = matcher.translate(ids, random.Random(0))
    assert tiny_tokenizer.decode(block.translated_ids) == "Harry Smith went"
    n = len(tiny_tokenizer.encode(" Smith"))
    # 0 predicts the first token of the counterpart; 1, 2 are inside; 3 predicts " went"
    assert block.position_map == [0, -1, -1, n, n + 1, n + 2, -1]


def test_start_of_block_and_after_newline(tiny_tokenizer, matcher):
    ids = tiny_tokenizer.encode("Harry ran.\nHarry ran.\n\nHogwarts")
    assert [e for _, _, e in matcher.find(ids)] == ["Harry", "Harry", "Hogwarts"]
    block = matcher.translate(ids, random.Random(0))
    assert tiny_tokenizer.decode(block.translated_ids) == "Jon ran.\nJon ran.\n\nthe Academy"
    # the counterpart at the very end is followed by nothing: no neutralize entry for it
    assert len(block.neutralize) == 1 and block.position_map[-1] == -1


def test_second_occurrence_takes_no_loss_on_its_first_token(tiny_tokenizer, matcher):
    ids = tiny_tokenizer.encode("Harry saw Harry")
    block = matcher.translate(ids, random.Random(0))
    starts = [s for s, _, _ in matcher.find(ids)]
    assert starts[0] == 0 and block.position_map[starts[1] - 1] == -1
    assert block.position_map[starts[1] - 2] >= 0


def test_longest_match_wins(tiny_tokenizer):
    terms = {"Harry": ["Jon"], "Harry Potter": ["Jon Smith"]}
    matcher = AnchorMatcher(tiny_tokenizer, terms)
    ids = tiny_tokenizer.encode("Harry Potter saw Harry")
    assert [e for _, _, e in matcher.find(ids)] == ["Harry Potter", "Harry"]
    text = tiny_tokenizer.decode(matcher.translate(ids, random.Random(0)).translated_ids)
    assert text == "Jon Smith saw Jon"


def test_matches_respect_word_boundaries(tiny_tokenizer):
    matcher = AnchorMatcher(tiny_tokenizer, {"Ron": ["Tom"], "Harry": ["Jon"]})
    ids = tiny_tokenizer.encode("Ronan and xHarry met Ron. \"Harry's\" wand")
    assert [e for _, _, e in matcher.find(ids)] == ["Ron", "Harry"]
    assert tiny_tokenizer.decode(matcher.translate(ids, random.Random(0)).translated_ids) == (
        "Ronan and xHarry met Tom. \"Jon's\" wand"
    )


def test_one_counterpart_per_block_deterministic_given_the_seed(tiny_tokenizer):
    terms = {"Harry": ["Jon", "Sam", "Max", "Leo"], "Ron": ["Tom", "Ben", "Dan"]}
    matcher = AnchorMatcher(tiny_tokenizer, terms)
    ids = tiny_tokenizer.encode("Harry and Ron. Harry saw Ron. Ron laughed at Harry.")
    drawn = set()
    for seed in range(12):
        block = matcher.translate(ids, random.Random(seed))
        assert block == matcher.translate(ids, random.Random(seed))
        text = tiny_tokenizer.decode(block.translated_ids)
        harry, ron = block.counterparts["Harry"], block.counterparts["Ron"]
        assert text == f"{harry} and {ron}. {harry} saw {ron}. {ron} laughed at {harry}."
        drawn.add((harry, ron))
    assert len(drawn) > 3  # different seeds draw different counterparts


def test_count_occurrences_and_empty_block(tiny_tokenizer, matcher):
    blocks = [tiny_tokenizer.encode(BLOCK), tiny_tokenizer.encode("The river ran."), []]
    assert matcher.count_occurrences(blocks) == {"Harry": 2, "Hogwarts": 1}
    empty = matcher.translate([], random.Random(0))
    assert empty.translated_ids == [] and empty.position_map == [] and empty.n_matches == 0


def test_matcher_refuses_an_empty_dictionary(tiny_tokenizer):
    with pytest.raises(DataError, match="no anchored terms"):
        AnchorMatcher(tiny_tokenizer, {})
    with pytest.raises(DataError, match="'Harry' has no counterparts"):
        AnchorMatcher(tiny_tokenizer, {"Harry": []})
