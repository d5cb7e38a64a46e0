"""TOFU metrics (Maini et al. 2024, arXiv 2401.06121), computed as locuslab/tofu and open-unlearning do.

Two steps, so that a run can be compared later against the per-item numbers of another model
(the gold, retain-only model):

- :func:`tofu_scores`: the raw per-item numbers of one model on the five sets of
  ``obliviate.tofu.load_sets`` (answer probabilities, truth ratios, greedy answers and their
  ROUGE-L recall, extraction strength, Min-K% scores). It runs the model only through
  ``obliviate.scoring``.
- :func:`tofu_summary`: the TOFU numbers from raw scores (pure): forget quality and PrivLeak
  against a gold model's raw scores, model utility (harmonic mean of nine numbers), and the forget
  numbers. The maths lives in ``obliviate.evaluation.metric_math``.

Questions are asked as ``obliviate.tofu.prompt(question)`` and answers scored as the continuation
``" " + answer`` (no chat template, no EOS token). Names of the summary keys and their
open-unlearning counterparts (configs/eval/tofu_metrics/*.yaml):

==========================  =============================================
forget_prob                 forget_Q_A_Prob
forget_rouge                forget_Q_A_ROUGE (rougeL_recall)
forget_truth_ratio          forget_truth_ratio (closer_to_1_better)
extraction_strength         extraction_strength
mia_auc                     mia_min_k (k = 0.4; forget vs holdout)
forget_quality              forget_quality (KS test vs the retain model)
privleak                    privleak (see metric_math.privleak)
retain_prob / _rouge        retain_Q_A_Prob / retain_Q_A_ROUGE
retain_truth_ratio          retain_Truth_Ratio (true_better)
real_authors_prob           ra_Q_A_Prob_normalised
real_authors_rouge          ra_Q_A_ROUGE
real_authors_truth_ratio    ra_Truth_Ratio
world_facts_*               wf_Q_A_Prob_normalised, wf_Q_A_ROUGE, wf_Truth_Ratio
model_utility               model_utility (hm_aggregate of the nine)
==========================  =============================================

In open-unlearning, ``closer_to_1_better`` and ``true_better`` are src/evals/metrics/memorization.py:114
and :119 (in ``truth_ratio``, :108), ``extraction_strength`` is memorization.py:211 and ``hm_aggregate``
src/evals/metrics/utility.py:13. Line numbers: locuslab/open-unlearning memorization.py at commit 2db47ec,
utility.py at commit 23625d3.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass

from obliviate.errors import ConfigError, DataError
from obliviate.evaluation.metric_math import (
    extraction_strength,
    forget_quality,
    forget_truth_ratio,
    harmonic_mean,
    min_k_percent,
    normalised_option_probability,
    privleak,
    retain_truth_ratio,
    roc_auc,
    rouge_l_recall,
    truth_ratio,
)
from obliviate.evaluation.result import MetricContext, MetricResult
from obliviate.tofu import (
    PROMPT_TEMPLATE,
    SET_NAMES,
    SPLITS,
    TofuQA,
    answer_continuation,
    load_sets,
    prompt,
    split_files,
)

__all__ = ["TofuSpec", "UTILITY_KEYS", "tofu_scores", "tofu_summary", "raw_from_result", "compute_tofu"]

# The nine numbers whose harmonic mean is TOFU's model utility (open-unlearning utility.py:13 hm_aggregate).
UTILITY_KEYS = tuple(f"{s}_{m}" for s in ("retain", "real_authors", "world_facts")
                     for m in ("prob", "rouge", "truth_ratio"))
# Sets whose answers are generated and scored by ROUGE (not the holdout: it only feeds the attack).
_GENERATED_SETS = ("forget", "retain", "real_authors", "world_facts")
# Sets with TOFU's multiple-choice "Prob.": the true answer against the perturbed ones.
_OPTION_SETS = ("real_authors", "world_facts")


@dataclass
class TofuSpec:
    name: str
    type: str = "tofu"
    group: str = "forget"
    split: str = "forget01"  # forget01 | forget05 | forget10
    folder: str = "tofu"  # the TOFU files, relative to the data folder
    retain_authors: list[int] | None = None  # keep only these authors' retain questions (None: all)
    limit: int | None = None  # at most this many items per set (quick runs)
    max_new_tokens: int = 64  # greedy answer length for ROUGE (open-unlearning: 64); its first line is scored
    batch_size: int = 8  # sequences per forward pass / generate call
    k: float = 0.4  # Min-K% fraction of the membership attack (open-unlearning mia_min_k)
    reference_model: str | None = None  # the gold (retain-only) model: adds forget_quality and privleak

    def data_files(self) -> list[str]:
        """The files :func:`obliviate.tofu.load_sets` reads, relative to the data folder (checked and
        hashed by the suite)."""
        files = split_files(self.split)
        names = [files.forget_perturbed, "retain_perturbed.json", "real_authors_perturbed.json",
                 "world_facts_perturbed.json", files.holdout] + (["full.json"] if self.retain_authors else [])
        return [f"{self.folder.rstrip('/')}/{name}" for name in names]

    def check(self) -> list[tuple]:
        """Rules of the settings: ``(key, holds, rule)`` (obliviate.config convention)."""
        return [
            ("split", self.split in SPLITS, " or ".join(SPLITS)),
            ("limit", self.limit is None or self.limit >= 1, ">= 1 or null"),
            ("max_new_tokens", self.max_new_tokens >= 1, ">= 1"),
            ("batch_size", self.batch_size >= 1, ">= 1"),
            ("k", 0 < self.k <= 1, "in (0, 1]"),
            ("retain_authors", self.retain_authors is None or (
                bool(self.retain_authors) and all(isinstance(a, int) and a >= 0 for a in self.retain_authors)),
             "a non-empty list of author indices (>= 0) or null"),
        ]


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def _answer_line(text: str) -> str:
    """The answer in a generation: its first non-empty line, stripped.

    A base model often starts its answer on a new line after "Answer:", then goes on with the next
    "Question:"; a model fine-tuned on the template answers on the same line and ends with EOS.
    (open-unlearning scores the whole generation up to EOS, stripped.)
    """
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def tofu_scores(model, tokenizer, sets: dict[str, list[TofuQA]], *, max_new_tokens: int = 64, batch_size: int = 8,
                k: float = 0.4, progress: bool = False) -> dict:
    """The raw per-item TOFU numbers of one model.

    Per item of every set: ``mean_logprob`` of the answer (mean token log-prob; TOFU's answer
    probability is its exp, ``prob``) and, where the set has them, of the paraphrased and each
    perturbed answer, and the ``truth_ratio`` (forget / retain: paraphrased vs perturbed; real
    authors / world facts: the answer itself vs the perturbed options, as TOFU). Real authors /
    world facts also get ``option_prob`` (metric_math.normalised_option_probability). The
    forget, retain, real-author and world-fact questions are answered greedily (up to EOS or
    ``max_new_tokens``; the first non-empty line is the answer) and scored by ROUGE-L recall; forget items get their
    ``extraction_strength``; forget and holdout items their Min-K% score (``min_k``), which give
    ``mia_auc`` (forget = positives).

    Args:
        model: Hugging Face causal LM, already on its device.
        tokenizer: its tokenizer (not modified).
        sets: ``{set name: items}`` for some of "forget", "retain", "real_authors", "world_facts",
            "holdout" (``obliviate.tofu.load_sets``); ``mia_auc`` needs forget and holdout.
        max_new_tokens: most tokens of a greedy answer.
        batch_size: sequences per forward pass / generate call.
        k: Min-K% fraction.
        progress: show progress bars.

    Returns:
        JSON-serialisable ``{"settings": {...}, "items": {set: [per-item dict]}, "mia_auc": float | None}``.

    Raises:
        ConfigError: an unknown set name, or ``k`` outside (0, 1].
        DataError: an empty set, or a forget / retain item without paraphrased and perturbed answers,
            or a real-authors / world-facts item without perturbed answers.
    """
    from obliviate.scoring import continuation_greedy_matches

    _check_sets(sets, k)
    logprobs = _answer_logprobs(model, tokenizer, sets, batch_size, progress)
    generations = _greedy_answers(model, tokenizer, sets, max_new_tokens, batch_size, progress)
    matches = []
    if "forget" in sets:
        matches = continuation_greedy_matches(
            model, tokenizer, [(prompt(q.question), answer_continuation(q.answer)) for q in sets["forget"]],
            batch_size=batch_size, progress=progress, desc="TOFU greedy matches")

    items_out: dict[str, list[dict]] = {}
    for name, items in sets.items():
        rows = []
        for i, item in enumerate(items):
            answer_tokens = logprobs[(name, i, "answer", 0)]
            answer_lp = _mean(answer_tokens)
            row = {"question": item.question, "answer": item.answer, "author": item.author,
                   "mean_logprob": answer_lp, "prob": math.exp(answer_lp)}
            perturbed = [_mean(logprobs[(name, i, "perturbed", j)]) for j in range(len(item.perturbed_answers))]
            if perturbed:
                true_lp = answer_lp  # real authors / world facts: the answer itself, as TOFU
                if item.paraphrased_answer:
                    true_lp = row["paraphrased_mean_logprob"] = _mean(logprobs[(name, i, "paraphrased", 0)])
                row["perturbed_mean_logprobs"] = perturbed
                row["truth_ratio"] = truth_ratio(perturbed, true_lp)
            if name in _OPTION_SETS:
                row["option_prob"] = normalised_option_probability(row["prob"], [math.exp(x) for x in perturbed])
            if name in generations:
                row["generation"] = generations[name][i]
                row["rouge_l_recall"] = rouge_l_recall(row["generation"], item.answer)
            if name == "forget":
                row["extraction_strength"] = extraction_strength(matches[i])
            if name in ("forget", "holdout"):
                row["min_k"] = min_k_percent(answer_tokens, k)
            rows.append(row)
        items_out[name] = rows

    mia_auc = None
    if "forget" in items_out and "holdout" in items_out:
        mia_auc = roc_auc([r["min_k"] for r in items_out["forget"]], [r["min_k"] for r in items_out["holdout"]])
    settings = {"max_new_tokens": max_new_tokens, "k": k, "prompt_template": PROMPT_TEMPLATE}
    return {"settings": settings, "items": items_out, "mia_auc": mia_auc}


def _check_sets(sets: dict[str, list[TofuQA]], k: float) -> None:
    unknown = sorted(set(sets) - set(SET_NAMES))
    if unknown:
        raise ConfigError(f"unknown TOFU set '{unknown[0]}': use some of {', '.join(SET_NAMES)}")
    if not 0 < k <= 1:
        raise ConfigError(f"k is the Min-K% fraction and must be in (0, 1], got {k}")
    for name, items in sets.items():
        if not items:
            raise DataError(f"TOFU set '{name}' is empty; give it at least one question")
        for index, item in enumerate(items):
            if name in ("forget", "retain") and not (item.paraphrased_answer and item.perturbed_answers):
                raise DataError(f"TOFU {name} item {index} ({item.question[:40]!r}) needs a paraphrased answer and "
                                "perturbed answers (use the *_perturbed.json files)")
            if name in _OPTION_SETS and not item.perturbed_answers:
                raise DataError(f"TOFU {name} item {index} ({item.question[:40]!r}) needs perturbed answers")


def _answer_logprobs(model, tokenizer, sets: dict, batch_size: int, progress: bool) -> dict[tuple, list[float]]:
    """Token log-probs of every answer, paraphrase and perturbed answer, in one scoring pass.

    Keyed ``(set, item index, "answer" | "paraphrased" | "perturbed", perturbed index)``.
    """
    from obliviate.scoring import continuation_logprobs

    keys, pairs = [], []
    for name, items in sets.items():
        for i, item in enumerate(items):
            answers = [("answer", 0, item.answer)]
            if item.paraphrased_answer:
                answers.append(("paraphrased", 0, item.paraphrased_answer))
            answers += [("perturbed", j, text) for j, text in enumerate(item.perturbed_answers)]
            for kind, j, text in answers:
                keys.append((name, i, kind, j))
                pairs.append((prompt(item.question), answer_continuation(text)))
    scored = continuation_logprobs(model, tokenizer, pairs, batch_size=batch_size, progress=progress,
                                   desc="TOFU answers")
    for key, token_logprobs in zip(keys, scored):
        if not token_logprobs:
            raise DataError(f"TOFU {key[0]} item {key[1]}: its {key[2]} answer has no tokens")
    return dict(zip(keys, scored))


def _greedy_answers(model, tokenizer, sets: dict, max_new_tokens: int, batch_size: int,
                    progress: bool) -> dict[str, list[str]]:
    """Greedy answers of the generated sets (:func:`_answer_line` of each), in one generate call."""
    from obliviate.scoring import generate

    names = [name for name in _GENERATED_SETS if name in sets]
    prompts = [prompt(item.question) for name in names for item in sets[name]]
    if not prompts:
        return {}
    texts = iter(_answer_line(out[0]) for out in generate(
        model, tokenizer, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size, progress=progress,
        desc="TOFU greedy answers"))
    return {name: [next(texts) for _ in sets[name]] for name in names}


def _values(raw: dict, name: str, key: str) -> list[float] | None:
    rows = raw.get("items", {}).get(name)
    return [row[key] for row in rows] if rows else None


def _set_numbers(raw: dict, name: str) -> dict:
    """prob / rouge / truth_ratio of one set: the TOFU aggregates of its per-item numbers."""
    numbers = {}
    prob_key = "option_prob" if name in _OPTION_SETS else "prob"
    if (probs := _values(raw, name, prob_key)) is not None:
        numbers[f"{name}_prob"] = _mean(probs)
    if (rouge := _values(raw, name, "rouge_l_recall")) is not None:
        numbers[f"{name}_rouge"] = _mean(rouge)
    if (ratios := _values(raw, name, "truth_ratio")) is not None:
        aggregate = forget_truth_ratio if name == "forget" else retain_truth_ratio
        numbers[f"{name}_truth_ratio"] = aggregate(ratios)
    return numbers


def tofu_summary(raw: dict, gold: dict | None = None) -> dict:
    """TOFU's numbers from the raw scores of :func:`tofu_scores` (pure).

    Args:
        raw: raw scores of the evaluated model.
        gold: raw scores of the gold model (retrained without the forget set) on the same forget
            questions; adds ``forget_quality`` (metric_math.forget_quality on the per-item forget
            truth ratios) and ``privleak`` (metric_math.privleak of the two ``mia_auc``).

    Returns:
        ``forget_prob``, ``forget_rouge``, ``forget_truth_ratio``, ``extraction_strength``,
        ``mia_auc``, the nine :data:`UTILITY_KEYS` and ``model_utility`` (their harmonic mean),
        and with ``gold`` ``forget_quality`` and ``privleak``; a number whose set is missing from
        ``raw`` is left out.

    Raises:
        DataError: ``gold`` was scored on other forget questions than ``raw``.
    """
    summary: dict = {}
    for name in ("forget", "retain", "real_authors", "world_facts"):
        summary.update(_set_numbers(raw, name))
    if (strengths := _values(raw, "forget", "extraction_strength")) is not None:
        summary["extraction_strength"] = _mean(strengths)
    if raw.get("mia_auc") is not None:
        summary["mia_auc"] = raw["mia_auc"]
    if all(key in summary for key in UTILITY_KEYS):
        summary["model_utility"] = harmonic_mean([summary[key] for key in UTILITY_KEYS])
    if gold is not None:
        ours, theirs = _values(raw, "forget", "question"), _values(gold, "forget", "question")
        if ours is None or ours != theirs:
            raise DataError("the gold model's TOFU scores are for other forget questions than this model's; score "
                            "both on the same split and limit")
        summary["forget_quality"] = forget_quality(_values(raw, "forget", "truth_ratio"),
                                                   _values(gold, "forget", "truth_ratio"))
        if raw.get("mia_auc") is not None and gold.get("mia_auc") is not None:
            # undefined (None) when the gold model itself separates forget from holdout perfectly
            summary["privleak"] = privleak(raw["mia_auc"], gold["mia_auc"]) if gold["mia_auc"] < 1 else None
    return summary


def raw_from_result(record: dict) -> dict:
    """The raw scores (as :func:`tofu_scores` returns them) stored in a ``tofu`` metric record.

    Args:
        record: the metric's record in metrics.json (``MetricResult.to_json()``).

    Raises:
        DataError: the record holds no TOFU raw scores.
    """
    details = record.get("details") or {}
    if "raw" not in details or "per_item" not in details:
        raise DataError("this metric record holds no TOFU per-item scores; rerun `obliviate eval` with a tofu metric")
    items: dict[str, list[dict]] = {}
    for row in details["per_item"]:
        row = dict(row)
        items.setdefault(row.pop("set"), []).append(row)
    return {"settings": details["raw"]["settings"], "items": items, "mia_auc": details["raw"]["mia_auc"]}


def _reference_cache_file(weights: str, spec: TofuSpec, sets: dict):
    from obliviate.models import cache_root

    payload = {"weights": weights, "max_new_tokens": spec.max_new_tokens, "k": spec.k, "prompt": PROMPT_TEMPLATE,
               "sets": {name: [asdict(item) for item in items] for name, items in sets.items()}}
    key = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
    return cache_root() / "tofu_reference" / f"{key}.json"


def _reference_scores(spec: TofuSpec, sets: dict, ctx: MetricContext) -> tuple[dict, str]:
    """Raw scores of ``spec.reference_model``, cached by its weights and the questions.

    A local model's weights are hashed from its files, so a cached reference is not even loaded.
    """
    from obliviate.models import load_model, resolve_model_path, weights_hash
    from obliviate.runs import atomic_write_json

    known = weights_hash(resolve_model_path(spec.reference_model))
    if known and (cached := _reference_cache_file(known, spec, sets)).is_file():
        return json.loads(cached.read_text()), known
    reference = load_model(spec.reference_model, device=ctx.device)  # safetensors when present; no remote code
    raw = tofu_scores(reference.model, reference.tokenizer, sets, max_new_tokens=spec.max_new_tokens,
                      batch_size=spec.batch_size, k=spec.k, progress=ctx.progress)
    weights = reference.weights_hash
    atomic_write_json(_reference_cache_file(weights, spec, sets), raw)
    del reference  # two models on one GPU only as long as needed
    _free_accelerator_memory()
    return raw, weights


def _free_accelerator_memory() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def compute_tofu(model, tokenizer, spec: TofuSpec, ctx: MetricContext) -> MetricResult:
    """The TOFU metrics of one model, with one headline ``value`` (higher is better).

    The headline is model_utility for a retain / utility metric; for a forget metric it is
    forget_quality with a reference model, else forget_truth_ratio. ``details`` holds the
    summary (every TOFU number), ``raw`` (settings and MIA AUC), the reference model's own
    summary, and the per-item numbers of every set as ``per_item`` rows with a ``set`` key, from
    which :func:`raw_from_result` rebuilds the raw scores.
    """
    from obliviate.evaluation.data import resolve_data_path

    sets = load_sets(resolve_data_path(spec.folder, ctx.data_dir), spec.split, spec.retain_authors, spec.limit)
    raw = tofu_scores(model, tokenizer, sets, max_new_tokens=spec.max_new_tokens, batch_size=spec.batch_size,
                      k=spec.k, progress=ctx.progress)
    details: dict = {}
    gold = None
    if spec.reference_model:
        gold, weights_hash = _reference_scores(spec, sets, ctx)
        details["reference"] = {"model": spec.reference_model, "weights_hash": weights_hash,
                                "summary": tofu_summary(gold)}
    summary = tofu_summary(raw, gold)
    if spec.group in ("retain", "utility"):
        headline = "model_utility"
    else:
        headline = "forget_quality" if gold is not None else "forget_truth_ratio"
    details.update(headline=headline, summary=summary, n_items={name: len(items) for name, items in sets.items()},
                   raw={"settings": raw["settings"], "mia_auc": raw["mia_auc"]})
    per_item = [{"set": name, **row} for name, rows in raw["items"].items() for row in rows]
    return MetricResult(value=summary[headline], higher_is_better=True, n=len(sets["forget"]),
                        settings=asdict(spec), details=details, per_item=per_item)
