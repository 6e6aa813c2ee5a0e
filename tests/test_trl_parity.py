"""rewardkit's GRPO numerics against TRL's own code, on the same model and the same samples.

One real ``trl.GRPOTrainer`` (TRL's installed release) on a tiny random Qwen2 saved to a
temporary folder, sampling at temperature 0.7. TRL generates and scores a batch with its own
``_generate_and_score_completions`` (rewards are fixed numbers, so the groups' spreads are known:
spread, near-tied, tied), and computes the loss with its own ``_compute_loss``. rewardkit scores
the same prompt and completion tokens with ``completion_logprobs`` (the shared-prompt pass of the
``hf`` backend), at the sampling temperature, and forms advantages and loss with
:func:`group_advantages` and :class:`PolicyLoss`. Checked equal, to float rounding: the tempered
log-probs of policy and reference, the advantages of every scale mode (``std_mode="add"`` is
TRL's ``std + 1e-4``), and loss and gradients for every loss type, beta 0 / > 0, KL bias
correction off / on, mu = 1 / mu > 1 (TRL's old log-probs given), one or two micro-batches, and
truncation masking. The policy's weights are moved off the reference first, so KL and clipping
are not trivially zero.
"""

from __future__ import annotations

import pytest
import torch
from datasets import Dataset
from trl import GRPOConfig, GRPOTrainer

from rewardkit.backends.shared_prompt import completion_logprobs
from rewardkit.backends.tiny import build_tiny_causal_lm, save_tiny
from rewardkit.losses import LossConfig, PolicyLoss, group_advantages, loss_mask

P, G, T_MAX, TEMPERATURE = 4, 4, 6, 0.7
PROMPTS = ["The cat", "A dog ran", "Der Hund", "It is"]
# Rewards per prompt: spread, near-tied (std 7e-5 region, where floor and std + eps differ),
# a single outlier, all tied.
REWARDS = [
    [0.1, 0.5, 0.2, 0.9],
    [0.3, 0.3, 0.3, 0.3 + 1.4e-4],
    [0.0, 0.0, 0.0, 1.0],
    [0.4, 0.4, 0.4, 0.4],
]
ATOL = 1e-5
EOS_BIAS = 4.0  # float32 rounding: a full-sequence pass against rewardkit's shared-prompt pass


def fixed_rewards(completions, **kwargs):
    """The rewards above, in TRL's row order (prompt p's G completions are rows p*G .. p*G+G-1)."""
    return [r for row in REWARDS for r in row][: len(completions)]


@pytest.fixture(scope="module")
def trainer(tmp_path_factory):
    folder = tmp_path_factory.mktemp("trl")
    parts = build_tiny_causal_lm(seed=0)
    save_tiny(parts, folder / "model")
    args = GRPOConfig(
        output_dir=str(folder / "out"),
        use_cpu=True,
        bf16=False,
        per_device_train_batch_size=P * G,
        num_generations=G,
        max_completion_length=T_MAX,
        temperature=TEMPERATURE,
        beta=0.04,
        epsilon=0.2,
        epsilon_high=0.28,
        gradient_checkpointing=False,
        report_to=[],
        save_strategy="no",
        max_steps=1,
        seed=0,
        # sampling only: make EOS likely, so that some completions end and some are truncated
        generation_kwargs={"sequence_bias": [[[parts.tokenizer.eos_token_id], EOS_BIAS]]},
    )
    data = Dataset.from_dict({"prompt": PROMPTS})
    trl = GRPOTrainer(
        model=str(folder / "model"),
        reward_funcs=[fixed_rewards],
        args=args,
        train_dataset=data,
    )
    torch.manual_seed(1)
    with torch.no_grad():  # move the policy off the reference: KL and clipping become non-trivial
        for param in trl.model.parameters():
            param.add_(torch.randn_like(param) * 0.02)
    trl.model.train()
    return trl


def generate(trl, scale: str = "group", mask_truncated: bool = False) -> dict:
    trl.scale_rewards, trl.mask_truncated_completions = scale, mask_truncated
    torch.manual_seed(0)
    return trl._generate_and_score_completions([{"prompt": p} for p in PROMPTS for _ in range(G)])


def rewardkit_logprobs(model, batch, grad: bool) -> torch.Tensor:
    """[P*G, T] log-probs at the sampling temperature, each prompt run once (left padding off)."""
    out = []
    with torch.set_grad_enabled(grad):
        for p in range(P):
            rows = slice(p * G, (p + 1) * G)
            keep = batch["prompt_mask"][p * G].bool()
            prompt = {"input_ids": batch["prompt_ids"][p * G][keep][None]}
            ids, mask = batch["completion_ids"][rows], batch["completion_mask"][rows].bool()
            out.append(completion_logprobs(model, prompt, ids, mask, temperature=TEMPERATURE))
    return torch.cat(out)


def truncated(trl, batch) -> torch.Tensor:
    """[P*G] bool: no EOS in the completion (TRL's definition of truncated)."""
    ends = torch.tensor([*trl.eos_token_ids, trl._tokenizer.pad_token_id])
    return ~torch.isin(batch["completion_ids"], ends).any(-1)


def test_tempered_logprobs_equal_trls_for_policy_and_reference(trainer):
    batch = generate(trainer)
    mask = batch["completion_mask"].bool()
    ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], 1)
    attention = torch.cat([batch["prompt_mask"], batch["completion_mask"]], 1)
    with torch.no_grad():
        theirs, _, _ = trainer._get_per_token_logps_and_entropies(
            trainer.model, ids, attention, batch["completion_ids"].shape[1]
        )
    ours = rewardkit_logprobs(trainer.model, batch, grad=False)
    torch.testing.assert_close(ours[mask], theirs[mask], rtol=0, atol=ATOL)
    ref = rewardkit_logprobs(trainer.ref_model, batch, grad=False)
    torch.testing.assert_close(ref[mask], batch["ref_per_token_logps"][mask], rtol=0, atol=ATOL)
    # and not the untempered ones: the temperature matters here
    untempered = torch.cat(
        [
            completion_logprobs(
                trainer.model,
                {"input_ids": batch["prompt_ids"][p * G][batch["prompt_mask"][p * G].bool()][None]},
                batch["completion_ids"][p * G : (p + 1) * G],
                mask[p * G : (p + 1) * G],
            )
            for p in range(P)
        ]
    ).detach()
    assert (untempered[mask] - theirs[mask]).abs().max() > 1e-2


@pytest.mark.parametrize("scale", ["group", "batch", "none"])
def test_advantages_equal_trls(trainer, scale):
    batch = generate(trainer, scale)
    rewards = torch.tensor(REWARDS)
    ours, _ = group_advantages(rewards, scale, std_floor=1e-4, std_mode="add")
    torch.testing.assert_close(ours.reshape(-1), batch["advantages"], rtol=1e-6, atol=1e-6)
    if scale == "group":  # the default floor differs exactly where TRL's eps matters
        floor, _ = group_advantages(rewards, scale, std_floor=1e-4)
        assert (floor.reshape(-1) - batch["advantages"]).abs().max() > 0.3


LOSS_TYPES = ["grpo", "bnpo", "dr_grpo", "dapo"]
# (beta, KL bias correction): no KL, TRL 1.16's default KL, the paper's KL
KL_MODES = [(0.0, False), (0.04, True), (0.04, False)]


def summed(losses_and_grads):
    """Sum of the micro-batches' losses and gradients (what an accumulated step applies)."""
    total, grads = 0.0, None
    for loss, g in losses_and_grads:
        total += loss
        grads = g if grads is None else [a + b for a, b in zip(grads, g)]
    return total, grads


def trl_step(trl, batch, parts, params):
    """TRL's ``_compute_loss`` on each micro-batch (rows ``part`` of the generation batch)."""
    for part in parts:
        sub = {k: v[part] if torch.is_tensor(v) and v.dim() else v for k, v in batch.items()}
        loss = trl._compute_loss(trl.model, sub)
        yield loss.item(), torch.autograd.grad(loss, params)


def rewardkit_step(loss_fn, logp, batch, mask, trunc, mu, parts, params, clips):
    """PolicyLoss on each micro-batch as ``grpo_step`` calls it (dapo: the step's token count;
    the others divided by the number of micro-batches)."""
    cfg = loss_fn.config
    total = loss_mask(mask, trunc, cfg.mask_truncated).sum().item()
    divide = len(parts) if cfg.loss_type != "dapo" else 1
    advantages = group_advantages(torch.tensor(REWARDS), "group", 1e-4, "add")[0].reshape(-1)
    for part in parts:
        loss, stats = loss_fn(
            logp[part],
            batch["old_per_token_logps"][part] if mu > 1 else None,
            batch["ref_per_token_logps"][part] if cfg.beta > 0 else None,
            advantages[part],
            mask[part],
            truncated=trunc[part],
            num_tokens_global=total,
        )
        clips.append(stats["clip_fraction"])
        loss = loss / divide
        yield loss.item(), torch.autograd.grad(loss, params, retain_graph=True)


@pytest.mark.parametrize("mask_truncated", [False, True])
@pytest.mark.parametrize("chunks", [1, 2])
@pytest.mark.parametrize("mu", [1, 2])
def test_loss_and_gradients_equal_trls(trainer, mu, chunks, mask_truncated):
    batch = generate(trainer, "group", mask_truncated)
    trunc = truncated(trainer, batch)
    assert trunc.any() and not trunc.all()  # both kinds present, so masking is exercised
    # rewardkit's mask is generation's (TRL zeroed the truncated rows, which run the full
    # width); PolicyLoss drops those rows itself with mask_truncated
    mask = batch["completion_mask"].bool() | trunc[:, None]
    if mu > 1:  # pi_old: the reference's log-probs, as if the policy had moved since sampling
        batch["old_per_token_logps"] = batch["ref_per_token_logps"]
    params = [p for p in trainer.model.parameters() if p.requires_grad]
    parts = torch.arange(P * G).tensor_split(chunks)  # whole groups per micro-batch
    trainer.args.gradient_accumulation_steps = trainer.args.steps_per_generation = chunks
    trainer.current_gradient_accumulation_steps = chunks
    clips: list[float] = []
    for loss_type in LOSS_TYPES:
        for beta, bias in KL_MODES:
            trainer.loss_type, trainer.beta = loss_type, beta
            trainer.args.use_bias_correction_kl = bias
            theirs, theirs_grads = summed(trl_step(trainer, batch, parts, params))

            config = LossConfig(
                loss_type=loss_type,
                epsilon_low=0.2,
                epsilon_high=0.28,
                beta=beta,
                max_completion_length=T_MAX,
                mask_truncated=mask_truncated,
                kl_bias_correction=bias,
            )
            logp = rewardkit_logprobs(trainer.model, batch, grad=True)
            steps = rewardkit_step(PolicyLoss(config), logp, batch, mask, trunc, mu, parts,
                                   params, clips)  # fmt: skip
            ours, ours_grads = summed(steps)

            what = f"{loss_type} beta={beta} bias={bias}"
            # float32 rounding (measured: loss <= 4e-6 relative, gradients <= 2e-6 of the
            # largest entry of each tensor)
            assert ours == pytest.approx(theirs, rel=2e-5, abs=1e-8), what
            for a, b in zip(ours_grads, theirs_grads):
                scale = float(b.abs().max())
                torch.testing.assert_close(a, b, rtol=0, atol=1e-5 * scale + 1e-12, msg=what)
    assert (max(clips) > 0) == (mu > 1)  # mu > 1 clips some ratios; mu = 1 has ratio 1
