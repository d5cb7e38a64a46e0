"""Prompt attack on TOFU: the forget answers asked with TOFU's paraphrased questions.

TOFU's perturbed forget files carry a ``paraphrased_question`` for each forget question. A model
that forgot only the wording of the questions still gives the answer to a paraphrase. The measure
is the answer probability (geometric mean per token, TOFU's "Prob.") of the true answer given the
original question and given its paraphrase, asked as ``obliviate.tofu.prompt`` asks them; the
paraphrased one is reported as a prompt attack against the original one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["ParaphrasedQuestion", "paraphrased_questions", "answer_probability"]


@dataclass
class ParaphrasedQuestion:
    question: str
    paraphrased_question: str
    answer: str


def paraphrased_questions(path, limit: int | None = None) -> list[ParaphrasedQuestion]:
    """The forget questions of a TOFU ``forgetXX_perturbed.json`` that have a paraphrase (may be none)."""
    from obliviate.tofu import read_records

    items = [ParaphrasedQuestion(r["question"], r["paraphrased_question"], r["answer"]) for r in read_records(path)
             if all(isinstance(r.get(k), str) and r[k].strip() for k in ("question", "paraphrased_question", "answer"))]
    return items[:limit] if limit else items


def answer_probability(model, tokenizer, questions: list[str], answers: list[str], batch_size: int = 8) -> float:
    """Mean over items of ``exp(mean log p(answer token))`` of ``" " + answer`` after ``prompt(question)``."""
    from obliviate.scoring import continuation_logprobs
    from obliviate.tofu import answer_continuation, prompt

    pairs = [(prompt(q), answer_continuation(a)) for q, a in zip(questions, answers)]
    scores = [math.exp(sum(lp) / len(lp)) for lp in continuation_logprobs(model, tokenizer, pairs, batch_size)
              if lp]
    return sum(scores) / len(scores)
