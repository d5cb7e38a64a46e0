"""Loss maths checked against numbers computed by hand (``math``), not by the code under test."""

from __future__ import annotations

import math

import pytest
import torch

from obliviate.losses import (
    IGNORE_INDEX,
    adaptive_rmu_coefficient,
    cosine_forget_loss,
    cosine_retain_loss,
    grad_diff_loss,
    gradient_ascent_loss,
    kl_retain_loss,
    kl_to_reference,
    neutralize_tokens,
    npo_loss,
    probe_direction_loss,
    rmu_forget_loss,
    rmu_retain_loss,
    sequence_logprob,
    sequence_token_count,
    shift_for_next_token,
    simnpo_loss,
    soft_label_kl,
    token_nll,
    whp_generic_logits,
)


def log_softmax(row: list[float]) -> list[float]:
    lse = math.log(sum(math.exp(x) for x in row))
    return [x - lse for x in row]


def log_sigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x))


# rows used throughout: log-softmax of [1, 2, 3] and [0, 0, ln 2] worked out by hand
ROW_A = [1.0, 2.0, 3.0]
ROW_B = [0.0, 0.0, math.log(2.0)]  # softmax = [1/4, 1/4, 1/2]
LOGITS = torch.tensor([[ROW_A, ROW_B]])  # (1, 2, 3)


def assert_close(actual: torch.Tensor, expected: float, tol: float = 1e-5) -> None:
    assert actual.shape == ()
    assert abs(actual.item() - expected) < tol, (actual.item(), expected)


def test_hand_log_softmax_of_row_b_is_quarters_and_half():
    assert log_softmax(ROW_B) == pytest.approx([math.log(0.25), math.log(0.25), math.log(0.5)])


# --- the lead's functions ----------------------------------------------------------------------

def test_token_nll_is_mean_over_labelled_positions():
    labels = torch.tensor([[2, 0]])
    expected = -(log_softmax(ROW_A)[2] + math.log(0.25)) / 2
    assert_close(token_nll(LOGITS, labels), expected)


def test_token_nll_ignores_ignore_index():
    labels = torch.tensor([[IGNORE_INDEX, 2]])
    assert_close(token_nll(LOGITS, labels), -math.log(0.5))
    changed = LOGITS.clone()
    changed[0, 0] = torch.tensor([9.0, -4.0, 0.5])
    assert_close(token_nll(changed, labels), -math.log(0.5))


def test_token_nll_with_nothing_labelled_is_zero_with_grad():
    logits = LOGITS.clone().requires_grad_(True)
    loss = token_nll(logits, torch.full((1, 2), IGNORE_INDEX))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(logits.grad, torch.zeros_like(logits))


def test_shift_for_next_token_shifts_and_ignores_last_and_padding():
    ids = torch.tensor([[5, 6, 7, 8], [9, 10, 0, 0]])
    assert shift_for_next_token(ids).tolist() == [[6, 7, 8, IGNORE_INDEX], [10, 0, 0, IGNORE_INDEX]]
    attention = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    labels = shift_for_next_token(ids, attention)
    assert labels.tolist() == [[6, 7, 8, IGNORE_INDEX], [10, IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX]]
    assert ids.tolist() == [[5, 6, 7, 8], [9, 10, 0, 0]]


def test_whp_generic_logits_pushes_down_reinforced_tokens_only():
    base = torch.tensor([1.0, 2.0, 3.0])
    reinforced = torch.tensor([2.0, 1.0, 3.5])
    # v_base - alpha * relu(v_reinf - v_base) = [1 - 2*1, 2 - 0, 3 - 2*0.5]
    assert whp_generic_logits(base, reinforced, alpha=2.0).tolist() == pytest.approx([-1.0, 2.0, 2.0])
    assert whp_generic_logits(base, reinforced, alpha=0.0).tolist() == pytest.approx([1.0, 2.0, 3.0])


def test_neutralize_tokens_sets_row_mean_and_copies():
    logits = torch.tensor([1.0, 2.0, 3.0, 6.0])  # mean 3
    out = neutralize_tokens(logits, torch.tensor([3]))
    assert out.tolist() == pytest.approx([1.0, 2.0, 3.0, 3.0])
    assert logits.tolist() == [1.0, 2.0, 3.0, 6.0]
    rows = torch.tensor([[1.0, 2.0, 3.0, 6.0], [0.0, 0.0, 4.0, 0.0]])  # means 3 and 1
    out = neutralize_tokens(rows, torch.tensor([0, 2]))
    assert out.flatten().tolist() == pytest.approx([3.0, 2.0, 3.0, 6.0, 1.0, 0.0, 1.0, 0.0])


def test_soft_label_kl_against_hand_value_and_mask():
    target_ids = torch.tensor([[[2, 0], [0, 1]]])  # (1, 2, 2)
    target_probs = torch.tensor([[[0.75, 0.25], [0.5, 0.5]]])
    la, lb = log_softmax(ROW_A), log_softmax(ROW_B)
    kl_a = 0.75 * (math.log(0.75) - la[2]) + 0.25 * (math.log(0.25) - la[0])
    kl_b = 0.5 * (math.log(0.5) - lb[0]) + 0.5 * (math.log(0.5) - lb[1])
    assert_close(soft_label_kl(LOGITS, target_ids, target_probs, torch.tensor([[1, 1]])), (kl_a + kl_b) / 2)
    assert_close(soft_label_kl(LOGITS, target_ids, target_probs, torch.tensor([[0, 1]])), kl_b)
    assert_close(soft_label_kl(LOGITS, target_ids, target_probs, torch.tensor([[0, 0]])), 0.0)


# --- sequence log-probs ------------------------------------------------------------------------

def test_sequence_logprob_sums_labelled_tokens():
    logits = torch.tensor([[ROW_A, ROW_B], [ROW_B, ROW_A]])  # (2, 2, 3)
    labels = torch.tensor([[2, 0], [IGNORE_INDEX, 1]])
    expected = [log_softmax(ROW_A)[2] + math.log(0.25), log_softmax(ROW_A)[1]]
    out = sequence_logprob(logits, labels)
    assert out.shape == (2,)
    assert out.tolist() == pytest.approx(expected, abs=1e-5)
    assert sequence_token_count(labels).tolist() == [2, 1]


def test_sequence_logprob_ignores_unlabelled_positions_and_empty_rows():
    labels = torch.tensor([[IGNORE_INDEX, 2], [IGNORE_INDEX, IGNORE_INDEX]])
    logits = torch.stack([LOGITS[0], LOGITS[0]])
    changed = logits.clone()
    changed[:, 0] = torch.tensor([50.0, -3.0, 7.0])
    for lg in (logits, changed):
        assert sequence_logprob(lg, labels).tolist() == pytest.approx([math.log(0.5), 0.0])
    assert sequence_token_count(labels).tolist() == [1, 0]


# --- combinations of NLLs ----------------------------------------------------------------------

def test_gradient_ascent_and_grad_diff_and_kl_retain_combinations():
    forget, retain, kl = torch.tensor(2.5), torch.tensor(1.5), torch.tensor(0.25)
    assert_close(gradient_ascent_loss(forget), -2.5)
    assert_close(grad_diff_loss(forget, retain), -2.5 + 1.5)
    assert_close(grad_diff_loss(forget, retain, gamma=2.0, alpha=3.0), -5.0 + 4.5)
    assert_close(kl_retain_loss(forget, kl), -2.5 + 0.25)
    assert_close(kl_retain_loss(forget, kl, gamma=0.5, alpha=4.0), -1.25 + 1.0)


# --- KL to reference ---------------------------------------------------------------------------

def test_kl_to_reference_against_hand_value():
    ref = torch.tensor([[ROW_B, ROW_B]])
    model = LOGITS
    p_ref = [0.25, 0.25, 0.5]
    la = log_softmax(ROW_A)
    kl_first = sum(p * (math.log(p) - lq) for p, lq in zip(p_ref, la))
    # second position: model == reference, KL 0
    assert_close(kl_to_reference(model, ref, torch.tensor([[1, 1]])), kl_first / 2)
    assert_close(kl_to_reference(model, ref, torch.tensor([[1, 0]])), kl_first)
    assert_close(kl_to_reference(model, ref, torch.tensor([[0, 1]])), 0.0)


def test_kl_to_reference_respects_mask_and_handles_empty_mask():
    ref = torch.tensor([[ROW_B, ROW_A]])
    mask = torch.tensor([[1, 0]])
    changed = LOGITS.clone()
    changed[0, 1] = torch.tensor([-20.0, 5.0, 1.0])
    assert kl_to_reference(LOGITS, ref, mask).item() == pytest.approx(kl_to_reference(changed, ref, mask).item())
    logits = LOGITS.clone().requires_grad_(True)
    loss = kl_to_reference(logits, ref, torch.zeros(1, 2))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(logits.grad, torch.zeros_like(logits))


def test_kl_to_reference_does_not_train_the_reference():
    ref = torch.tensor([[ROW_B, ROW_A]], requires_grad=True)
    logits = LOGITS.clone().requires_grad_(True)
    kl_to_reference(logits, ref, torch.ones(1, 2)).backward()
    assert ref.grad is None
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


# --- NPO / SimNPO ------------------------------------------------------------------------------

def test_npo_loss_against_hand_value():
    logp_model = torch.tensor([-2.0, -5.0])
    logp_ref = torch.tensor([-3.0, -4.0])
    beta = 0.5
    # log ratios 1 and -1
    expected = -(2 / beta) * (log_sigmoid(-0.5) + log_sigmoid(0.5)) / 2
    assert_close(npo_loss(logp_model, logp_ref, beta), expected)
    assert_close(npo_loss(logp_ref, logp_ref, beta), (2 / beta) * math.log(2.0))


def test_npo_small_beta_tends_to_gradient_ascent():
    # NPO paper §3: lim_{beta->0} (L_NPO - (2/beta) log 2) = E[log pi_theta(y|x) - log pi_ref(y|x)],
    # i.e. gradient ascent on the sequence NLL: d/d logp_model -> 1/B, as for mean(logp_model).
    logp_model = torch.tensor([-2.0, -5.0, -9.0], requires_grad=True)
    logp_ref = torch.tensor([-3.0, -4.0, -10.0])
    beta = 1e-4
    loss = npo_loss(logp_model, logp_ref, beta)
    loss.backward()
    assert logp_model.grad.tolist() == pytest.approx([1 / 3] * 3, rel=1e-3)
    ga_limit = (logp_model.detach() - logp_ref).mean().item()  # (1 - 1 + 1) / 3
    assert loss.item() - (2 / beta) * math.log(2.0) == pytest.approx(ga_limit, abs=1e-2)


def test_npo_gradient_shrinks_for_already_forgotten_sequences():
    # weight on each sequence is 2*sigmoid(beta * log ratio): small once pi_theta << pi_ref
    logp_model = torch.tensor([0.0, -40.0], requires_grad=True)
    npo_loss(logp_model, torch.zeros(2), beta=0.5).backward()
    assert logp_model.grad[0].item() == pytest.approx(2 * 0.5 / 2)
    assert logp_model.grad[1].item() == pytest.approx(2 / (1 + math.exp(20.0)) / 2, rel=1e-4)


def test_npo_rejects_non_positive_beta_and_does_not_train_the_reference():
    with pytest.raises(ValueError, match="beta"):
        npo_loss(torch.zeros(2), torch.zeros(2), beta=0.0)
    logp_ref = torch.zeros(2, requires_grad=True)
    npo_loss(torch.zeros(2, requires_grad=True), logp_ref, beta=1.0).backward()
    assert logp_ref.grad is None


def test_simnpo_loss_against_hand_value():
    logp_model = torch.tensor([-4.0, -3.0])
    lengths = torch.tensor([2, 3])
    beta, gamma = 2.0, 0.5
    # -(beta/|y|) logp - gamma = [4 - 0.5, 2 - 0.5]
    expected = -(2 / beta) * (log_sigmoid(3.5) + log_sigmoid(1.5)) / 2
    assert_close(simnpo_loss(logp_model, lengths, beta, gamma), expected)
    expected_no_margin = -(2 / beta) * (log_sigmoid(4.0) + log_sigmoid(2.0)) / 2
    assert_close(simnpo_loss(logp_model, lengths, beta), expected_no_margin)


def test_simnpo_zero_length_row_does_not_divide_by_zero():
    logp_model = torch.tensor([0.0, -3.0], requires_grad=True)
    loss = simnpo_loss(logp_model, torch.tensor([0, 3]), beta=1.0)
    assert_close(loss, -(log_sigmoid(0.0) + log_sigmoid(1.0)))
    loss.backward()
    assert torch.isfinite(logp_model.grad).all()
    with pytest.raises(ValueError, match="beta"):
        simnpo_loss(logp_model, torch.tensor([1, 3]), beta=-1.0)


# --- RMU ---------------------------------------------------------------------------------------

HIDDEN = torch.tensor([[[1.0, 2.0], [3.0, -1.0]]])  # (1, 2, 2)


def test_rmu_forget_loss_is_elementwise_mse_over_masked_tokens():
    control = torch.tensor([2.0, 0.0])
    # token 0: ((1-2)^2 + 2^2)/2 = 2.5 ; token 1: ((3-2)^2 + 1)/2 = 1
    assert_close(rmu_forget_loss(HIDDEN, control, torch.tensor([[1, 1]])), (2.5 + 1.0) / 2)
    assert_close(rmu_forget_loss(HIDDEN, control, torch.tensor([[0, 1]])), 1.0)
    for shaped in (control.view(1, 1, 2), control.expand(1, 2, 2)):
        assert_close(rmu_forget_loss(HIDDEN, shaped, torch.tensor([[1, 1]])), 1.75)


def test_rmu_forget_loss_respects_mask_and_empty_mask():
    control = torch.tensor([2.0, 0.0])
    mask = torch.tensor([[1, 0]])
    changed = HIDDEN.clone()
    changed[0, 1] = torch.tensor([100.0, float("nan")])
    assert_close(rmu_forget_loss(changed, control, mask), 2.5)
    hidden = HIDDEN.clone().requires_grad_(True)
    loss = rmu_forget_loss(hidden, control, torch.zeros(1, 2))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(hidden.grad, torch.zeros_like(hidden))


def test_rmu_retain_loss_against_hand_value():
    frozen = torch.tensor([[[1.0, 0.0], [1.0, 1.0]]])
    # token 0: (0 + 4)/2 = 2 ; token 1: (4 + 4)/2 = 4
    assert_close(rmu_retain_loss(HIDDEN, frozen, torch.tensor([[1, 1]])), 3.0)
    assert_close(rmu_retain_loss(HIDDEN, frozen, torch.tensor([[1, 0]])), 2.0)
    assert_close(rmu_retain_loss(HIDDEN, HIDDEN, torch.tensor([[1, 1]])), 0.0)


def test_adaptive_rmu_coefficient_is_beta_times_mean_frozen_norm():
    frozen = torch.tensor([[[3.0, 4.0], [0.0, 5.0]], [[6.0, 8.0], [1.0, 0.0]], [[1.0, 1.0], [2.0, 2.0]]])
    mask = torch.tensor([[1, 1], [1, 0], [0, 0]])
    # norms: row 0 -> 5, 5 ; row 1 -> 10 (second token masked) ; row 2 -> empty mask
    coef = adaptive_rmu_coefficient(frozen.requires_grad_(True), mask, beta=2.0)
    assert coef.shape == (3,)
    assert coef.tolist() == pytest.approx([10.0, 20.0, 0.0])
    assert not coef.requires_grad
    frozen_row1 = torch.tensor([[[6.0, 8.0], [1.0, 0.0]]])
    both = adaptive_rmu_coefficient(frozen_row1, torch.ones(1, 2), beta=1.0)
    assert both.tolist() == pytest.approx([(10.0 + 1.0) / 2])


def test_adaptive_rmu_coefficient_feeds_rmu_forget_loss():
    frozen = torch.tensor([[[3.0, 4.0]], [[6.0, 8.0]]])  # (2, 1, 2), norms 5 and 10
    u = torch.tensor([1.0, 0.0])
    coef = adaptive_rmu_coefficient(frozen, torch.ones(2, 1), beta=0.2)  # [1, 2]
    control = coef[:, None, None] * u  # (2, 1, 2)
    hidden = torch.zeros(2, 1, 2)
    # MSE to [1, 0] is 0.5, to [2, 0] is 2
    assert_close(rmu_forget_loss(hidden, control, torch.ones(2, 1)), (0.5 + 2.0) / 2)


# --- cosine losses -----------------------------------------------------------------------------

def test_cosine_forget_loss_against_hand_value_and_scale_of_direction():
    hidden = torch.tensor([[[1.0, 0.0], [1.0, 1.0], [0.0, -2.0]]])
    direction = torch.tensor([1.0, 0.0])
    per_token = [0.0, 1.0 - 1.0 / math.sqrt(2.0), 1.0]
    assert_close(cosine_forget_loss(hidden, direction, torch.ones(1, 3)), sum(per_token) / 3)
    assert_close(cosine_forget_loss(hidden, 7.0 * direction, torch.tensor([[0, 1, 0]])), per_token[1])
    assert_close(cosine_forget_loss(hidden, -direction, torch.tensor([[1, 0, 0]])), 2.0)


def test_cosine_forget_loss_respects_mask_and_stays_finite_at_zero_hidden():
    direction = torch.tensor([1.0, 0.0])
    hidden = torch.tensor([[[0.0, 0.0], [1.0, 1.0]]], requires_grad=True)
    loss = cosine_forget_loss(hidden, direction, torch.tensor([[1, 1]]))
    loss.backward()
    assert torch.isfinite(hidden.grad).all()
    changed = torch.tensor([[[0.0, 0.0], [-5.0, 3.0]]])
    mask = torch.tensor([[1, 0]])
    assert cosine_forget_loss(changed, direction, mask).item() == pytest.approx(
        cosine_forget_loss(hidden.detach(), direction, mask).item())
    assert_close(cosine_forget_loss(hidden, direction, torch.zeros(1, 2)), 0.0)


def test_cosine_retain_loss_kinds():
    frozen = torch.tensor([[[2.0, 4.0], [1.0, 1.0]]])
    mask = torch.tensor([[1, 1]])
    # token 0: HIDDEN [1, 2] parallel to [2, 4] -> 0 ; token 1: [3, -1] . [1, 1] = 2, norms sqrt10, sqrt2
    expected_cos = (0.0 + (1.0 - 2.0 / (math.sqrt(10.0) * math.sqrt(2.0)))) / 2
    assert_close(cosine_retain_loss(HIDDEN, frozen, mask, kind="cosine"), expected_cos)
    # mse: token 0: (1 + 4)/2 = 2.5 ; token 1: (4 + 4)/2 = 4
    assert_close(cosine_retain_loss(HIDDEN, frozen, mask), (2.5 + 4.0) / 2)
    assert_close(cosine_retain_loss(HIDDEN, frozen, mask, kind="mse"), rmu_retain_loss(HIDDEN, frozen, mask).item())
    with pytest.raises(ValueError, match="kind"):
        cosine_retain_loss(HIDDEN, frozen, mask, kind="l1")


# --- probe directions --------------------------------------------------------------------------

def test_probe_direction_loss_against_hand_value():
    layer0 = torch.tensor([[[1.0, 2.0], [3.0, -1.0]]])
    layer1 = torch.tensor([[[0.0, 1.0], [2.0, 2.0]]])
    d0 = torch.tensor([1.0, 0.0])
    d1 = torch.tensor([0.0, 1.0])
    mask = torch.tensor([[1, 1]])
    # layer 0: projections 1, 3 -> mean square 5 ; layer 1: projections 1, 2 -> 2.5
    assert_close(probe_direction_loss([layer0, layer1], [d0, d1], mask), (5.0 + 2.5) / 2)
    assert_close(probe_direction_loss([layer0, layer1], [d0, d1], mask, weights=[3.0, 1.0]), (15.0 + 2.5) / 4)
    assert_close(probe_direction_loss([layer0, layer1], [d0, d1], torch.tensor([[1, 0]])), (1.0 + 1.0) / 2)
    # a non-unit direction is normalised
    assert_close(probe_direction_loss([layer0], [5.0 * d0], mask), 5.0)


def test_probe_direction_loss_is_zero_orthogonal_to_the_direction_and_on_empty_mask():
    torch.manual_seed(0)
    hidden = torch.randn(2, 3, 4)
    direction = torch.randn(4)
    orthogonal = torch.tensor([[[0.0, 1.0], [0.0, -2.0]]])  # (1, 2, 2), no component along [3, 0]
    assert probe_direction_loss([orthogonal], [torch.tensor([3.0, 0.0])], torch.ones(1, 2)).item() == 0.0
    h = hidden.clone().requires_grad_(True)
    loss = probe_direction_loss([h], [direction], torch.zeros(2, 3))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(h.grad, torch.zeros_like(h))


def test_probe_direction_loss_rejects_mismatched_inputs():
    h = torch.zeros(1, 1, 2)
    d = torch.tensor([1.0, 0.0])
    with pytest.raises(ValueError, match="direction"):
        probe_direction_loss([h, h], [d], torch.ones(1, 1))
    with pytest.raises(ValueError, match="weight"):
        probe_direction_loss([h], [d], torch.ones(1, 1), weights=[1.0, 2.0])
    with pytest.raises(ValueError, match="sum"):
        probe_direction_loss([h], [d], torch.ones(1, 1), weights=[0.0])


# --- gradients: finite everywhere, zero where nothing counts -----------------------------------

def _token_losses():
    torch.manual_seed(1)
    ref_logits = torch.randn(2, 3, 5)
    frozen = torch.randn(2, 3, 4)
    direction = torch.randn(4)
    return {
        "kl_to_reference": (lambda x, m: kl_to_reference(x, ref_logits, m), (2, 3, 5)),
        "rmu_forget": (lambda x, m: rmu_forget_loss(x, 3.0 * direction, m), (2, 3, 4)),
        "rmu_retain": (lambda x, m: rmu_retain_loss(x, frozen, m), (2, 3, 4)),
        "cosine_forget": (lambda x, m: cosine_forget_loss(x, direction, m), (2, 3, 4)),
        "cosine_retain": (lambda x, m: cosine_retain_loss(x, frozen, m, kind="cosine"), (2, 3, 4)),
        "probe": (lambda x, m: probe_direction_loss([x, 2 * x], [direction, -direction], m), (2, 3, 4)),
    }


@pytest.mark.parametrize("name", list(_token_losses()))
def test_token_losses_have_finite_gradients_and_skip_padded_rows(name):
    loss_fn, shape = _token_losses()[name]
    torch.manual_seed(2)
    x = torch.randn(*shape, requires_grad=True)
    mask = torch.tensor([[1, 1, 0], [0, 0, 0]])  # second row all padding
    loss = loss_fn(x, mask)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(x.grad).all()
    assert x.grad[0, :2].abs().sum() > 0
    assert torch.equal(x.grad[0, 2], torch.zeros_like(x.grad[0, 2]))
    assert torch.equal(x.grad[1], torch.zeros_like(x.grad[1]))


def test_sequence_losses_have_finite_gradients():
    torch.manual_seed(3)
    logits = torch.randn(2, 3, 5, requires_grad=True)
    labels = torch.tensor([[1, 4, IGNORE_INDEX], [IGNORE_INDEX] * 3])
    logp = sequence_logprob(logits, labels)
    loss = npo_loss(logp, logp.detach() - 1.0, beta=0.1) + simnpo_loss(logp, sequence_token_count(labels), beta=2.5)
    loss.backward()
    assert torch.isfinite(logits.grad).all()
    assert logits.grad[0, :2].abs().sum() > 0
    assert torch.equal(logits.grad[0, 2], torch.zeros(5))
    assert torch.equal(logits.grad[1], torch.zeros(3, 5))
