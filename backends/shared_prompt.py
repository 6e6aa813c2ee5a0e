"""Log-probabilities of G completions that share one prompt, computing the prompt once.

GRPO scores a group of G completions of one prompt, and in a speech-aware LM that prompt is mostly
audio tokens. The shared path runs the audio encoder and the prompt's forward pass once (batch 1,
``use_cache=True``), repeats the prompt's keys/values G times (differentiable, so gradients of the
completions' log-probs flow back through the shared prompt into LoRA and projector weights), and
runs the G completions on top of that cache. The naive path (``shared=False``) runs the G full
sequences (prompt + completion) in one batch and is the reference the shared path must match.

Works for any transformers causal LM whose forward takes ``input_ids``, ``attention_mask``,
``position_ids`` and a key/value cache (``cache`` in recent transformers 5.x, ``past_key_values``
before) and needs audio inputs only where audio placeholder tokens are: Qwen2-Audio,
Granite-Speech, Voxtral and plain causal LMs, bare or PEFT-wrapped (LoRA-type adapters; prompt
learning such as prefix tuning changes the cache and is not supported).

Limits: the cache must be a ``DynamicCache`` (the default of a forward with ``use_cache=True``;
sliding-window layers included). Audio placeholders must come expanded to the encoder's output
length (Qwen2-Audio's legacy single-placeholder path is detected and refused). Under active
gradient checkpointing transformers drops the cache inside checkpointed layers, so the shared
path then falls back to the naive one with a warning.
"""

from __future__ import annotations

import contextlib
import inspect
import warnings
from collections.abc import Iterator
from typing import Any

__all__ = ["completion_logprobs"]


def completion_logprobs(
    model: Any,
    prompt_inputs: dict,
    token_ids: Any,
    mask: Any,
    *,
    shared: bool = True,
    temperature: float = 1.0,
) -> Any:
    """Per-token log-probs [G, T] (float32, 0 where mask is False) of G completions
    (token_ids [G, T] int64, right-padded; mask [G, T] bool) following ONE prompt, under
    ``softmax(logits / temperature)`` (1.0: the model's own distribution).

    prompt_inputs: the model's keyword inputs for the prompt alone, batch size 1 (input_ids,
    attention_mask, and audio inputs such as input_features / feature_attention_mask /
    input_features_mask). shared=True: one forward on the prompt with use_cache=True, the cache
    expanded to G (batch_repeat_interleave / repeat, keeping the autograd graph), then one forward
    of the completions with past_key_values; shared=False: the naive reference — the full
    sequences (prompt + completion) for all G in one batch. Works with grad enabled or not
    (caller decides with torch.no_grad()); must work for a PEFT-wrapped model too.

    The log-prob of completion token t comes from the logits at the previous position (the
    prompt's last position for t = 0); completion positions are P + t in both paths. With
    gradient checkpointing active (training mode, grad enabled) shared=True falls back to the
    naive pass with a RuntimeWarning.
    """
    import torch

    prompt_ids = prompt_inputs["input_ids"]
    if prompt_ids.dim() != 2 or prompt_ids.shape[0] != 1:
        raise ValueError(f"prompt input_ids must have shape [1, P], got {tuple(prompt_ids.shape)}")
    device = prompt_ids.device
    token_ids = token_ids.to(device=device, dtype=torch.long)  # [G, T]
    mask = mask.to(device=device, dtype=torch.bool)  # [G, T]
    if token_ids.dim() != 2 or token_ids.shape != mask.shape:
        raise ValueError(
            f"token_ids and mask must both be [G, T]; got {tuple(token_ids.shape)} and "
            f"{tuple(mask.shape)}"
        )
    g, t = token_ids.shape
    if g == 0 or t == 0:
        return torch.zeros(g, t, dtype=torch.float32, device=device)

    if shared and _checkpointing_active(model):
        warnings.warn(
            "gradient checkpointing is active: transformers drops the key/value cache inside "
            "checkpointed layers, so the shared-prompt pass falls back to the naive full-sequence "
            "pass (same result, no speed-up)",
            RuntimeWarning,
            stacklevel=2,
        )
        shared = False

    if shared:
        logp = _shared_logprobs(model, prompt_inputs, token_ids, mask, temperature)
    else:
        logp = _naive_logprobs(model, prompt_inputs, token_ids, mask, temperature)
    return logp.masked_fill(~mask, 0.0)  # [G, T]


def _shared_logprobs(
    model: Any, prompt_inputs: dict, token_ids: Any, mask: Any, temperature: float
) -> Any:
    """Log-probs [G, T] (unmasked), the prompt run once and its keys/values shared."""
    import torch

    g, t = token_ids.shape
    p = prompt_inputs["input_ids"].shape[1]
    cache_kw = cache_keyword(model)
    prompt_mask = _prompt_attention_mask(prompt_inputs)  # [1, P]

    # 1. The prompt, batch 1: audio encoder + projector + LM, keeping its keys/values.
    with _last_logits(model, 1) as keep:
        out = model(**prompt_inputs, use_cache=True, **keep)
    first = _gather_logprobs(out.logits[:, -1:, :], token_ids[:, :1], temperature)  # [G, 1]
    if t == 1:
        return first
    cache = cache_of(out)
    cached = cache.get_seq_length() if hasattr(cache, "get_seq_length") else None
    if cached != p:
        raise RuntimeError(
            f"{type(_unwrap(model)).__name__}'s prompt pass cached {cached} positions for "
            f"{p} prompt tokens: the prompt must be given with its audio placeholders already "
            "expanded (one per audio embedding), and the model must return a key/value cache; "
            "otherwise use shared=False"
        )

    # 2. The cache repeated G times; repeat_interleave is differentiable, so gradients reach
    #    the prompt computation (summed over the group) in the training pass.
    if g > 1:
        cache.batch_repeat_interleave(g)

    # 3. The completions (all but the last token, whose successor is not scored) on top of it.
    inputs = token_ids[:, :-1]  # [G, T-1]
    attention_mask = torch.cat(
        [prompt_mask.expand(g, -1), mask[:, :-1].to(prompt_mask.dtype)], dim=1
    )  # [G, P+T-1]
    position_ids = torch.arange(p, p + t - 1, device=inputs.device).unsqueeze(0).expand(g, -1)
    out = model(
        input_ids=inputs,
        attention_mask=attention_mask,
        position_ids=position_ids,
        use_cache=True,
        **{cache_kw: cache},
    )
    rest = _gather_logprobs(out.logits, token_ids[:, 1:], temperature)  # [G, T-1]
    return torch.cat([first, rest], dim=1)  # [G, T]


def _naive_logprobs(
    model: Any, prompt_inputs: dict, token_ids: Any, mask: Any, temperature: float
) -> Any:
    """Log-probs [G, T] (unmasked) from the G full sequences (prompt + completion) in one batch."""
    import torch

    g, t = token_ids.shape
    prompt_mask = _prompt_attention_mask(prompt_inputs)  # [1, P]
    # Tile every batch-first tensor (audio too: a prompt with k audio chunks becomes G*k chunks in
    # sample order, which is how the models scatter them into the placeholder tokens).
    batch = {k: _tile(v, g) for k, v in prompt_inputs.items()}
    batch["input_ids"] = torch.cat([batch["input_ids"], token_ids[:, :-1]], dim=1)  # [G, P+T-1]
    batch["attention_mask"] = torch.cat(
        [prompt_mask.expand(g, -1), mask[:, :-1].to(prompt_mask.dtype)], dim=1
    )  # [G, P+T-1]
    with _last_logits(model, t) as keep:
        out = model(**batch, use_cache=False, **keep)
    return _gather_logprobs(out.logits[:, -t:, :], token_ids, temperature)  # P-1 .. P+T-2


def _gather_logprobs(logits: Any, token_ids: Any, temperature: float = 1.0) -> Any:
    """log p(token) [G, n] in float32 under softmax(logits / temperature), from logits
    [B, n, V], B = G or 1 (shared by the group)."""
    logits = logits.float()
    if temperature != 1.0:
        logits = logits / temperature
    lse = logits.logsumexp(dim=-1)  # [B, n]
    picked = logits.expand(token_ids.shape[0], -1, -1).gather(-1, token_ids.unsqueeze(-1))
    return picked.squeeze(-1) - lse  # [G, n]


@contextlib.contextmanager
def _last_logits(model: Any, n: int) -> Iterator[dict]:
    """Compute logits at the last ``n`` positions only: yields ``{"logits_to_keep": n}`` where
    the forward takes it, else slices the LM head's input with a forward pre-hook (Qwen2-Audio)."""
    if "logits_to_keep" in _forward_params(model):
        yield {"logits_to_keep": n}
        return
    base = _unwrap(model)
    head = base.get_output_embeddings() if hasattr(base, "get_output_embeddings") else None
    if head is None:
        yield {}
        return

    def last_n(_module: Any, args: tuple) -> tuple | None:
        return (args[0][:, -n:], *args[1:]) if args and args[0].dim() == 3 else None

    handle = head.register_forward_pre_hook(last_n)
    try:
        yield {}
    finally:
        handle.remove()


def _prompt_attention_mask(prompt_inputs: dict) -> Any:
    """The prompt's attention mask [1, P] (all ones when not given)."""
    import torch

    ids = prompt_inputs["input_ids"]
    m = prompt_inputs.get("attention_mask")
    return torch.ones_like(ids) if m is None else m


def _tile(value: Any, g: int) -> Any:
    """Repeat a batch-first tensor ``g`` times along dim 0; other values unchanged."""
    import torch

    if isinstance(value, torch.Tensor) and value.dim() > 0:
        return value.repeat(g, *([1] * (value.dim() - 1)))
    return value


def _unwrap(model: Any) -> Any:
    """The transformers model under PEFT / DDP / DeepSpeed wrappers."""
    seen = 0
    while seen < 8:
        seen += 1
        if hasattr(model, "get_base_model"):
            model = model.get_base_model()
        elif type(model).__name__ in {"DistributedDataParallel", "DeepSpeedEngine"}:
            model = model.module
        else:
            break
    return model


def cache_keyword(model: Any) -> str:
    """The forward's key/value-cache argument: ``cache`` (transformers >= 5.x) or
    ``past_key_values``."""
    return "cache" if "cache" in _forward_params(model) else "past_key_values"


def cache_of(output: Any) -> Any:
    """The key/value cache a forward returned (``cache`` or ``past_key_values``), or None."""
    cache = getattr(output, "cache", None)
    return cache if cache is not None else getattr(output, "past_key_values", None)


def _forward_params(model: Any) -> Any:
    """Parameter names of the underlying model's forward."""
    return inspect.signature(_unwrap(model).forward).parameters


def _checkpointing_active(model: Any) -> bool:
    """True when a layer would drop the cache under gradient checkpointing right now."""
    import torch

    if not torch.is_grad_enabled():
        return False
    return any(
        getattr(m, "gradient_checkpointing", False) is True
        and m.training
        and not getattr(m, "_can_checkpoint_with_cache", False)
        for m in model.modules()
    )
