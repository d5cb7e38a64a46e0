"""Latent-knowledge attack: per-layer linear probes that tell true from false answers.

A model can hold knowledge that its outputs hide. The supervised counterpart of the unsupervised
probes of Burns et al. 2022 ("Discovering Latent Knowledge in Language Models Without
Supervision", arXiv 2212.03827): for each target question, the hidden state at the last token
of ``prompt + " " + true answer`` (label 1) and of ``prompt + " " + false answer`` (label 0);
a logistic regression per layer is fitted on the tune half of the questions and scored on the
held-out half. Held-out accuracy well above 0.5 on an unlearned model means the answer is still
linearly readable inside it. Both answers of a question fall in the same half (by a fixed rule:
even-numbered questions tune, odd-numbered ones are held out), so a probe never sees the
question it is scored on.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from obliviate.errors import DataError

__all__ = ["ProbeItem", "probe_items_from_qa", "probe_items_from_tofu", "fit_logistic", "probe_accuracy",
           "layer_probe_accuracies"]


@dataclass
class ProbeItem:
    """One question with a true and a false answer (prompt already formatted)."""

    prompt: str
    true_answer: str
    false_answer: str


def probe_items_from_qa(items, template: str = "Question: {question}\nAnswer:") -> list[ProbeItem]:
    """Probe items from two-choice (or multiple-choice) QA items (``evaluation.qa.QAItem``): the
    correct choice against the first wrong one."""
    out = []
    for item in items:
        wrong = next(c for i, c in enumerate(item.choices) if i != item.answer)
        out.append(ProbeItem(template.format(question=item.question), item.choices[item.answer], wrong))
    return out


def probe_items_from_tofu(items) -> list[ProbeItem]:
    """Probe items from TOFU questions (``obliviate.tofu.TofuQA``): the true answer against the first
    perturbed one (items without a perturbed answer are left out)."""
    from obliviate.tofu import prompt

    return [ProbeItem(prompt(item.question), item.answer, item.perturbed_answers[0])
            for item in items if item.perturbed_answers]


def fit_logistic(x: torch.Tensor, y: torch.Tensor, l2: float = 1e-2, steps: int = 200):
    """Logistic regression on standardized features, L2-penalised, fitted by L-BFGS (deterministic).

    Args:
        x: (N, H) features.
        y: (N,) labels in {0, 1}.
        l2: weight of the squared-norm penalty.
        steps: L-BFGS iterations.

    Returns:
        ``predict(x) -> (N,) bool``: the fitted probe.
    """
    x = x.double()
    mean, std = x.mean(0), x.std(0).clamp(min=1e-6)
    z = (x - mean) / std  # (N, H)
    w = torch.zeros(z.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([w, b], max_iter=steps, line_search_fn="strong_wolfe")
    target = y.double()

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(z @ w + b, target) + l2 * (w * w).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    w, b = w.detach(), b.detach()
    return lambda features: (((features.double() - mean) / std) @ w + b) > 0


def probe_accuracy(x_tune, y_tune, x_held, y_held, l2: float = 1e-2) -> float:
    """Held-out accuracy of a logistic probe fitted on the tune half."""
    predict = fit_logistic(x_tune, y_tune, l2=l2)
    return float((predict(x_held) == y_held.bool()).double().mean())


def layer_probe_accuracies(model, tokenizer, items: list[ProbeItem], batch_size: int = 8,
                           l2: float = 1e-2) -> list[float]:
    """Held-out probe accuracy at each layer (index 0: the embeddings).

    Raises:
        DataError: fewer than 4 items (each half needs two questions).
    """
    from obliviate.scoring import last_token_hidden_states

    if len(items) < 4:
        raise DataError(f"the latent-knowledge probes need at least 4 questions with a true and a false answer, "
                        f"got {len(items)}: give a larger --probe-data")
    texts, labels, tune = [], [], []
    for index, item in enumerate(items):
        for answer, label in ((item.true_answer, 1), (item.false_answer, 0)):
            texts.append(f"{item.prompt} {answer}")
            labels.append(label)
            tune.append(index % 2 == 0)
    hidden = last_token_hidden_states(model, tokenizer, texts, batch_size=batch_size)  # (L + 1, 2N, H)
    y, tune = torch.tensor(labels), torch.tensor(tune)
    return [probe_accuracy(layer[tune], y[tune], layer[~tune], y[~tune], l2=l2) for layer in hidden]
