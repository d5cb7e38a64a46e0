"""Loss maths as pure tensor functions. Each one names its paper and equation.

Shapes: B batch, T tokens, V vocabulary, H hidden size. ``mask`` tensors are 1 where a
position counts and 0 where it does not (padding, unlabelled positions).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100


def token_nll(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean next-token negative log-likelihood over labelled positions.

    Args:
        logits: (B, T, V) logits; position t predicts ``labels[:, t]`` (labels already aligned,
            i.e. shifted by the caller).
        labels: (B, T) token ids, ``IGNORE_INDEX`` where no loss is taken.

    Returns:
        Scalar mean NLL (0 with grad if no position is labelled).
    """
    flat_labels = labels.reshape(-1)
    if not (flat_labels != IGNORE_INDEX).any():
        return logits.sum() * 0.0
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), flat_labels, ignore_index=IGNORE_INDEX)


def shift_for_next_token(input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Labels for causal LM training: ``labels[:, t] = input_ids[:, t+1]``, last position and padding ignored."""
    labels = torch.full_like(input_ids, IGNORE_INDEX)
    labels[:, :-1] = input_ids[:, 1:]
    if attention_mask is not None:
        labels[:, :-1][attention_mask[:, 1:] == 0] = IGNORE_INDEX
    return labels


def whp_generic_logits(base_logits: torch.Tensor, reinforced_logits: torch.Tensor, alpha: float) -> torch.Tensor:
    """Generic predictions of "Who's Harry Potter?" (Eldan & Russinovich 2023, eq. 1).

    ``v_generic = v_base - alpha * relu(v_reinforced - v_base)``: tokens whose logit the
    reinforced model raised above the baseline's are pushed down.

    Args:
        base_logits: (..., V) baseline logits (on the translated text).
        reinforced_logits: (..., V) reinforced-model logits at the matching positions (original text).
        alpha: strength of the push, >= 0.
    """
    base = base_logits.float()
    return base - alpha * torch.relu(reinforced_logits.float() - base)


def neutralize_tokens(logits: torch.Tensor, token_ids: torch.Tensor) -> torch.Tensor:
    """Set the given tokens' logits to the row mean, so the baseline does not reward them (WHP §3.2).

    Args:
        logits: (V,) or (N, V) logits (a copy is returned).
        token_ids: (K,) token ids to neutralise.
    """
    out = logits.clone()
    out[..., token_ids] = logits.mean(dim=-1, keepdim=True).expand(*logits.shape[:-1], len(token_ids))
    return out


def soft_label_kl(logits: torch.Tensor, target_ids: torch.Tensor, target_probs: torch.Tensor,
                  mask: torch.Tensor) -> torch.Tensor:
    """KL(target || model) against a top-k soft target, mean over masked positions (distillation).

    Args:
        logits: (B, T, V) student logits.
        target_ids: (B, T, K) token ids of the target's top-k.
        target_probs: (B, T, K) target probabilities (renormalised over the top-k, rows sum to 1).
        mask: (B, T) 1 where a soft label exists.
    """
    logp = torch.log_softmax(logits.float(), dim=-1).gather(-1, target_ids)  # (B, T, K)
    target = target_probs.float()
    kl = (target * (torch.log(target.clamp_min(1e-12)) - logp)).sum(-1)  # (B, T)
    m = mask.float()
    return (kl * m).sum() / m.sum().clamp_min(1.0)


# --- Unlearning losses -----------------------------------------------------------------------
# Reference quantities (frozen model's logits, log-probs, hidden states) are detached: they are
# targets, never trained through.


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` (B, T) weighted by ``mask`` (B, T); 0 that keeps the graph if the mask is empty."""
    m = mask.to(values.dtype)
    # where() rather than values * m, so a NaN/inf at a masked-out position cannot leak in
    kept = torch.where(m != 0, values * m, torch.zeros_like(values))
    return kept.sum() / m.sum().clamp_min(1.0)


def _masked_row_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-row mean of ``values`` (B, T) over ``mask`` (B, T) -> (B,); rows with an empty mask give 0."""
    m = mask.to(values.dtype)
    kept = torch.where(m != 0, values * m, torch.zeros_like(values))
    return kept.sum(dim=-1) / m.sum(dim=-1).clamp_min(1.0)


def sequence_logprob(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Summed log-probability of each sequence's labelled tokens, ``log pi(y|x)``.

    Args:
        logits: (B, T, V) logits; position t predicts ``labels[:, t]`` (aligned as for ``token_nll``).
        labels: (B, T) token ids, ``IGNORE_INDEX`` where no token counts.

    Returns:
        (B,) float32 sums of token log-probs (0 for a row with no labelled token).
    """
    keep = labels != IGNORE_INDEX  # (B, T)
    logp = torch.log_softmax(logits.float(), dim=-1)  # (B, T, V)
    token_logp = logp.gather(-1, labels.masked_fill(~keep, 0).unsqueeze(-1)).squeeze(-1)  # (B, T)
    return torch.where(keep, token_logp, torch.zeros_like(token_logp)).sum(dim=-1)


def sequence_token_count(labels: torch.Tensor) -> torch.Tensor:
    """Number of labelled tokens per sequence, ``|y|``: (B, T) labels -> (B,) int64."""
    return (labels != IGNORE_INDEX).sum(dim=-1)


def gradient_ascent_loss(forget_nll: torch.Tensor) -> torch.Tensor:
    """Gradient ascent on the forget set: minimise ``-NLL`` (Jang et al. 2023, arXiv 2210.01504, §3).

    Args:
        forget_nll: scalar (or any shape) NLL on the forget set, e.g. ``token_nll``.

    Returns:
        ``-forget_nll``, same shape.
    """
    # Jang et al. 2023 §3 "Knowledge Unlearning": negate the LM loss on the sequences to forget
    return -forget_nll


def grad_diff_loss(forget_nll: torch.Tensor, retain_nll: torch.Tensor, gamma: float = 1.0,
                   alpha: float = 1.0) -> torch.Tensor:
    """Gradient difference: ascend on the forget set, descend on the retain set.

    Args:
        forget_nll: scalar NLL on forget data.
        retain_nll: scalar NLL on retain data.
        gamma: weight of the forget term.
        alpha: weight of the retain term.

    Returns:
        Scalar ``-gamma * forget_nll + alpha * retain_nll``.
    """
    # TOFU (Maini et al. 2024, arXiv 2401.06121) §4 "Gradient Difference": L = -L(S_F) + L(S_R)
    return -gamma * forget_nll + alpha * retain_nll


def kl_to_reference(logits: torch.Tensor, ref_logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """KL(reference || model) per position, mean over masked positions.

    Args:
        logits: (B, T, V) logits of the model being trained.
        ref_logits: (B, T, V) logits of the frozen reference model (detached here).
        mask: (B, T) 1 where the position counts.

    Returns:
        Scalar ``mean_t sum_v p_ref (log p_ref - log p_model)`` (0 with grad if the mask is empty).
    """
    # TOFU (Maini et al. 2024, arXiv 2401.06121) §4 "KL Minimization": KL(M_original || M_current) on S_R
    logp = torch.log_softmax(logits.float(), dim=-1)
    ref_logp = torch.log_softmax(ref_logits.detach().float(), dim=-1)
    kl = (ref_logp.exp() * (ref_logp - logp)).sum(dim=-1)  # (B, T)
    return _masked_mean(kl, mask)


def distillation_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, mask: torch.Tensor,
                    temperature: float = 1.0) -> torch.Tensor:
    """KL(teacher || student) of the next-token distributions at temperature ``T``, mean over masked positions.

    Args:
        student_logits: (B, T, V) logits of the model being trained.
        teacher_logits: (B, T, V) logits of the teacher (detached here).
        mask: (B, T) 1 where the position counts (real tokens).
        temperature: softens both distributions; the loss is scaled by ``T^2`` (Hinton et al. 2015) so its
            gradient keeps the same size whatever ``T``.

    Returns:
        Scalar ``T^2 mean_t sum_v p_teacher (log p_teacher - log p_student)``, both at temperature ``T``.
    """
    # UNDO (Lee et al. 2025, arXiv 2506.06278) §4: distil the unlearned teacher's outputs into the noised student
    teacher_logp = torch.log_softmax(teacher_logits.detach().float() / temperature, dim=-1)
    student_logp = torch.log_softmax(student_logits.float() / temperature, dim=-1)
    kl = (teacher_logp.exp() * (teacher_logp - student_logp)).sum(dim=-1)  # (B, T)
    return temperature ** 2 * _masked_mean(kl, mask)


def kl_retain_loss(forget_nll: torch.Tensor, kl: torch.Tensor, gamma: float = 1.0,
                   alpha: float = 1.0) -> torch.Tensor:
    """Gradient ascent on the forget set plus a KL-to-reference penalty on the retain set.

    Args:
        forget_nll: scalar NLL on forget data.
        kl: scalar KL on retain data, e.g. ``kl_to_reference``.
        gamma: weight of the forget term.
        alpha: weight of the KL term.

    Returns:
        Scalar ``-gamma * forget_nll + alpha * kl``.
    """
    # TOFU (Maini et al. 2024, arXiv 2401.06121) §4 "KL Minimization": L = -L(S_F) + KL on S_R
    return -gamma * forget_nll + alpha * kl


def npo_loss(logp_model: torch.Tensor, logp_ref: torch.Tensor, beta: float) -> torch.Tensor:
    """Negative Preference Optimization on forget sequences.

    As ``beta -> 0`` the loss, less the constant ``(2/beta) log 2``, tends to
    ``mean(logp_model - logp_ref)``: gradient ascent on the sequence NLL (paper, §3).

    Args:
        logp_model: (B,) summed log-probs ``log pi_theta(y|x)`` (``sequence_logprob``).
        logp_ref: (B,) the same under the frozen reference model (detached here).
        beta: inverse temperature, > 0.

    Returns:
        Scalar ``-(2/beta) * mean(logsigmoid(-beta * (logp_model - logp_ref)))``.
    """
    if beta <= 0:
        raise ValueError(f"npo beta must be > 0, got {beta}; use gradient_ascent_loss for the beta -> 0 limit")
    log_ratio = logp_model.float() - logp_ref.detach().float()  # (B,)
    # NPO (Zhang et al. 2024, arXiv 2404.05868) eq. 3: -(2/beta) E[log sigma(-beta log(pi_theta / pi_ref))]
    return -(2.0 / beta) * F.logsigmoid(-beta * log_ratio).mean()


def simnpo_loss(logp_model: torch.Tensor, lengths: torch.Tensor, beta: float,
                gamma: float = 0.0) -> torch.Tensor:
    """SimNPO: reference-free, length-normalised NPO.

    Args:
        logp_model: (B,) summed log-probs ``log pi_theta(y|x)``.
        lengths: (B,) response lengths ``|y|`` (``sequence_token_count``); clamped to >= 1.
        beta: inverse temperature, > 0.
        gamma: reward margin.

    Returns:
        Scalar ``-(2/beta) * mean(logsigmoid(-(beta/|y|) * logp_model - gamma))``.
    """
    if beta <= 0:
        raise ValueError(f"simnpo beta must be > 0, got {beta}")
    length = lengths.to(torch.float32).clamp_min(1.0)
    # SimNPO (Fan et al. 2024, arXiv 2410.07163) eq. 4: -(2/beta) E[log sigma(-(beta/|y|) log pi_theta(y|x) - gamma)]
    return -(2.0 / beta) * F.logsigmoid(-(beta / length) * logp_model.float() - gamma).mean()


def rmu_forget_loss(hidden: torch.Tensor, control_vector: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """RMU forget loss: pull forget-token activations towards the scaled random vector ``c * u``.

    Follows the official code (``F.mse_loss``): squared error averaged over hidden dims, then over
    masked tokens, i.e. the paper's ``||h - c u||^2`` divided by H. The official code does not mask
    padding; here padding is left out.

    Args:
        hidden: (B, T, H) activations of the model being trained at the chosen layer.
        control_vector: (H,), (B, 1, H) or (B, T, H) target ``c * u`` (broadcast over tokens).
        mask: (B, T) 1 on tokens that count.

    Returns:
        Scalar loss (0 with grad if the mask is empty).
    """
    target = control_vector.detach().float()
    # RMU (Li et al. 2024, WMDP, arXiv 2403.03218) eq. 1: (1/L) sum_t ||M_updated(t) - c u||^2
    per_token = (hidden.float() - target).pow(2).mean(dim=-1)  # (B, T)
    return _masked_mean(per_token, mask)


def rmu_retain_loss(hidden: torch.Tensor, frozen_hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """RMU retain loss: keep retain-token activations at the frozen model's (MSE per element).

    Args:
        hidden: (B, T, H) activations of the model being trained.
        frozen_hidden: (B, T, H) activations of the frozen model at the same layer (detached here).
        mask: (B, T) 1 on tokens that count.

    Returns:
        Scalar loss (0 with grad if the mask is empty).
    """
    # RMU (Li et al. 2024, WMDP, arXiv 2403.03218) §4 retain loss: (1/L) sum_t ||M_updated(t) - M_frozen(t)||^2
    per_token = (hidden.float() - frozen_hidden.detach().float()).pow(2).mean(dim=-1)  # (B, T)
    return _masked_mean(per_token, mask)


def adaptive_rmu_coefficient(frozen_hidden: torch.Tensor, mask: torch.Tensor, beta: float) -> torch.Tensor:
    """Adaptive RMU steering coefficient per input: ``beta * ||h_frozen(x)||``.

    ``||h_frozen(x)||`` is the mean L2 norm of the frozen activations over the input's masked
    tokens. The control vector is then ``coef[:, None, None] * u`` (for ``rmu_forget_loss``).

    Args:
        frozen_hidden: (B, T, H) frozen-model activations on the forget inputs (detached here).
        mask: (B, T) 1 on tokens that count.
        beta: scale factor.

    Returns:
        (B,) coefficients, no grad (0 for a row with an empty mask).
    """
    norms = frozen_hidden.detach().float().norm(dim=-1)  # (B, T)
    # Adaptive RMU (Dang et al. 2024, arXiv 2408.06223), adaptive forget loss: c = beta * ||h_frozen^(l)(x_F)||
    return beta * _masked_row_mean(norms, mask)


def cosine_forget_loss(hidden: torch.Tensor, direction: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Push activations to point along ``direction``: mean over masked tokens of ``1 - cos(h_t, d)``.

    Args:
        hidden: (B, T, H) activations of the model being trained.
        direction: (H,), (B, 1, H) or (B, T, H) target direction (need not be unit length; detached).
        mask: (B, T) 1 on tokens that count.

    Returns:
        Scalar in [0, 2] (0 with grad if the mask is empty).
    """
    h = hidden.float()
    d = direction.detach().float().expand_as(h)
    # our design after Atil, Gupta & Passonneau 2026 (arXiv 2605.26454, abstract): 1 - cos(h_t, d)
    per_token = 1.0 - F.cosine_similarity(h, d, dim=-1, eps=1e-8)  # (B, T)
    return _masked_mean(per_token, mask)


def cosine_retain_loss(hidden: torch.Tensor, frozen_hidden: torch.Tensor, mask: torch.Tensor,
                       kind: str = "mse") -> torch.Tensor:
    """Keep retain activations at the frozen model's, by MSE or by direction.

    Args:
        hidden: (B, T, H) activations of the model being trained.
        frozen_hidden: (B, T, H) frozen-model activations (detached here).
        mask: (B, T) 1 on tokens that count.
        kind: ``"mse"`` (same as ``rmu_retain_loss``) or ``"cosine"`` (``1 - cos(h_t, h_frozen_t)``).

    Returns:
        Scalar loss (0 with grad if the mask is empty).
    """
    if kind == "mse":
        return rmu_retain_loss(hidden, frozen_hidden, mask)
    if kind == "cosine":
        # our design after Atil, Gupta & Passonneau 2026 (arXiv 2605.26454, abstract): 1 - cos(h_t, h_frozen_t)
        per_token = 1.0 - F.cosine_similarity(hidden.float(), frozen_hidden.detach().float(), dim=-1, eps=1e-8)
        return _masked_mean(per_token, mask)
    raise ValueError(f"cosine_retain_loss kind must be 'mse' or 'cosine', got {kind!r}")


def _unit(direction: torch.Tensor) -> torch.Tensor:
    d = direction.float()
    return d / d.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def probe_direction_loss(hidden_states: list[torch.Tensor], directions: list[torch.Tensor],
                         mask: torch.Tensor, weights: list[float] | None = None) -> torch.Tensor:
    """Squared projection of activations onto per-layer probe directions, weighted over layers.

    Args:
        hidden_states: L tensors (B, T, H), one per chosen layer.
        directions: L probe directions (H,) (normalised here to unit length; detached).
        mask: (B, T) 1 on tokens that count.
        weights: L non-negative layer weights (default all 1); must not sum to 0.

    Returns:
        Scalar ``sum_l w_l * mean_t (h_lt . d_l)^2 / sum_l w_l`` (0 with grad if the mask is empty).
    """
    if len(hidden_states) != len(directions) or not hidden_states:
        raise ValueError(f"need one probe direction per hidden state, got {len(hidden_states)} hidden "
                         f"states and {len(directions)} directions")
    layer_weights = [1.0] * len(hidden_states) if weights is None else [float(w) for w in weights]
    if len(layer_weights) != len(hidden_states):
        raise ValueError(f"need one weight per layer, got {len(layer_weights)} for {len(hidden_states)} layers")
    if sum(layer_weights) <= 0:
        raise ValueError(f"probe layer weights must sum to > 0, got {layer_weights}")
    per_layer = []
    for hidden, direction in zip(hidden_states, directions):
        # our design after Atil, Gupta & Passonneau 2026 (arXiv 2605.26454, abstract): mean_t (h_t . d)^2
        projection = hidden.float() @ _unit(direction.detach())  # (B, T)
        per_layer.append(_masked_mean(projection.pow(2), mask))
    return sum(w * loss for w, loss in zip(layer_weights, per_layer)) / sum(layer_weights)
