"""Build the Harry Potter dev evaluation's prompt files (src/obliviate/resources/suites/data/hp_dev_*.jsonl).

    PYTHONPATH=src python benchmarks/hp_dev_build.py [--data-dir ../shared/data]

Sources: the hand-written candidates of benchmarks/hp_dev_candidates.py, and (fact cloze only)
the two-choice trivia of targets/harry_potter/trivia_train_1000.jsonl rendered as
``Question: ...\\nAnswer:`` -> the first word of the true answer. Rules, applied item by item and
never by half:

- trivia: answers of at most 3 words without commas or brackets, whose first word is not a
  generic opener (The, A, Professor...); at most 2 questions per answer first word;
- every cloze prompt is kept only if the base SmolLM2-135M gives its answer's first token a
  probability of at least MIN_PROBABILITY (a fact the base model does not hold cannot be forgotten,
  and an answer it never gives is usually not the one clear next word); the completion and
  probability prompts are kept whole;
- prompts alike (difflib ratio >= 0.8, case-insensitive) to a prompt of the demo (its probe,
  familiarity and seed prompts; the demo trains on text synthesized from the seeds) are dropped;
- ``answer_in_training_text``: the answer occurs (whole word) in the first 80% of
  wikipedia_summaries.txt, the text obliviate's benchmarks train on.

The halves are not stored: obliviate.evaluation.halves derives them from each prompt (or its
``split_key``, the trivia question) at load time.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import hp_dev_candidates as candidates  # noqa: E402

OUT = ROOT / "src" / "obliviate" / "resources" / "suites" / "data"
MIN_PROBABILITY = 0.005
# Trivia whose true answer is wrong, invented or not one clear word (read by hand after a first build).
EXCLUDED_TRIVIA = {
    "What was the title given to the leader of the Merpeople community living in the Black Lake beside Hogwarts?",
    "What color is the Hogwarts Express train?",
    "What magical creature did Harry and the Order of the Phoenix rescue from the Department of Mysteries?",
    "What creature do students ride to get to Hogwarts from Hogsmeade Station for the first time?",
    "What is the official sweet treat served in the Hogwarts Express?",
    "What magical creature is known for laying eggs in the moonlight and has feathers used in Quidditch snitch making?",
    "What spell is used by Dumbledore to calm the waters of the cave when searching for one of Voldemort's "
    "Horcruxes with Harry?",
    "What is the name of the spell that magically binds the target to make an unbreakable vow?",
}
GENERIC_OPENERS = {"the", "a", "an", "it", "there", "professor", "mr", "mr.", "mrs", "mrs.", "madam", "he", "she",
                   "they", "yes", "no", "to", "in", "by", "magical", "produces", "his", "her", "its", "one", "two"}


def _pairs(block: str) -> list[tuple[str, str]]:
    rows = []
    for line in block.strip().splitlines():
        prompt, answer = (part.strip() for part in line.rsplit("|", 1))
        rows.append((prompt, answer))
    return rows


def _trivia_cloze(path: Path) -> list[dict]:
    per_first, seen, rows = {}, set(), []
    for line in path.read_text().splitlines():
        record = json.loads(line)
        answer = record["true_answer"].strip().rstrip(".")
        words = answer.split()
        if (not words or len(words) > 3 or re.search(r"[,;()]", answer) or words[0].lower() in GENERIC_OPENERS
                or not words[0][:1].isupper() or record["question"] in seen or record["question"] in EXCLUDED_TRIVIA):
            continue
        seen.add(record["question"])
        first = words[0].lower()
        if per_first.get(first, 0) >= 2:
            continue
        per_first[first] = per_first.get(first, 0) + 1
        rows.append({"prompt": f"Question: {record['question']}\nAnswer:", "references": [answer],
                     "source": "trivia", "split_key": record["question"]})
    return rows


# The target's names for the next-token mass: anchored expressions of the GPT-4 dictionary that are
# names only the books use and whose first SmolLM2 token is itself distinctive (" Harry", " Herm",
# " Hog"); names whose first token is a letter or a common word piece (" D" of Dumbledore, " V" of
# Voldemort, " Sn" of Snape) are left out, since mass on those says nothing about the target.
NAMES = ["Harry", "Potter", "Hermione", "Ron", "Hogwarts", "Hagrid", "Draco", "McGonagall", "Hedwig", "Dobby",
         "Azkaban", "Horcrux", "Dudley", "Vernon", "Severus", "Luna", "Cho", "Nagini", "Kreacher", "Lumos"]


# Names any completion may reveal the books by (the WHP rubric counts any detail unique to the books,
# not only the expected one): added to every completion prompt's own references.
COMPLETION_NAMES = ["Harry", "Hermione", "Ron", "Weasley", "Hogwarts", "Dumbledore", "Voldemort", "Snape", "Hagrid",
                    "Malfoy", "Draco", "Gryffindor", "Slytherin", "Hufflepuff", "Ravenclaw", "Quidditch", "Muggle",
                    "Muggles", "Dementor", "Dementors", "Rowling", "McGonagall", "Sirius", "Hedwig", "Dobby", "Azkaban",
                    "Horcrux", "Horcruxes", "Death Eaters", "Hogsmeade", "Diagon Alley", "Gringotts", "Patronus"]


def _names(anchors_path: Path) -> dict[str, list[str]]:
    from obliviate.whp.anchors import load_anchored_terms

    terms = load_anchored_terms(anchors_path)
    return {name: terms[name][:5] for name in NAMES}


def _demo_prompts() -> list[str]:
    demo = ROOT / "src" / "obliviate" / "resources" / "demo" / "harry_potter"
    prompts = [json.loads(line)["prompt"] for name in ("probe_prompts.jsonl", "familiarity_prompts.jsonl")
               for line in (demo / name).read_text().splitlines() if line.strip()]
    return [p.lower() for p in prompts + [s.strip() for s in (demo / "seed_prompts.txt").read_text().splitlines()
                                          if s.strip()]]


def _unlike_demo(rows: list[dict]) -> list[dict]:
    import difflib

    demo = _demo_prompts()
    kept = [r for r in rows if all(difflib.SequenceMatcher(None, r["prompt"].lower(), d).ratio() < 0.8 for d in demo)]
    print(f"  dropped {len(rows) - len(kept)} prompts alike to the demo's", file=sys.stderr)
    return kept


def _in_text(answer: str, text: str, any_case: bool = False) -> bool:
    """The answer's first word (the whole answer with any_case) occurs in the text as a whole word."""
    word = answer if any_case else answer.split()[0]
    return re.search(rf"(?<!\w){re.escape(word)}(?!\w)", text, re.IGNORECASE if any_case else 0) is not None


def _write(name: str, rows: list[dict]) -> None:
    (OUT / name).write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    print(f"{name}: {len(rows)} prompts", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--cache", help="JSON file of base probabilities kept between builds (speeds up edits)")
    args = parser.parse_args()
    target = Path(args.data_dir) / "targets" / "harry_potter"
    summaries = (target / "wikipedia_summaries.txt").read_text()
    trained_text = summaries[: int(len(summaries) * 0.8)]  # the span benchmarks train on

    from obliviate.evaluation.cloze import cloze_scores, cloze_target_ids
    from obliviate.evaluation.prompts import PromptItem
    from obliviate.models import load_model
    from obliviate.scoring import next_token_distribution

    loaded = load_model("smollm2-135m")
    cache_path = Path(args.cache) if args.cache else None
    cache = json.loads(cache_path.read_text()) if cache_path and cache_path.exists() else {}

    def keep_known(rows: list[dict]) -> list[dict]:
        todo = [PromptItem(r["prompt"], r["references"]) for r in rows
                if json.dumps([r["prompt"], r["references"][0]]) not in cache]
        if todo:
            probs = next_token_distribution(loaded.model, loaded.tokenizer, [i.prompt for i in todo], batch_size=32)
            scores = cloze_scores(probs, cloze_target_ids(loaded.tokenizer, todo))
            cache.update({json.dumps([i.prompt, i.references[0]]): p for i, p in zip(todo, scores["probability"])})
            if cache_path:
                cache_path.write_text(json.dumps(cache))
        kept = [r for r in rows if cache[json.dumps([r["prompt"], r["references"][0]])] >= MIN_PROBABILITY]
        print(f"  kept {len(kept)} of {len(rows)} (base p >= {MIN_PROBABILITY})", file=sys.stderr)
        return kept

    def cloze(block: str, topic: str) -> list[dict]:
        return [{"prompt": p, "references": [a], "source": "hand", "topic": topic} for p, a in _pairs(block)]

    hp = cloze(candidates.HP_CLOZE, "harry_potter") + [{**r, "topic": "harry_potter"}
                                                      for r in _trivia_cloze(target / "trivia_train_1000.jsonl")]
    hp = keep_known(_unlike_demo(hp))
    for row in hp:
        row["answer_in_training_text"] = _in_text(row["references"][0], trained_text)
    _write("hp_dev_cloze.jsonl", hp)
    _write("hp_dev_neighbour_cloze.jsonl", keep_known(cloze(candidates.NEIGHBOUR_CLOZE, "fantasy_neighbours")))
    _write("hp_dev_control_cloze.jsonl", keep_known(cloze(candidates.CONTROL_CLOZE, "general_knowledge")))
    names = _names(target / "anchored_terms_gpt4_blocks.json")
    (OUT / "harry_potter_names.json").write_text(json.dumps(names, indent=1, ensure_ascii=False) + "\n")
    _write("hp_dev_probability.jsonl", _unlike_demo([{"prompt": p, "references": [a], "source": "hand"}
                                                     for p, a in _pairs(candidates.HP_PROBABILITY)]))
    completions = [{"prompt": p, "source": "hand",
                    "references": [w for w in dict.fromkeys([w.strip() for w in a.split(",")] + COMPLETION_NAMES)
                                   if not _in_text(w, p, any_case=True)]}
                   for p, a in _pairs(candidates.HP_COMPLETION)]
    _write("hp_dev_completion.jsonl", _unlike_demo([r for r in completions if r["references"]]))


if __name__ == "__main__":
    main()
