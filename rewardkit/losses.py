"""GRPO math: group advantages and the clipped policy-gradient loss, as small stateless pieces.

The method (../shared/DESIGN.md, after Elmakies et al. 2025 and DAPO): for each prompt sample G
completions, score them, turn the rewards into group-relative advantages, then minimise

    loss = norm( sum over completion tokens of
                 -min(s * A, clip(s, 1 - eps_low, 1 + eps_high) * A) + beta * k3(ref, logp) )

with s = pi_theta / pi_old per token. The loss variants differ only in ``norm`` (as in TRL's
GRPOTrainer):

    grpo     mean over sequences of (sum over the sequence's tokens / its length)
    bnpo     sum over all tokens / number of completion tokens in this (micro-)batch
    dr_grpo  sum over all tokens / (number of sequences * max_completion_length)
    dapo     sum over all tokens / number of completion tokens in the whole step
             (``num_tokens_global``; this micro-batch's count when not given). The paper's loss.

MP-GRPO (after LUFFY): a group may hold an off-policy member, the reference answer. Its tokens use
the ratio pi_theta(token) (the behaviour policy is taken as 1) with no clipping: -exp(logp) * A.

Shapes: P prompts, G completions per prompt, N = rows of a (micro-)batch (N = P * G for a whole
step), T = completion tokens (right-padded). Log-probabilities are float, one per completion token,
0 at padded positions (the :mod:`rewardkit.policy` contract).

Gradient accumulation: the returned loss is the micro-batch's. For ``grpo``, ``bnpo``, ``dr_grpo``
(and ``dapo`` without ``num_tokens_global``) divide it by the number of micro-batches before
``backward``, as TRL does. For ``dapo`` with ``num_tokens_global`` (count it with
:func:`loss_mask` over the whole step) it already is the micro-batch's share of the step's loss:
the micro-batch losses sum to the step loss, so do not divide again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from rewardkit.errors import RewardkitError

LossType = Literal["dapo", "grpo", "dr_grpo", "bnpo"]
LOSS_TYPES: tuple[str, ...] = ("dapo", "grpo", "dr_grpo", "bnpo")
SCALE_MODES: tuple[str, ...] = ("group", "batch", "none")
STD_MODES: tuple[str, ...] = ("floor", "add")


# --- advantages ---


def group_advantages(
    rewards: Tensor,  # [P, G]
    scale: Literal["group", "batch", "none"] = "group",
    std_floor: float = 1e-4,
    std_mode: Literal["floor", "add"] = "floor",
) -> tuple[Tensor, dict[str, float]]:
    """Group-relative advantages ``A = (r - mean_group(r)) / max(std, std_floor)``.

    ``scale="group"``: std of each group's G rewards (the paper, DeepSeekMath GRPO);
    ``"batch"``: one std over all P * G rewards, the mean staying the group's (TRL's
    ``scale_rewards="batch"``); ``"none"``: no division (Dr. GRPO).

    The std is ``torch.std``'s unbiased (sample, ``/ (n - 1)``) estimator, as in TRL.
    ``std_mode="floor"`` (the default) divides by ``max(std, std_floor)``: well-spread groups are
    exactly standardised. ``"add"`` divides by ``std + std_floor``, TRL's ``std + 1e-4``
    (with ``std_floor=1e-4``): every group is shrunk a little, and a near-tied group much more
    (std 7e-5: an outlier's advantage 1.03 instead of 1.75). Either way a group whose rewards
    all tie gets advantages 0 (its deviations are 0) and so no gradient.

    Returns the advantages [P, G] (the rewards' dtype) and detached diagnostics:
    ``zero_std_fraction`` (groups whose rewards all tie), ``advantage_{mean,std,min,max}``,
    ``reward_{mean,std}``.
    """
    if rewards.dim() != 2 or rewards.shape[1] < 2:
        raise ValueError(f"rewards must be [P, G] with G >= 2, got shape {tuple(rewards.shape)}")
    if scale not in SCALE_MODES:
        raise RewardkitError(f"unknown scale {scale!r}; choose one of {', '.join(SCALE_MODES)}")
    if std_mode not in STD_MODES:
        raise RewardkitError(f"unknown std_mode {std_mode!r}; choose one of {', '.join(STD_MODES)}")
    if not std_floor > 0:
        raise RewardkitError(f"std_floor must be > 0, got {std_floor}")
    if not torch.isfinite(rewards).all():
        raise RewardkitError("rewards contain NaN or inf")
    rewards = rewards.detach()

    mean = rewards.mean(dim=1, keepdim=True)  # [P, 1]
    group_std = rewards.std(dim=1, keepdim=True)  # [P, 1], unbiased
    if scale == "none":
        advantages = rewards - mean  # [P, G]
    else:
        std = group_std if scale == "group" else rewards.std()  # [P, 1] or [] (all P * G)
        denom = std.clamp_min(std_floor) if std_mode == "floor" else std + std_floor
        advantages = (rewards - mean) / denom  # [P, G]

    stats = {
        "zero_std_fraction": (group_std <= 1e-8).float().mean().item(),
        "advantage_mean": advantages.mean().item(),
        "advantage_std": advantages.std().item(),
        "advantage_min": advantages.min().item(),
        "advantage_max": advantages.max().item(),
        "reward_mean": rewards.mean().item(),
        "reward_std": rewards.std().item(),
    }
    return advantages, stats


# --- the policy loss ---


@dataclass(frozen=True)
class LossConfig:
    """How the policy loss is formed.

    Defaults follow the paper: ``dapo`` normalisation, symmetric clipping 0.2 (DAPO's
    clip-higher uses ``epsilon_high=0.28``; set it to get that), ``beta=0.02`` (beta = 0
    diverged in the paper). ``max_completion_length`` is the generation limit, needed by
    ``dr_grpo``. ``mask_truncated`` drops completions that hit the limit without EOS from the
    loss and from the token counts (TRL's ``mask_truncated_completions``). ``kl_off_policy``:
    whether the KL term also applies to off-policy (reference-answer) rows; off by default, see
    :class:`PolicyLoss`. ``kl_bias_correction``: multiply the per-token k3 KL by the importance
    ratio s (with its gradient), TRL's ``use_bias_correction_kl`` (TRL 1.16's default; off here,
    as in the paper and in TRL before 1.x). At mu = 1 s is 1 in value but not in gradient.
    """

    loss_type: LossType = "dapo"
    epsilon_low: float = 0.2
    epsilon_high: float = 0.2
    beta: float = 0.02
    max_completion_length: int | None = None
    mask_truncated: bool = False
    kl_off_policy: bool = False
    kl_bias_correction: bool = False

    def __post_init__(self) -> None:
        if self.loss_type not in LOSS_TYPES:
            raise RewardkitError(
                f"unknown loss type {self.loss_type!r}; choose one of {', '.join(LOSS_TYPES)}"
            )
        if not 0 <= self.epsilon_low < 1:
            raise RewardkitError(f"epsilon_low must be in [0, 1), got {self.epsilon_low}")
        if not self.epsilon_high >= 0:
            raise RewardkitError(f"epsilon_high must be >= 0, got {self.epsilon_high}")
        if not self.beta >= 0:
            raise RewardkitError(f"beta must be >= 0, got {self.beta}")
        if self.max_completion_length is not None and self.max_completion_length < 1:
            raise RewardkitError(
                f"max_completion_length must be >= 1, got {self.max_completion_length}"
            )
        if self.loss_type == "dr_grpo" and self.max_completion_length is None:
            raise RewardkitError("loss type dr_grpo needs max_completion_length")


def k3_kl(ref_logp: Tensor, logp: Tensor) -> Tensor:
    """Per-token k3 estimator of KL(pi_theta || pi_ref): ``exp(d) - d - 1`` with
    ``d = ref_logp - logp``. Always >= 0, 0 where the two agree; shapes broadcast ([N, T])."""
    d = ref_logp - logp
    return torch.exp(d) - d - 1


def loss_mask(
    mask: Tensor,  # [N, T] bool
    truncated: Tensor | None = None,  # [N] bool
    mask_truncated: bool = False,
) -> Tensor:  # [N, T] bool
    """The tokens that enter the loss: ``mask``, minus truncated rows when ``mask_truncated``.

    For ``dapo`` with gradient accumulation, ``num_tokens_global`` is the sum of this over every
    micro-batch of the step.
    """
    mask = mask.bool()
    if not mask_truncated:
        return mask
    if truncated is None:
        raise ValueError("mask_truncated needs the truncated flags")
    return mask & ~truncated.bool()[:, None]


class PolicyLoss(torch.nn.Module):
    """The clipped token-level policy-gradient loss with k3 KL (stateless; config only).

    Per token, with ``s = exp(logp - old_logp)`` (``old_logp=None``: s = 1 with gradient 1, i.e.
    mu = 1, the update right after generation):

        on-policy rows   -min(s * A, clip(s, 1 - eps_low, 1 + eps_high) * A) + beta * k3
        off-policy rows  -exp(logp) * A                              (+ beta * k3, see below)

    Off-policy rows (MP-GRPO, the reference answer as a group member): ratio pi_theta / 1, no
    clipping; their ``old_logp`` is ignored. KL on those rows is off unless
    ``config.kl_off_policy``: k3 estimates KL(pi_theta || pi_ref) only for tokens sampled from the
    policy, and on reference tokens it would just pull pi_theta back to pi_ref exactly where the
    reference is meant to teach it; LUFFY, which the off-policy member follows, uses no KL term.
    Their tokens still count in every normalisation.

    The KL term is computed only when ``ref_logp`` is given and ``beta > 0``; with
    ``config.kl_bias_correction`` it is ``s * k3`` (off-policy rows: ``exp(logp) * k3``).
    """

    def __init__(self, config: LossConfig | None = None) -> None:
        super().__init__()
        self.config = config if config is not None else LossConfig()

    def forward(
        self,
        logp: Tensor,  # [N, T] log pi_theta of the completion tokens, with gradient
        old_logp: Tensor | None,  # [N, T] log pi_old from generation time (mu > 1), or None
        ref_logp: Tensor | None,  # [N, T] log pi_ref, or None
        advantages: Tensor,  # [N]
        mask: Tensor,  # [N, T] bool, true on completion tokens
        *,
        off_policy: Tensor | None = None,  # [N] bool, true on reference-answer rows
        truncated: Tensor | None = None,  # [N] bool, true where generation hit the limit
        num_tokens_global: int | None = None,  # dapo: loss tokens in the whole step
    ) -> tuple[Tensor, dict[str, float]]:
        cfg = self.config
        n, t = logp.shape
        if advantages.shape != (n,) or mask.shape != (n, t):
            raise ValueError(
                f"shapes: logp {tuple(logp.shape)} needs advantages ({n},) and mask ({n}, {t}),"
                f" got {tuple(advantages.shape)} and {tuple(mask.shape)}"
            )
        tokens = loss_mask(mask, truncated, cfg.mask_truncated)  # [N, T] bool
        if off_policy is None:
            off_policy = torch.zeros(n, dtype=torch.bool, device=logp.device)
        off = off_policy.bool()[:, None].expand(n, t)  # [N, T]
        adv = advantages.detach().to(logp.dtype)[:, None]  # [N, 1]

        # Importance ratio and the clipped surrogate (on-policy rows).
        old = logp.detach() if old_logp is None else old_logp.detach()
        ratio = torch.exp(logp - old)  # [N, T]
        clipped = torch.clamp(ratio, 1 - cfg.epsilon_low, 1 + cfg.epsilon_high)
        surrogate = torch.min(ratio * adv, clipped * adv)  # [N, T]
        # Off-policy rows: ratio pi_theta / 1, unclipped.
        off_ratio = torch.exp(logp)  # [N, T]
        surrogate = torch.where(off, off_ratio * adv, surrogate)
        per_token = -surrogate  # [N, T]

        kl = None
        if ref_logp is not None and cfg.beta > 0:
            kl = k3_kl(ref_logp.detach(), logp)  # [N, T]
            if cfg.kl_bias_correction:  # TRL's use_bias_correction_kl: weight by s (not detached)
                kl = kl * torch.where(off, off_ratio, ratio)
            kl_tokens = tokens if cfg.kl_off_policy else tokens & ~off
            per_token = per_token + cfg.beta * torch.where(kl_tokens, kl, 0.0)

        per_token = torch.where(tokens, per_token, 0.0)  # padding, masked rows -> 0
        total = per_token.sum()
        num_tokens = tokens.sum()
        if cfg.loss_type == "grpo":
            lengths = tokens.sum(dim=1).clamp_min(1)  # [N]
            loss = (per_token.sum(dim=1) / lengths).mean()
        elif cfg.loss_type == "bnpo":
            loss = total / num_tokens.clamp_min(1)
        elif cfg.loss_type == "dr_grpo":
            loss = total / (n * cfg.max_completion_length)
        else:  # dapo
            denom = num_tokens_global if num_tokens_global is not None else num_tokens.item()
            loss = total / max(denom, 1)

        # Diagnostics (detached floats).
        with torch.no_grad():
            on_tokens = tokens & ~off
            n_on = on_tokens.sum().clamp_min(1)
            low = (ratio < 1 - cfg.epsilon_low) & (adv < 0) & on_tokens  # min took the clip
            high = (ratio > 1 + cfg.epsilon_high) & (adv > 0) & on_tokens
            stats = {
                "loss": loss.item(),
                "ratio_mean": torch.where(on_tokens, ratio, 0.0).sum().div(n_on).item(),
                "clip_fraction_low": low.sum().div(n_on).item(),
                "clip_fraction_high": high.sum().div(n_on).item(),
                "clip_fraction": (low | high).sum().div(n_on).item(),
                "completion_length_mean": mask.sum(dim=1).float().mean().item(),
                "num_tokens": float(num_tokens.item()),
            }
            if kl is not None:
                kl_sum = torch.where(kl_tokens, kl, 0.0).sum()
                stats["kl"] = kl_sum.div(kl_tokens.sum().clamp_min(1)).item()
            if off.any():
                off_tokens = tokens & off
                off_sum = torch.where(off_tokens, off_ratio, 0.0).sum()
                stats["off_policy_ratio_mean"] = off_sum.div(off_tokens.sum().clamp_min(1)).item()
        return loss, stats
