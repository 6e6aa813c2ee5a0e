"""GRPO math against hand-computed cases (the arithmetic is in the comments).

Float64 throughout so hand values compare tightly; the module is dtype-agnostic.
"""

from __future__ import annotations

import math

import pytest
import torch

from rewardkit.errors import RewardkitError
from rewardkit.losses import LossConfig, PolicyLoss, group_advantages, k3_kl, loss_mask

F64 = torch.float64
LN2 = math.log(2)


def t(x) -> torch.Tensor:
    return torch.tensor(x, dtype=F64)


def leaf(x) -> torch.Tensor:
    return torch.tensor(x, dtype=F64, requires_grad=True)


def run(cfg: LossConfig, logp, old, ref, adv, mask, **kw):
    """Loss, d loss / d logp, diagnostics."""
    loss, stats = PolicyLoss(cfg)(logp, old, ref, adv, mask, **kw)
    (grad,) = torch.autograd.grad(loss, logp)
    return loss.item(), grad, stats


# --- advantages ---

# Group 0: [0, .5, 1]: mean .5, unbiased std sqrt((.25 + 0 + .25) / 2) = .5.
# Group 1: [.25, .25, .25]: all tie, std 0 (floored to 1e-4), deviations 0.
REWARDS = [[0.0, 0.5, 1.0], [0.25, 0.25, 0.25]]


def test_advantages_group_scale_with_a_tied_group():
    adv, stats = group_advantages(t(REWARDS), "group")
    # group 0: ([0, .5, 1] - .5) / .5 = [-1, 0, 1]; group 1: 0 / 1e-4 = 0
    torch.testing.assert_close(adv, t([[-1.0, 0.0, 1.0], [0.0, 0.0, 0.0]]))
    assert stats["zero_std_fraction"] == 0.5  # 1 of 2 groups
    # all six advantages [-1, 0, 1, 0, 0, 0]: mean 0, unbiased std sqrt(2 / 5)
    assert stats["advantage_mean"] == 0.0
    assert stats["advantage_std"] == pytest.approx(math.sqrt(0.4))
    assert (stats["advantage_min"], stats["advantage_max"]) == (-1.0, 1.0)
    # rewards: mean (1.5 + .75) / 6 = .375; squared deviations .140625 + .015625 + .390625
    # + 3 * .015625 = .59375, / 5 = .11875
    assert stats["reward_mean"] == pytest.approx(0.375)
    assert stats["reward_std"] == pytest.approx(math.sqrt(0.11875))


def test_advantages_batch_scale_divides_by_the_batch_std_keeps_the_group_mean():
    adv, _ = group_advantages(t(REWARDS), "batch")
    s = math.sqrt(0.11875)  # batch std, from the test above
    torch.testing.assert_close(adv, t([[-0.5 / s, 0.0, 0.5 / s], [0.0, 0.0, 0.0]]))


def test_advantages_no_scaling_is_the_centred_reward():
    adv, stats = group_advantages(t(REWARDS), "none")
    torch.testing.assert_close(adv, t([[-0.5, 0.0, 0.5], [0.0, 0.0, 0.0]]))
    assert stats["zero_std_fraction"] == 0.5  # counted whatever the scaling


def test_advantages_std_floor():
    # Group 0: [0, 0, 3e-5]: mean 1e-5, deviations [-1e-5, -1e-5, 2e-5], unbiased std
    # sqrt((1 + 1 + 4)e-10 / 2) = 1.73e-5 < 1e-4, so the floor divides: [-.1, -.1, .2].
    # Group 1: [0, 1, 2]: mean 1, std 1 > 1e-4: [-1, 0, 1].
    rewards = t([[0.0, 0.0, 3e-5], [0.0, 1.0, 2.0]])
    adv, stats = group_advantages(rewards, "group", std_floor=1e-4)
    torch.testing.assert_close(adv, t([[-0.1, -0.1, 0.2], [-1.0, 0.0, 1.0]]))
    assert stats["zero_std_fraction"] == 0.0  # small but not tied
    # A floor of 2 also caps group 1 (std 1): [-1, 0, 1] / 2.
    adv, _ = group_advantages(rewards, "group", std_floor=2.0)
    torch.testing.assert_close(adv[1], t([-0.5, 0.0, 0.5]))


def test_advantages_std_mode_add_is_trls_std_plus_eps():
    # The groups of test_advantages_std_floor, divided by std + 1e-4 instead:
    # group 0: std sqrt(3) * 1e-5, deviations [-1e-5, -1e-5, 2e-5] / (1.732e-5 + 1e-4);
    # group 1: std 1: [-1, 0, 1] / 1.0001 (no longer exactly standardised).
    rewards = t([[0.0, 0.0, 3e-5], [0.0, 1.0, 2.0]])
    adv, _ = group_advantages(rewards, "group", std_floor=1e-4, std_mode="add")
    d0 = math.sqrt(3) * 1e-5 + 1e-4
    want = [[-1e-5 / d0, -1e-5 / d0, 2e-5 / d0], [-1 / 1.0001, 0.0, 1 / 1.0001]]
    torch.testing.assert_close(adv, t(want))
    # batch scale: one std over all six rewards, plus eps; "none" ignores the mode
    batch, _ = group_advantages(rewards, "batch", std_mode="add")
    torch.testing.assert_close(
        batch, (rewards - rewards.mean(1, keepdim=True)) / (rewards.std() + 1e-4)
    )
    none, _ = group_advantages(rewards, "none", std_mode="add")
    torch.testing.assert_close(none, rewards - rewards.mean(1, keepdim=True))
    # a tied group still gets 0, and an unknown mode is an error
    tied, _ = group_advantages(t([[0.5, 0.5]]), std_mode="add")
    assert (tied == 0).all()
    with pytest.raises(RewardkitError, match="std_mode"):
        group_advantages(rewards, std_mode="plus")  # type: ignore[arg-type]


def test_advantages_reject_bad_input():
    with pytest.raises(ValueError, match="G >= 2"):
        group_advantages(t([[1.0], [2.0]]))
    with pytest.raises(RewardkitError, match="NaN"):
        group_advantages(t([[1.0, float("nan")]]))
    with pytest.raises(RewardkitError, match="unknown scale"):
        group_advantages(t([[1.0, 2.0]]), "global")  # type: ignore[arg-type]
    with pytest.raises(RewardkitError, match="std_floor"):
        group_advantages(t([[1.0, 2.0]]), std_floor=0.0)


# --- normalisation of the four loss types ---

# Three completions of lengths 1, 2, 3 (T = 3), advantages [1, 2, -1], mu = 1 (ratio 1), no KL:
# every token's loss is -A. Row sums -1, -4, 3 (total -2), 6 tokens.
NORM_MASK = [[1, 0, 0], [1, 1, 0], [1, 1, 1]]
NORM_LOGP = [[-0.5, 0.0, 0.0], [-1.0, -2.0, 0.0], [-0.1, -0.2, -0.3]]
NORM_ADV = [1.0, 2.0, -1.0]


@pytest.mark.parametrize(
    ("loss_type", "extra", "expected_loss", "expected_grad_rows"),
    [
        # grpo: row means -1/1, -4/2, 3/3 -> mean (-1 - 2 + 1) / 3 = -2/3;
        # d/dlogp = -A / (N * len): -1/3, -2/6, 1/9
        ("grpo", {}, -2 / 3, [-1 / 3, -1 / 3, 1 / 9]),
        # bnpo: -2 / 6 tokens = -1/3; d/dlogp = -A / 6
        ("bnpo", {}, -1 / 3, [-1 / 6, -2 / 6, 1 / 6]),
        # dr_grpo, max_completion_length 4: -2 / (3 * 4) = -1/6; d/dlogp = -A / 12
        ("dr_grpo", {}, -1 / 6, [-1 / 12, -2 / 12, 1 / 12]),
        # dapo, local count: as bnpo here
        ("dapo", {}, -1 / 3, [-1 / 6, -2 / 6, 1 / 6]),
        # dapo, 8 tokens in the whole step: -2 / 8; d/dlogp = -A / 8
        ("dapo", {"num_tokens_global": 8}, -1 / 4, [-1 / 8, -2 / 8, 1 / 8]),
    ],
)
def test_loss_type_normalisation(loss_type, extra, expected_loss, expected_grad_rows):
    cfg = LossConfig(loss_type=loss_type, beta=0.0, max_completion_length=4)
    mask = torch.tensor(NORM_MASK, dtype=torch.bool)
    loss, grad, stats = run(cfg, leaf(NORM_LOGP), None, None, t(NORM_ADV), mask, **extra)
    assert loss == pytest.approx(expected_loss)
    torch.testing.assert_close(grad, t(expected_grad_rows)[:, None] * mask)  # 0 on padding
    assert stats["loss"] == pytest.approx(expected_loss)
    assert stats["num_tokens"] == 6.0
    assert stats["completion_length_mean"] == 2.0  # (1 + 2 + 3) / 3
    assert stats["ratio_mean"] == 1.0
    assert "kl" not in stats


# --- clipping ---


def test_clipping_takes_the_pessimistic_term_on_both_sides():
    # One token per row, old_logp 0, logp = log s, eps 0.2 -> clip range [0.8, 1.2]:
    #   s    A   s*A   clip*A  min   per-token loss  d loss_tok / d logp
    #  1.5  +1   1.5    1.2    1.2       -1.2        0      (clipped high)
    #  1.5  -1  -1.5   -1.2   -1.5        1.5        -A*s = 1.5
    #  0.5  +1   0.5    0.8    0.5       -0.5        -A*s = -0.5
    #  0.5  -1  -0.5   -0.8   -0.8        0.8        0      (clipped low)
    #  1.1  +1   1.1    1.1    1.1       -1.1        -1.1   (inside the range)
    # dapo over 5 tokens: (-1.2 + 1.5 - 0.5 + 0.8 - 1.1) / 5 = -0.1
    s = [1.5, 1.5, 0.5, 0.5, 1.1]
    logp = leaf([[math.log(x)] for x in s])
    mask = torch.ones(5, 1, dtype=torch.bool)
    adv = t([1.0, -1.0, 1.0, -1.0, 1.0])
    cfg = LossConfig(beta=0.0)
    loss, grad, stats = run(cfg, logp, torch.zeros(5, 1, dtype=F64), None, adv, mask)
    assert loss == pytest.approx(-0.1)
    torch.testing.assert_close(grad, t([[0.0], [1.5], [-0.5], [0.0], [-1.1]]) / 5)
    assert stats["clip_fraction_low"] == pytest.approx(1 / 5)
    assert stats["clip_fraction_high"] == pytest.approx(1 / 5)
    assert stats["clip_fraction"] == pytest.approx(2 / 5)
    assert stats["ratio_mean"] == pytest.approx((1.5 + 1.5 + 0.5 + 0.5 + 1.1) / 5)


@pytest.mark.parametrize(
    ("s", "adv", "eps_low", "eps_high", "expected_loss", "expected_grad"),
    [
        (1.25, 1.0, 0.2, 0.2, -1.2, 0.0),  # 1.25 > 1.2: clipped
        (1.25, 1.0, 0.2, 0.28, -1.25, -1.25),  # 1.25 < 1.28 (DAPO clip-higher): not clipped
        (0.75, -1.0, 0.2, 0.28, 0.8, 0.0),  # 0.75 < 0.8: clipped low
        (0.75, -1.0, 0.3, 0.28, 0.75, 0.75),  # 0.75 > 0.7: not clipped, -A*s = 0.75
    ],
)
def test_epsilon_low_and_high_are_separate(s, adv, eps_low, eps_high, expected_loss, expected_grad):
    cfg = LossConfig(epsilon_low=eps_low, epsilon_high=eps_high, beta=0.0)
    logp = leaf([[math.log(s)]])
    mask = torch.ones(1, 1, dtype=torch.bool)
    loss, grad, _ = run(cfg, logp, torch.zeros(1, 1, dtype=F64), None, t([adv]), mask)
    assert loss == pytest.approx(expected_loss)
    assert grad.item() == pytest.approx(expected_grad)


# --- KL ---


def test_k3_value_sign_and_zero():
    # d = ref - logp; k3 = e^d - d - 1
    # logp = ln 2, ref = 0: d = -ln 2 -> 1/2 + ln 2 - 1 = ln 2 - 1/2 = 0.1931
    # logp = 0, ref = ln 2: d = ln 2  -> 2 - ln 2 - 1 = 1 - ln 2 = 0.3069
    kl = k3_kl(t([0.0, LN2, -1.0]), t([LN2, 0.0, -1.0]))
    torch.testing.assert_close(kl, t([LN2 - 0.5, 1 - LN2, 0.0]))
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(1000, generator=gen, dtype=F64), torch.randn(1000, generator=gen, dtype=F64)
    assert (k3_kl(a, b) >= 0).all()
    assert (k3_kl(a, a) == 0).all()


KL_LOGP = [[LN2], [0.0], [-1.0]]
KL_REF = [[0.0], [LN2], [-1.0]]


def test_kl_term_value_and_gradient():
    # A = 0, so only beta * k3 remains. Per token k3 = [ln2 - 1/2, 1 - ln2, 0] (sum 1/2).
    # dapo over 3 tokens, beta 0.1: 0.1 * (1/2) / 3 = 1/60.
    # d k3 / d logp = 1 - e^(ref - logp): [1 - 1/2, 1 - 2, 0] -> times 0.1 / 3: [1/60, -1/30, 0]
    mask = torch.ones(3, 1, dtype=torch.bool)
    cfg = LossConfig(beta=0.1)
    loss, grad, stats = run(cfg, leaf(KL_LOGP), None, t(KL_REF), t([0.0, 0.0, 0.0]), mask)
    assert loss == pytest.approx(1 / 60)
    torch.testing.assert_close(grad, t([[1 / 60], [-1 / 30], [0.0]]))
    assert stats["kl"] == pytest.approx(1 / 6)  # mean k3: (1/2) / 3


def test_kl_bias_correction_weights_k3_by_the_ratio():
    # One token, A = 0, beta 1, ref 0, logp ln 1.1: k3 = 1/1.1 + ln 1.1 - 1, dk3/dlogp = 0.1/1.1.
    mask = torch.ones(1, 1, dtype=torch.bool)
    cfg = LossConfig(beta=1.0, kl_bias_correction=True)
    k3 = 1 / 1.1 + math.log(1.1) - 1
    # mu > 1, old 0: s = 1.1; loss s * k3 = 1.1 ln 1.1 - 0.1; grad s * k3 + s * dk3 = 1.1 ln 1.1
    loss, grad, stats = run(cfg, leaf([[math.log(1.1)]]), t([[0.0]]), t([[0.0]]), t([0.0]), mask)
    assert loss == pytest.approx(1.1 * math.log(1.1) - 0.1)
    assert grad.item() == pytest.approx(1.1 * math.log(1.1))
    assert stats["kl"] == pytest.approx(1.1 * k3)  # the corrected KL is what is logged
    # mu = 1: s = 1 in value, not in gradient: loss k3, grad k3 + dk3 = ln 1.1
    loss, grad, _ = run(cfg, leaf([[math.log(1.1)]]), None, t([[0.0]]), t([0.0]), mask)
    assert loss == pytest.approx(k3)
    assert grad.item() == pytest.approx(math.log(1.1))
    # without the correction the gradient is dk3 alone
    plain = LossConfig(beta=1.0)
    _, grad, _ = run(plain, leaf([[math.log(1.1)]]), None, t([[0.0]]), t([0.0]), mask)
    assert grad.item() == pytest.approx(0.1 / 1.1)


def test_beta_zero_or_no_reference_drops_kl():
    mask = torch.ones(3, 1, dtype=torch.bool)
    adv = t([1.0, 0.0, -1.0])
    # mu = 1, no KL: per-token -A -> (-1 + 0 + 1) / 3 = 0; gradient -A / 3
    for cfg, ref in ((LossConfig(beta=0.0), t(KL_REF)), (LossConfig(beta=0.1), None)):
        loss, grad, stats = run(cfg, leaf(KL_LOGP), None, ref, adv, mask)
        assert loss == 0.0
        torch.testing.assert_close(grad, -adv[:, None] / 3)
        assert "kl" not in stats


# --- mu > 1 vs mu = 1 ---


def test_old_logprobs_set_the_ratio():
    mask = torch.ones(1, 1, dtype=torch.bool)
    cfg = LossConfig(beta=0.0)
    # mu > 1: logp = ln 1.1, old = 0 -> s = 1.1, A = 2: loss -2.2, d/dlogp = -A * s = -2.2
    loss, grad, _ = run(cfg, leaf([[math.log(1.1)]]), t([[0.0]]), None, t([2.0]), mask)
    assert loss == pytest.approx(-2.2)
    assert grad.item() == pytest.approx(-2.2)
    # mu = 1 (old None, or old equal to logp): s = 1, loss -A = -2, d/dlogp = -A = -2
    for old in (None, t([[math.log(1.1)]])):
        loss, grad, stats = run(cfg, leaf([[math.log(1.1)]]), old, None, t([2.0]), mask)
        assert loss == pytest.approx(-2.0)
        assert grad.item() == pytest.approx(-2.0)
        assert stats["ratio_mean"] == pytest.approx(1.0)


def test_mu_one_gradient_is_advantage_times_grad_logp():
    # A tiny softmax policy over 4 tokens; two completions of 2 tokens.
    # mu = 1: d loss / d theta = -(1 / num_tokens) * sum_i A_i * sum_t d logp_it / d theta.
    theta = leaf([0.1, -0.2, 0.3, 0.0])
    tokens = torch.tensor([[0, 2], [1, 3]])
    logp = torch.log_softmax(theta, 0)[tokens]  # [2, 2]
    adv = t([1.5, -0.5])
    mask = torch.ones(2, 2, dtype=torch.bool)
    loss, _ = PolicyLoss(LossConfig(beta=0.0))(logp, None, None, adv, mask)
    (g,) = torch.autograd.grad(loss, theta, retain_graph=True)
    (expected,) = torch.autograd.grad(-(adv[:, None] * logp).sum() / 4, theta)
    torch.testing.assert_close(g, expected)


# --- MP-GRPO off-policy member ---


def test_off_policy_row_uses_pi_theta_unclipped():
    # Both rows: one token, logp = ln 0.5, A = -1, ref 0.
    # Row 0 on-policy, old 0: s = 0.5 < 0.8 with A < 0 -> clipped: min(-0.5, -0.8) = -0.8, loss
    #   0.8, no gradient; k3(0, ln .5) = 2 - ln 2 - 1 = 1 - ln 2.
    # Row 1 off-policy, old -5 (ignored): ratio e^logp = 0.5, unclipped: loss -0.5 * -1 = 0.5,
    #   d/dlogp = -A * e^logp = 0.5; no KL by default.
    # dapo over 2 tokens, beta 0.1: (0.8 + 0.1 * (1 - ln 2) + 0.5) / 2.
    # Gradients: row 0 only the KL's, 0.1 * (1 - e^(0 - ln .5)) / 2 = -0.05; row 1 0.5 / 2.
    logp_v = [[math.log(0.5)], [math.log(0.5)]]
    old, ref = t([[0.0], [-5.0]]), t([[0.0], [0.0]])
    adv, mask = t([-1.0, -1.0]), torch.ones(2, 1, dtype=torch.bool)
    off = torch.tensor([False, True])
    loss, grad, stats = run(LossConfig(beta=0.1), leaf(logp_v), old, ref, adv, mask, off_policy=off)
    assert loss == pytest.approx((0.8 + 0.1 * (1 - LN2) + 0.5) / 2)
    torch.testing.assert_close(grad, t([[-0.05], [0.25]]))
    assert stats["clip_fraction_low"] == 1.0  # on-policy tokens only
    assert stats["off_policy_ratio_mean"] == pytest.approx(0.5)
    assert stats["kl"] == pytest.approx(1 - LN2)  # over the tokens it applies to
    # kl_off_policy: row 1 gets beta * k3 too, and its gradient the same -0.05
    cfg = LossConfig(beta=0.1, kl_off_policy=True)
    loss, grad, _ = run(cfg, leaf(logp_v), old, ref, adv, mask, off_policy=off)
    assert loss == pytest.approx((0.8 + 0.5 + 0.2 * (1 - LN2)) / 2)
    torch.testing.assert_close(grad, t([[-0.05], [0.2]]))


def test_off_policy_positive_advantage_is_not_clipped_either():
    # A reference token the policy finds unlikely (p = 0.1) with A = +2: term e^logp * A, loss
    # -0.2, d/dlogp = -A * p = -0.2: it is pushed up however far it is from any clip range.
    mask = torch.ones(1, 1, dtype=torch.bool)
    off = torch.tensor([True])
    logp = leaf([[math.log(0.1)]])
    loss, grad, _ = run(LossConfig(beta=0.0), logp, None, None, t([2.0]), mask, off_policy=off)
    assert loss == pytest.approx(-0.2)
    assert grad.item() == pytest.approx(-0.2)


# --- truncation ---


def test_mask_truncated_drops_rows_from_loss_and_counts():
    # Lengths 2, 2, 1; A = [1, -1, 2]; mu = 1, no KL: per-token -A. Row 1 truncated.
    mask = torch.tensor([[1, 1], [1, 1], [1, 0]], dtype=torch.bool)
    adv, trunc = t([1.0, -1.0, 2.0]), torch.tensor([False, True, False])
    logp_v = [[-1.0, -1.0], [-1.0, -1.0], [-1.0, 0.0]]
    # kept: (-1 * 2 + 1 * 2 - 2 * 1) / 5 tokens = -0.4
    loss, _, _ = run(LossConfig(beta=0.0), leaf(logp_v), None, None, adv, mask, truncated=trunc)
    assert loss == pytest.approx(-0.4)
    # masked: (-2 - 2) / 3 tokens = -4/3; row 1 gets no gradient
    cfg = LossConfig(beta=0.0, mask_truncated=True)
    loss, grad, stats = run(cfg, leaf(logp_v), None, None, adv, mask, truncated=trunc)
    assert loss == pytest.approx(-4 / 3)
    torch.testing.assert_close(grad, t([[-1 / 3, -1 / 3], [0.0, 0.0], [-2 / 3, 0.0]]))
    assert stats["num_tokens"] == 3.0
    assert stats["completion_length_mean"] == pytest.approx(5 / 3)  # lengths as generated
    # grpo (as TRL): the masked row still counts as a sequence: (-1 + 0 - 2) / 3 = -1
    cfg = LossConfig(loss_type="grpo", beta=0.0, mask_truncated=True)
    loss, _, _ = run(cfg, leaf(logp_v), None, None, adv, mask, truncated=trunc)
    assert loss == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="truncated"):
        PolicyLoss(cfg)(leaf(logp_v), None, None, adv, mask)


# --- gradient accumulation ---


def _random_step(seed: int = 0):
    """2 groups x 3 completions x 3 tokens, ragged, one off-policy row, old != current."""
    gen = torch.Generator().manual_seed(seed)
    logp = (-torch.rand(6, 3, generator=gen, dtype=F64) * 2).requires_grad_()
    old = logp.detach() + 0.3 * torch.randn(6, 3, generator=gen, dtype=F64)
    ref = logp.detach() + 0.2 * torch.randn(6, 3, generator=gen, dtype=F64)
    adv = torch.randn(6, generator=gen, dtype=F64)
    mask = torch.tensor([[1, 1, 1], [1, 0, 0], [1, 1, 0]] * 2, dtype=torch.bool)
    off = torch.tensor([False, False, True, False, False, False])
    trunc = torch.tensor([False, False, False, True, False, False])
    return logp, old, ref, adv, mask, off, trunc


def test_dapo_micro_batches_with_global_token_count_equal_one_batch():
    logp, old, ref, adv, mask, off, _ = _random_step()
    cfg = LossConfig(epsilon_high=0.28, beta=0.02)
    full, _ = PolicyLoss(cfg)(logp, old, ref, adv, mask, off_policy=off)
    (g_full,) = torch.autograd.grad(full, logp)

    n_global = int(loss_mask(mask).sum())  # 12 tokens in the step
    parts = []
    for rows in (slice(0, 3), slice(3, 6)):
        part, _ = PolicyLoss(cfg)(
            logp[rows], old[rows], ref[rows], adv[rows], mask[rows],
            off_policy=off[rows], num_tokens_global=n_global,
        )  # fmt: skip
        parts.append(part)
    (g_acc,) = torch.autograd.grad(parts[0] + parts[1], logp)
    torch.testing.assert_close(parts[0] + parts[1], full)
    torch.testing.assert_close(g_acc, g_full)
    # Per-micro-batch normalisation (bnpo), averaged over micro-batches, is not the step's
    # token mean when the micro-batches hold different token counts (rows 0-1: 4, rows 2-5: 8):
    bnpo = LossConfig(loss_type="bnpo", beta=0.02)
    full, _ = PolicyLoss(bnpo)(logp, old, ref, adv, mask, off_policy=off)
    a, _ = PolicyLoss(bnpo)(logp[:2], old[:2], ref[:2], adv[:2], mask[:2], off_policy=off[:2])
    b, _ = PolicyLoss(bnpo)(logp[2:], old[2:], ref[2:], adv[2:], mask[2:], off_policy=off[2:])
    assert not torch.isclose((a + b) / 2, full)


# --- against the explicit per-token formula ---


def _explicit_loss(cfg: LossConfig, logp, old, ref, adv, mask, off, trunc):
    """The loss written out token by token, straight from the definitions."""
    n, width = logp.shape
    rows, total, count = [], 0.0, 0
    for i in range(n):
        row_sum, row_count = 0.0, 0
        for j in range(width):
            if not mask[i, j] or (cfg.mask_truncated and trunc[i]):
                continue
            if off[i]:
                term = torch.exp(logp[i, j]) * adv[i]
            else:
                s = torch.exp(logp[i, j] - old[i, j])
                s_clip = s.clamp(1 - cfg.epsilon_low, 1 + cfg.epsilon_high)
                term = torch.minimum(s * adv[i], s_clip * adv[i])
            tok = -term
            if cfg.beta > 0 and (not off[i] or cfg.kl_off_policy):
                d = ref[i, j] - logp[i, j]
                tok = tok + cfg.beta * (torch.exp(d) - d - 1)
            row_sum, row_count = row_sum + tok, row_count + 1
        rows.append((row_sum, row_count))
        total, count = total + row_sum, count + row_count
    if cfg.loss_type == "grpo":
        return sum(s / max(c, 1) for s, c in rows) / n
    if cfg.loss_type == "dr_grpo":
        return total / (n * cfg.max_completion_length)
    return total / count  # bnpo; dapo with the local count


@pytest.mark.parametrize("loss_type", ["dapo", "grpo", "dr_grpo", "bnpo"])
@pytest.mark.parametrize("mask_truncated", [False, True])
def test_loss_and_gradient_match_the_explicit_formula(loss_type, mask_truncated):
    logp, old, ref, adv, mask, off, trunc = _random_step(seed=1)
    cfg = LossConfig(
        loss_type=loss_type,
        epsilon_high=0.28,
        beta=0.05,
        max_completion_length=5,
        mask_truncated=mask_truncated,
        kl_off_policy=mask_truncated,  # both KL settings covered
    )
    loss, stats = PolicyLoss(cfg)(logp, old, ref, adv, mask, off_policy=off, truncated=trunc)
    (grad,) = torch.autograd.grad(loss, logp)
    expected = _explicit_loss(cfg, logp, old, ref, adv, mask, off, trunc)
    (expected_grad,) = torch.autograd.grad(expected, logp)
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(grad, expected_grad)
    assert 0 <= stats["clip_fraction"] <= 1 and stats["kl"] >= 0


# --- the whole pipeline: tied rewards move nothing ---


@pytest.mark.parametrize("loss_type", ["dapo", "grpo", "dr_grpo", "bnpo"])
def test_tied_rewards_give_zero_gradient_without_kl(loss_type):
    adv, _ = group_advantages(t([[0.25, 0.25, 0.25], [1.0, 1.0, 1.0]]))
    assert (adv == 0).all()
    logp, old, ref, _, mask, off, _ = _random_step()
    cfg = LossConfig(loss_type=loss_type, beta=0.0, max_completion_length=3)
    loss, _ = PolicyLoss(cfg)(logp, old, ref, adv.reshape(-1), mask, off_policy=off)
    (grad,) = torch.autograd.grad(loss, logp)
    assert (grad == 0).all()


# --- configuration ---


def test_config_validation_and_statelessness():
    default = LossConfig(loss_type="dapo", epsilon_low=0.2, epsilon_high=0.2, beta=0.02)
    assert LossConfig() == default
    with pytest.raises(RewardkitError, match="max_completion_length"):
        LossConfig(loss_type="dr_grpo")
    with pytest.raises(RewardkitError, match="unknown loss type"):
        LossConfig(loss_type="ppo")  # type: ignore[arg-type]
    with pytest.raises(RewardkitError, match="beta"):
        LossConfig(beta=-0.1)
    with pytest.raises(RewardkitError, match="epsilon_low"):
        LossConfig(epsilon_low=1.0)
    module = PolicyLoss()
    assert list(module.parameters()) == [] and list(module.buffers()) == []
    with pytest.raises(ValueError, match="shapes"):
        module(leaf([[0.0, 0.0]]), None, None, t([1.0, 2.0]), torch.ones(1, 2, dtype=torch.bool))
