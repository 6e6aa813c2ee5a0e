"""Outputs of a frozen audio encoder, kept per utterance and reused across a step's passes.

A GRPO step runs each prompt's audio through the encoder in every pass: generation, the
reference log-probs and the training pass (and evaluation runs the same dev utterances at every
evaluation). When the encoder is frozen (the default: LoRA on the LM, projector trained) and in
eval mode, its output is a function of its input alone, so :class:`EncoderCache` keeps each input
row's output, keyed by a digest of the row's features (and mask row), and computes only the rows
it has not seen, one row at a time, so that an output never depends on which other rows shared
a call or on what ran before (a resumed run computes exactly what the uninterrupted one did).
The models call their tower as ``tower(input_features,
[attention_mask], return_dict=True)`` and read ``.last_hidden_state`` (Qwen2-Audio, Voxtral,
Granite-Speech); the cache wraps that call and returns a ``BaseModelOutput``.

Without the cache a batched pass may differ from the same row computed alone by float rounding
(1e-7); with it every row is the row computed alone. The cache steps aside when the encoder has
trainable parameters, is in training mode, or a call asks for more than the last hidden state.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Any

__all__ = ["EncoderCache"]


class EncoderCache:
    """Wraps ``tower.forward`` (an instance attribute: weights and state-dict keys unchanged)."""

    def __init__(self, tower: Any, max_rows: int = 256):
        self.tower = tower
        self.max_rows = max_rows
        self.rows: OrderedDict[bytes, Any] = OrderedDict()
        self.hits = self.misses = 0
        self._forward = tower.forward
        tower.forward = self.forward

    def remove(self) -> None:
        """Restore the tower's own forward and drop the kept outputs."""
        del self.tower.forward
        self.rows.clear()

    def _frozen(self) -> bool:
        return not self.tower.training and not any(p.requires_grad for p in self.tower.parameters())

    def forward(self, input_features: Any, attention_mask: Any = None, **kwargs: Any) -> Any:
        import torch
        from transformers.modeling_outputs import BaseModelOutput

        extra = {k: v for k, v in kwargs.items() if k != "return_dict" and v}
        if extra or not self._frozen() or not isinstance(input_features, torch.Tensor):
            return self._forward(input_features, attention_mask=attention_mask, **kwargs)
        keys = [self._key(input_features, attention_mask, b) for b in range(len(input_features))]
        missing = [b for b, key in enumerate(keys) if key not in self.rows]
        self.misses += len(missing)
        self.hits += len(keys) - len(missing)
        for b in missing:  # one row at a time: its output never depends on the batch
            mask = attention_mask[b : b + 1] if _batched(attention_mask, keys) else attention_mask
            out = self._forward(input_features[b : b + 1], attention_mask=mask, **kwargs)
            hidden = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]
            self.rows[keys[b]] = hidden[0].detach()
        for key in keys:
            self.rows.move_to_end(key)
        hidden = torch.stack([self.rows[key] for key in keys])
        while len(self.rows) > self.max_rows:
            self.rows.popitem(last=False)
        return BaseModelOutput(last_hidden_state=hidden)

    @staticmethod
    def _key(features: Any, mask: Any, b: int) -> bytes:
        import torch

        digest = hashlib.blake2b(digest_size=20)
        for tensor in (features[b], mask[b] if _batched(mask, features) else mask):
            if tensor is None:
                continue
            tensor = tensor.detach().contiguous().cpu()
            digest.update(f"{tuple(tensor.shape)}{tensor.dtype}".encode())
            digest.update(tensor.view(-1).view(dtype=torch.uint8).numpy().tobytes())
        return digest.digest()


def _batched(mask: Any, rows: Any) -> bool:
    import torch

    return isinstance(mask, torch.Tensor) and mask.dim() > 0 and mask.shape[0] == len(rows)
