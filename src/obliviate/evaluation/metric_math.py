"""Pure metric maths: numbers in, numbers out. No model, no torch.

Every evaluation metric that needs a model gets its raw numbers (token log-probs, judge ratings,
per-item correctness) from `obliviate.scoring` and hands them to a function here, where the maths
lives and is tested on hand-written numbers.

Conventions: log-probabilities are natural logs. Membership-inference scores are oriented so that
*higher means more member-like* (more likely to have been in the training data), and `roc_auc`
is computed with members as the positive class.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence

import numpy as np

from obliviate.errors import ConfigError, DataError

__all__ = [
    "mean_stderr",
    "binary_stderr",
    "roc_auc",
    "privleak",
    "min_k_percent",
    "min_k_plus_plus",
    "zlib_ratio",
    "loss_score",
    "JUDGE_RATING_WEIGHTS",
    "judge_familiarity_score",
    "accuracy_with_chance",
    "length_normalised",
    "truth_ratio",
    "forget_truth_ratio",
    "retain_truth_ratio",
    "forget_quality",
    "harmonic_mean",
    "rouge_l_recall",
    "extraction_strength",
    "normalised_option_probability",
]

# Eldan & Russinovich 2023 ("Who's Harry Potter?"): familiarity = (5 * #rating3 + #rating2) / N.
JUDGE_RATING_WEIGHTS = {0: 0, 1: 0, 2: 1, 3: 5}


def _finite_array(values, what: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64).reshape(-1)
    if array.size == 0:
        raise DataError(f"no {what} given; pass at least one value.")
    if np.isnan(array).any():
        raise DataError(f"{what} contain NaN; check the scores that produced them.")
    return array


def mean_stderr(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and its standard error, sample std (n - 1 denominator) / sqrt(n), as in lm-eval.

    Args:
        values: per-item values (e.g. 0/1 correctness, per-item scores).

    Returns:
        `(mean, stderr)`; `stderr` is None for a single value.

    Raises:
        DataError: `values` is empty or holds NaN.
    """
    array = _finite_array(values, "values")
    mean = float(array.mean())
    if array.size < 2:
        return mean, None
    return mean, float(array.std(ddof=1) / math.sqrt(array.size))


def binary_stderr(p: float, n: int) -> float | None:
    """Standard error of a proportion `p` measured on `n` items: sqrt(p (1 - p) / (n - 1)).

    The n - 1 makes it equal `mean_stderr` of the n underlying 0/1 values (lm-eval's `acc_stderr`);
    the textbook binomial sqrt(p (1 - p) / n) is smaller by a factor sqrt((n - 1) / n).

    Args:
        p: the observed proportion, in [0, 1].
        n: number of items.

    Returns:
        The standard error, or None when n < 2.

    Raises:
        DataError: `p` is outside [0, 1].
    """
    if not 0.0 <= p <= 1.0:
        raise DataError(f"a proportion must be in [0, 1], got {p}.")
    if n < 2:
        return None
    return math.sqrt(p * (1.0 - p) / (n - 1))


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks of `values`, tied values sharing the mean of their ranks."""
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    ranks = np.empty(values.size, dtype=np.float64)
    start = 0
    while start < values.size:
        end = start
        while end + 1 < values.size and sorted_values[end + 1] == sorted_values[start]:
            end += 1
        ranks[order[start : end + 1]] = (start + end) / 2.0 + 1.0  # mean of ranks start+1 .. end+1
        start = end + 1
    return ranks


def roc_auc(scores_positive: Sequence[float], scores_negative: Sequence[float]) -> float:
    """Area under the ROC curve: P(a positive scores above a negative), ties counting 1/2.

    Computed exactly from the Mann-Whitney U statistic on average ranks:
    AUC = (sum of positive ranks - n_pos (n_pos + 1) / 2) / (n_pos n_neg).

    Args:
        scores_positive: scores of the positive class (for membership inference: members).
        scores_negative: scores of the negative class (non-members). Higher = more positive.

    Returns:
        AUC in [0, 1]; 0.5 is chance, 1 a perfect separation.

    Raises:
        DataError: either list is empty or holds NaN.
    """
    positive = _finite_array(scores_positive, "positive scores")
    negative = _finite_array(scores_negative, "negative scores")
    ranks = _average_ranks(np.concatenate([positive, negative]))
    n_pos, n_neg = positive.size, negative.size
    u_statistic = ranks[:n_pos].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u_statistic / (n_pos * n_neg))


def privleak(auc_unlearned: float, auc_reference: float) -> float:
    """MUSE PrivLeak (Shi et al. 2024, arXiv 2407.06460): relative AUC gap to a reference model.

    MUSE defines PrivLeak = (AUC(f_unlearn) - AUC(f_retrain)) / AUC(f_retrain), the AUC of a
    Min-K% Prob attack (k = 0.4) separating the forget set from a holdout set, and reports it
    x 100 (%). In MUSE's code the holdout set is the positive class, i.e. its AUC is P(holdout scores above
    forget) = 1 - the AUC of this module, where the forget set (members) is the positive class.
    This function takes AUCs in this module's convention (as returned by `roc_auc` and
    `membership_inference`) and converts them, so that the result equals MUSE's published numbers:

        privleak = ((1 - auc_unlearned) - (1 - auc_reference)) / (1 - auc_reference)

    Sign, as in MUSE: ~0 is good (the forget set looks as unseen as to the reference model);
    negative is under-unlearning (the forget set is still recognised as training data; a model
    that memorised it perfectly gives about -1, MUSE's -100 %); positive is over-unlearning
    (the forget set now looks *less* familiar than unseen text, itself a detectable trace).

    Args:
        auc_unlearned: AUC (members = forget set) of the unlearned model.
        auc_reference: same AUC for the reference model (in MUSE, a model retrained without the
            forget set; its AUC is ~0.5 when the holdout set is drawn like the forget set).

    Returns:
        The relative difference as a fraction (multiply by 100 for MUSE's %).

    Raises:
        DataError: an AUC is outside [0, 1], or `auc_reference` is 1 (MUSE's AUC of the reference
            is then 0 and the ratio undefined).
    """
    for name, value in (("auc_unlearned", auc_unlearned), ("auc_reference", auc_reference)):
        if not 0.0 <= value <= 1.0:
            raise DataError(f"{name} must be an AUC in [0, 1], got {value}.")
    muse_unlearned, muse_reference = 1.0 - auc_unlearned, 1.0 - auc_reference
    if muse_reference == 0.0:
        raise DataError(
            "the reference model separates members from non-members perfectly (AUC 1), so PrivLeak "
            "is undefined; use a reference model that has not seen the forget set."
        )
    return (muse_unlearned - muse_reference) / muse_reference


def _check_k(k: float) -> None:
    if not 0.0 < k <= 1.0:
        raise ConfigError(f"k is the fraction of tokens kept and must be in (0, 1], got {k}; e.g. k=0.2 for Min-20%.")


def _lowest_k_mean(values: np.ndarray, k: float) -> float:
    # floor(n k) tokens as in the Min-K% code, at least one; the epsilon keeps 0.29 * 100 at 29
    count = max(1, math.floor(values.size * k + 1e-9))
    return float(np.sort(values)[:count].mean())


def min_k_percent(token_logprobs: Sequence[float], k: float) -> float:
    """Min-K% Prob (Shi et al. 2023, arXiv 2310.16789): mean of the lowest k fraction of token log-probs.

    Uses floor(n k) tokens, at least one. Higher = more member-like (members have fewer
    surprising tokens).

    Args:
        token_logprobs: log p(x_t | x_<t) of each token of one text.
        k: fraction of tokens kept, in (0, 1] (0.2 for Min-20%).

    Returns:
        The mean of the selected log-probs.

    Raises:
        ConfigError: `k` is outside (0, 1].
        DataError: no token log-probs.
    """
    _check_k(k)
    return _lowest_k_mean(_finite_array(token_logprobs, "token log-probs"), k)


def min_k_plus_plus(
    token_logprobs: Sequence[float], token_mu: Sequence[float], token_sigma: Sequence[float], k: float
) -> float:
    """Min-K%++ (Zhang et al. 2024, arXiv 2404.02936): Min-K% of per-token z-scores.

    Each token is scored (log p(x_t | x_<t) - mu_t) / sigma_t, where mu_t = E_{z ~ p(.|x_<t)} log p(z | x_<t)
    and sigma_t is the standard deviation of log p(z | x_<t) under the same distribution; the
    result is the mean of the lowest k fraction of those scores (floor(n k), at least one).
    Higher = more member-like (training tokens sit at local maxima of the likelihood).

    Args:
        token_logprobs: log p(x_t | x_<t) of each token of one text.
        token_mu: mu_t of each token (same length).
        token_sigma: sigma_t of each token (same length, >= 0). A sigma of 0 (a one-hot
            distribution) is floored at 1e-12.
        k: fraction of tokens kept, in (0, 1].

    Returns:
        The mean of the selected z-scores.

    Raises:
        ConfigError: `k` is outside (0, 1].
        DataError: empty or mismatched inputs, or a negative sigma.
    """
    _check_k(k)
    logprobs = _finite_array(token_logprobs, "token log-probs")
    mu = _finite_array(token_mu, "token means (mu)")
    sigma = _finite_array(token_sigma, "token standard deviations (sigma)")
    if not logprobs.size == mu.size == sigma.size:
        raise DataError(
            f"got {logprobs.size} log-probs, {mu.size} mu and {sigma.size} sigma; pass one of each per token."
        )
    if (sigma < 0).any():
        raise DataError("a token standard deviation (sigma) is negative; sigma must be >= 0.")
    z_scores = (logprobs - mu) / np.maximum(sigma, 1e-12)
    return _lowest_k_mean(z_scores, k)


def zlib_ratio(mean_logprob: float, text: str) -> float:
    """zlib ratio (Carlini et al. 2021, arXiv 2012.07805): log-likelihood over zlib entropy.

    Carlini et al. divide the log-perplexity (mean token NLL) by the length in bytes of the
    zlib-compressed UTF-8 text (default level), so that text that is likely only because it is
    repetitive is discounted. We divide the mean token *log-prob* instead (= -log-perplexity), so
    the sign is flipped and higher = more member-like, like the other scores here.

    Args:
        mean_logprob: mean log p(x_t | x_<t) over the tokens of `text` (see `loss_score`).
        text: the text itself.

    Returns:
        mean_logprob / len(zlib.compress(text.encode("utf-8"))).

    Raises:
        DataError: `text` is empty.
    """
    if not text:
        raise DataError("zlib_ratio of an empty text is undefined; pass the scored text.")
    return float(mean_logprob) / len(zlib.compress(text.encode("utf-8")))


def loss_score(token_logprobs: Sequence[float]) -> float:
    """LOSS attack score (Yeom et al. 2018): mean token log-prob, i.e. minus the loss; higher = more member-like.

    Args:
        token_logprobs: log p(x_t | x_<t) of each token of one text.

    Returns:
        Their mean.

    Raises:
        DataError: no token log-probs.
    """
    return float(_finite_array(token_logprobs, "token log-probs").mean())


def judge_familiarity_score(ratings: Sequence[int]) -> float:
    """Familiarity score of a judge's 0-3 ratings (Eldan & Russinovich 2023): (5 #3 + #2) / N.

    A rating of 3 (a detail unique to the target) weighs five times a rating of 2 (typical
    themes); ratings 0 and 1 count zero. The score lies in [0, 5]; lower is better for unlearning.

    Args:
        ratings: one integer rating in {0, 1, 2, 3} per completion.

    Returns:
        The score.

    Raises:
        DataError: no ratings, or a rating that is not one of 0, 1, 2, 3.
    """
    if len(ratings) == 0:
        raise DataError("no judge ratings given; judge at least one completion.")
    for index, rating in enumerate(ratings):
        if isinstance(rating, bool) or not isinstance(rating, (int, np.integer)) or rating not in JUDGE_RATING_WEIGHTS:
            raise DataError(f"judge rating #{index} is {rating!r}; ratings must be integers 0, 1, 2 or 3.")
    return sum(JUDGE_RATING_WEIGHTS[int(r)] for r in ratings) / len(ratings)


def accuracy_with_chance(correct: Sequence[bool], n_choices: Sequence[int]) -> dict:
    """Accuracy, its standard error and the accuracy of random guessing.

    Args:
        correct: whether each item was answered correctly.
        n_choices: number of answer choices of each item (same order).

    Returns:
        `{"acc": mean of correct, "stderr": mean_stderr of the 0/1 values (None for one item),
        "chance": mean of 1 / n_choices}`.

    Raises:
        DataError: no items, or an item with fewer than one choice.
        ValueError: the two lists differ in length.
    """
    if len(correct) != len(n_choices):
        raise ValueError(f"got {len(correct)} correctness values for {len(n_choices)} items; pass one per item.")
    if len(correct) == 0:
        raise DataError("no answered items; accuracy needs at least one item.")
    if any(n < 1 for n in n_choices):
        raise DataError(f"every item needs at least one choice, got n_choices {list(n_choices)}.")
    acc, stderr = mean_stderr([1.0 if c else 0.0 for c in correct])
    chance = sum(1.0 / n for n in n_choices) / len(n_choices)
    return {"acc": acc, "stderr": stderr, "chance": chance}


def length_normalised(logprob_sum: float, length: int) -> float:
    """Log-likelihood per unit of length, as in lm-eval's `acc_norm` (length in characters there).

    Args:
        logprob_sum: summed log-prob of a continuation.
        length: its length in characters (lm-eval's acc_norm) or tokens.

    Returns:
        logprob_sum / length.

    Raises:
        DataError: `length` is not positive.
    """
    if length <= 0:
        raise DataError(f"cannot length-normalise a log-prob over length {length}; the continuation is empty.")
    return logprob_sum / length


# ---------------------------------------------------------------------------------------------
# TOFU (Maini et al. 2024, arXiv 2401.06121) as locuslab/tofu and locuslab/open-unlearning compute it
# Line numbers: locuslab/tofu aggregate_eval_stat.py at commit 8c49eee; locuslab/open-unlearning
# src/evals/metrics/memorization.py at 2db47ec, utils.py at 5420d43, utility.py at 23625d3.
# ---------------------------------------------------------------------------------------------


def truth_ratio(perturbed_mean_logprobs: Sequence[float], paraphrased_mean_logprob: float) -> float:
    """TOFU truth ratio of one question: R = P(perturbed) / P(paraphrased), per-token normalised.

    Each answer a gets P(a)^(1/|a|) = exp(mean token log-prob). The perturbed side is the
    geometric mean over the wrong answers, exp(mean_j mean-log-prob_j), as both references do:
    locuslab/tofu aggregate_eval_stat.py:28 ``get_model_utility`` (``average_perturb_loss.mean(-1)``,
    then ``exp(perturbed - paraphrased)`` at line 66, which is 1 / R) and open-unlearning
    src/evals/metrics/memorization.py:108 ``truth_ratio`` (``aggregate_to_1D`` of the wrong answers'
    avg losses, then ``wrong_prob / (correct_prob + 1e-10)`` at line 156, which is R). Computed here as
    exp(mean perturbed - paraphrased), without the 1e-10 (it only matters below 1e-10).
    For forget/retain items the "paraphrased" answer is TOFU's paraphrased_answer; for real
    authors / world facts it is the answer itself.

    Args:
        perturbed_mean_logprobs: mean token log-prob of each wrong answer.
        paraphrased_mean_logprob: mean token log-prob of the (paraphrased) true answer.

    Returns:
        R >= 0; below 1 the model prefers the true answer.

    Raises:
        DataError: no perturbed answers, or NaN.
    """
    perturbed = _finite_array(perturbed_mean_logprobs, "perturbed mean log-probs")
    paraphrased = _finite_array([paraphrased_mean_logprob], "paraphrased mean log-prob")[0]
    return float(np.exp(perturbed.mean() - paraphrased))


def forget_truth_ratio(ratios: Sequence[float]) -> float:
    """Forget-set truth ratio: mean(min(R, 1/R)); 1 when true and wrong answers are equally likely.

    open-unlearning memorization.py:114 ``closer_to_1_better`` (with 1/(R + 1e-10)); locuslab/tofu
    aggregate_eval_stat.py:69 (``np.minimum(c, 1/c)``, symmetric in R and 1/R). Higher is better forgetting.

    Raises:
        DataError: no ratios, or NaN.
    """
    array = _finite_array(ratios, "truth ratios")
    return float(np.mean(np.minimum(array, 1.0 / (array + 1e-10))))


def retain_truth_ratio(ratios: Sequence[float]) -> float:
    """Retain / real authors / world facts truth ratio: mean(max(0, 1 - R)); higher is better utility.

    open-unlearning memorization.py:119 ``true_better``; locuslab/tofu aggregate_eval_stat.py:71
    ``np.maximum(0, 1 - 1/c)`` with c = 1/R.

    Raises:
        DataError: no ratios, or NaN.
    """
    return float(np.mean(np.maximum(0.0, 1.0 - _finite_array(ratios, "truth ratios"))))


def forget_quality(unlearned_truth_ratios: Sequence[float], gold_truth_ratios: Sequence[float]) -> float:
    """TOFU forget quality: p-value of the two-sample Kolmogorov-Smirnov test on per-item truth ratios.

    Compares the forget-set truth ratios R of the unlearned model with those of the gold model
    (retrained without the forget set). Both references feed 1/R (locuslab/tofu
    aggregate_eval_stat.py:10 ``get_forget_quality``: ``exp(perturbed - paraphrased)``;
    open-unlearning src/evals/metrics/utils.py:41 ``get_forget_quality``: ``1 / (tr + 1e-10)``) to
    ``scipy.stats.ks_2samp``; so does this function. (The KS statistic is unchanged by a monotone
    map applied to both samples, so R itself would give the same p-value.)

    Args:
        unlearned_truth_ratios: per-item R of the evaluated model on the forget set.
        gold_truth_ratios: per-item R of the gold (retain-only) model on the same set.

    Returns:
        The p-value in [0, 1]; high means indistinguishable from the gold model.

    Raises:
        DataError: either list is empty or holds NaN.
    """
    from scipy.stats import ks_2samp

    unlearned = _finite_array(unlearned_truth_ratios, "unlearned truth ratios")
    gold = _finite_array(gold_truth_ratios, "gold truth ratios")
    return float(ks_2samp(1.0 / (unlearned + 1e-10), 1.0 / (gold + 1e-10)).pvalue)


def harmonic_mean(values: Sequence[float]) -> float:
    """Harmonic mean (TOFU model utility over its nine numbers); a 0 gives 0, as ``scipy.stats.hmean``.

    locuslab/tofu aggregate_eval_stat.py:78 (in ``get_model_utility``) and open-unlearning
    src/evals/metrics/utility.py:13 ``hm_aggregate`` both call ``scipy.stats.hmean``.

    Raises:
        DataError: no values, NaN, or a negative value.
    """
    array = _finite_array(values, "values")
    if (array < 0).any():
        raise DataError(f"the harmonic mean needs values >= 0, got {array.tolist()}.")
    if (array == 0).any():
        return 0.0
    return float(array.size / np.sum(1.0 / array))


def _rouge_l_scorer():
    from rouge_score import rouge_scorer

    global _ROUGE_L
    if _ROUGE_L is None:
        _ROUGE_L = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    return _ROUGE_L


_ROUGE_L = None


def rouge_l_recall(prediction: str, reference: str) -> float:
    """ROUGE-L recall of a generated answer against the reference answer (rouge-score, stemmed).

    As open-unlearning src/evals/metrics/utils.py:256 ``eval_rouge_recall_batch`` (in ``eval_text_similarity``):
    ``RougeScorer(["rouge1", "rougeL"], use_stemmer=True).score(reference, prediction)["rougeL"].recall``
    (obliviate builds the scorer with ``["rougeL"]`` only: the ROUGE-L score is the same), i.e. the share
    of the reference's tokens in the longest common subsequence.

    Args:
        prediction: the model's answer (already cut at the stop string and stripped).
        reference: the true answer.

    Returns:
        Recall in [0, 1] (0 for an empty prediction or reference).
    """
    return float(_rouge_l_scorer().score(reference, prediction)["rougeL"].recall)


def extraction_strength(argmax_matches: Sequence[bool]) -> float:
    """Extraction strength (Carlini et al. 2021; open-unlearning memorization.py:211 ``extraction_strength``).

    ES = 1 - k / n, where n is the number of answer tokens and k the shortest answer prefix after
    which the teacher-forced greedy tokens reproduce the rest of the answer (``matches[k:]`` all
    True). As in open-unlearning (memorization.py:225), k is searched over 0 .. n-1 only: when not
    even the last token matches, k stays n - 1 and ES = 1/n (not 0).

    Args:
        argmax_matches: per answer token, whether it is the argmax given the prompt and the true
            earlier answer tokens (``obliviate.scoring.continuation_greedy_matches``).

    Returns:
        ES in [1/n, 1]; 1 when the whole answer is the greedy continuation of the question.

    Raises:
        DataError: no answer tokens.
    """
    matches = [bool(m) for m in argmax_matches]
    n = len(matches)
    if n == 0:
        raise DataError("extraction strength needs at least one answer token.")
    k = n  # matches[k:] all True
    while k > 0 and matches[k - 1]:
        k -= 1
    k = min(k, n - 1)  # open-unlearning's search stops at n - 1 (memorization.py:225)
    return 1.0 - k / n


def normalised_option_probability(true_prob: float, false_probs: Sequence[float]) -> float:
    """TOFU "Prob." on real authors / world facts: P(true) / (P(true) + sum P(false)).

    Each P is the per-token normalised answer probability exp(mean token log-prob); locuslab/tofu
    aggregate_eval_stat.py:28 ``get_model_utility`` (``avg_true_prob / avg_all_prob`` at line 53) and
    open-unlearning memorization.py:45 ``probability_w_options`` (which adds 1e-10 to the denominator
    at line 69; not here).

    Raises:
        DataError: no false options, a negative probability, or all probabilities 0.
    """
    false = _finite_array(false_probs, "false-option probabilities")
    if true_prob < 0 or (false < 0).any():
        raise DataError("option probabilities must be >= 0.")
    total = true_prob + float(false.sum())
    if total == 0:
        raise DataError("every option has probability 0, so the normalised probability is undefined.")
    return float(true_prob / total)
