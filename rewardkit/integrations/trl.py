"""rewardkit rewards as TRL reward functions (``trl.GRPOTrainer(reward_funcs=...)``).

TRL calls each reward function once per step on the local batch::

    reward_func(prompts=[...], completions=[...], completion_ids=[...], <dataset column>=[...],
                trainer_state=..., log_extra=..., log_metric=...)

with one row per completion, every dataset column repeated on each row, and a prompt's
``num_generations`` completions next to each other. It expects one float per completion (None
where the function does not apply) and logs the mean under the function's ``__name__``.

:func:`reward_func` returns such a function: it reads the references from a dataset column
(a string, or a list of strings for several references), forms one rewardkit group per run of
consecutive rows with the same prompt, references and source, and scores the batch in one
reward call, so rewardkit's per-group work and caches apply. Conversational completions (lists
of ``{"role": ..., "content": ...}`` messages) are scored on their assistant text.

Example::

    from trl import GRPOConfig, GRPOTrainer
    from rewardkit.integrations.trl import reward_func

    trainer = GRPOTrainer(model=..., train_dataset=dataset,  # columns: prompt, reference
                          reward_funcs=reward_func("bleu"), args=GRPOConfig(...))

A weighted spec (``bleu=0.7,chrf=0.3``) gives one function that returns the weighted sum (its
components' means are logged through ``log_metric``), or, with ``per_component=True``, a list
of functions, one per component, each with a ``weight`` attribute for ``GRPOConfig(
reward_weights=[f.weight for f in funcs])``, so TRL logs each component itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rewardkit.errors import RewardError
from rewardkit.integrations import as_references, build, score_flat
from rewardkit.rewards import Reward, WeightedSum

__all__ = ["RewardFunction", "reward_func"]


def completion_text(completion: Any) -> str:
    """The text of a TRL completion: a string, or a conversational list of messages (the
    assistant messages' contents joined; content may be a string or a list of text parts)."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        completion = [completion]
    if isinstance(completion, list):
        texts = []
        for message in completion:
            if not isinstance(message, dict):
                break
            if message.get("role", "assistant") != "assistant":
                continue
            content = message.get("content")
            if isinstance(content, list):  # [{"type": "text", "text": ...}, ...]
                content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
            texts.append(content if isinstance(content, str) else "")
        else:
            return "\n".join(texts)
    raise RewardError(
        f"cannot read a completion of type {type(completion).__name__}: expected a string or a "
        "list of chat messages"
    )


class RewardFunction:
    """A TRL reward function for one rewardkit reward. Call it as TRL does (keywords)."""

    def __init__(
        self,
        reward: Reward,
        name: str,
        reference_column: str = "reference",
        source_column: str | None = None,
        weight: float = 1.0,
    ):
        self.reward = reward
        self.__name__ = name
        self.reference_column = reference_column
        self.source_column = source_column
        self.weight = weight

    def __repr__(self) -> str:
        return f"<rewardkit TRL reward {self.__name__} ({self.reward.signature()})>"

    def __call__(
        self, prompts: Sequence[Any], completions: Sequence[Any], **columns: Any
    ) -> list[float | None]:
        n = len(completions)
        where = f"rewardkit reward '{self.__name__}'"
        references = self._column(columns, self.reference_column, n)
        sources = self._column(columns, self.source_column, n) if self.source_column else None
        result = score_flat(
            self.reward,
            [completion_text(c) for c in completions],
            [as_references(r, where) for r in references],
            None if sources is None else [None if s is None else str(s) for s in sources],
            keys=[repr(p) for p in prompts],  # another prompt is another group
        )
        log_metric = columns.get("log_metric")
        if callable(log_metric) and len(result.components) > 1:
            for label, values in result.components.items():
                present = [v for v in values if v is not None]
                if present:
                    log_metric(f"{self.__name__}/{label}", sum(present) / len(present))
        return result.scores

    def _column(self, columns: dict[str, Any], name: str, n: int) -> list[Any]:
        if name not in columns:
            available = sorted(
                k for k in columns if k not in ("trainer_state", "log_extra", "log_metric")
            )
            raise RewardError(
                f"rewardkit reward '{self.__name__}' needs the dataset column {name!r}; the "
                f"batch has {', '.join(available) or 'no columns'} (set reference_column= or "
                "source_column=)"
            )
        values = list(columns[name])
        if len(values) != n:
            raise RewardError(f"column {name!r} has {len(values)} rows for {n} completions")
        return values


def reward_func(
    spec: str | Reward,
    reference_column: str = "reference",
    source_column: str | None = None,
    *,
    per_component: bool = False,
    name: str | None = None,
) -> Any:
    """A TRL reward function scoring completions with the rewardkit reward ``spec``.

    ``spec``: a reward spec (``bleu``, ``chrf:word_order=2``, ``bleu=0.7,chrf=0.3``) or a built
    :class:`~rewardkit.Reward`. ``reference_column``: the dataset column with each prompt's
    reference (a string, a list of strings, or None to skip the row: TRL then gets None).
    ``source_column``: a column with the source text (COMET needs it). ``name``: the
    ``__name__`` TRL logs (default ``rewardkit_<spec>`` with non-word characters as ``_``).
    ``per_component``: for a weighted spec, return a list of functions, one per component,
    each with its ``weight``. A bad spec raises :class:`~rewardkit.RewardError` at once.
    """
    reward = build(spec) if isinstance(spec, str) else spec
    base = name or "rewardkit_" + _identifier(reward.spec or reward.name)
    if not per_component:
        return RewardFunction(reward, base, reference_column, source_column)
    parts = reward.parts if isinstance(reward, WeightedSum) else [(reward.name, 1.0, reward)]
    return [
        RewardFunction(part, f"{base}_{_identifier(label)}", reference_column, source_column, w)
        if len(parts) > 1
        else RewardFunction(part, base, reference_column, source_column, w)
        for label, w, part in parts
    ]


def _identifier(text: str) -> str:
    out = "".join(c if c.isalnum() else "_" for c in text.lower())
    return "_".join(p for p in out.split("_") if p)
