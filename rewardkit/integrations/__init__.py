"""rewardkit's rewards inside other trainers.

* :mod:`rewardkit.integrations.trl`: reward functions for TRL's ``GRPOTrainer``;
* :mod:`rewardkit.integrations.verl`: a file for verl's ``custom_reward_function.path``;
* :mod:`rewardkit.integrations.server`: ``rewardkit serve``, an HTTP reward server that speaks
  OpenRLHF's remote reward-model protocol (``--remote_rm_url``) and rewardkit's own ``/score``.

Trainers hand rewards a flat batch: one row per completion, with the prompt's reference(s) and
optional source repeated on each row. :func:`score_flat` turns consecutive rows that share their
references and source back into rewardkit :class:`~rewardkit.Group` objects (TRL and verl place
a prompt's G completions next to each other), scores the whole batch in one reward call, and
flattens the scores again, so per-group work (reference n-grams, COMET's source and reference
embeddings) runs once per prompt rather than once per completion.

Importing this package is light: no torch, no metric library, no server library.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

from rewardkit.errors import RewardError
from rewardkit.rewards import Group, Reward, RewardOutput

__all__ = ["FlatScores", "as_references", "build", "group_rows", "score_flat", "spread"]


@dataclass
class FlatScores:
    """Scores of a flat batch: ``scores[i]`` for row i (None where the row had no reference),
    ``components[label][i]`` likewise for each component of a weighted spec."""

    scores: list[float | None]
    components: dict[str, list[float | None]]
    groups: int  # how many groups the rows formed


@functools.lru_cache(maxsize=32)
def build(spec: str) -> Reward:
    """The reward of ``spec`` (``bleu``, ``bleu=0.7,chrf=0.3``, ...), built once per process
    from the registry of installed plugins. A bad spec raises a one-line :class:`RewardError`."""
    from rewardkit.registry import load_registry

    return load_registry().build_reward(spec)


def as_references(value: object, where: str) -> tuple[str, ...] | None:
    """A reference cell -> a tuple of references: a string is one reference, a list (or tuple,
    or numpy array) of strings several; None means the row has none."""
    if value is None:
        return None
    if isinstance(value, str):
        return (value,)
    if isinstance(value, (list, tuple)) or type(value).__name__ == "ndarray":
        refs = tuple(value)
        if refs and all(isinstance(r, str) for r in refs):
            return refs
    raise RewardError(
        f"{where}: a reference must be a string or a non-empty list of strings, "
        f"got {type(value).__name__} {str(value)[:60]!r}"
    )


def group_rows(
    completions: Sequence[str],
    references: Sequence[tuple[str, ...] | None],
    sources: Sequence[str | None] | None = None,
    keys: Sequence[object] | None = None,
) -> tuple[list[Group], list[list[int]]]:
    """Flat rows -> groups: consecutive rows with equal references, source and key (e.g. the
    prompt) form one group. Rows whose references are None join no group. Returns the groups
    and, for each, the indices of its rows in order."""
    n = len(completions)
    sources = [None] * n if sources is None else sources
    keys = [None] * n if keys is None else keys
    if not n == len(references) == len(sources) == len(keys):
        raise RewardError(
            f"{n} completions but {len(references)} references, {len(sources)} sources and "
            f"{len(keys)} keys; give one of each per completion"
        )
    heads: list[tuple[tuple[str, ...], str | None]] = []
    rows: list[list[int]] = []
    previous = None
    for i, (refs, source, key) in enumerate(zip(references, sources, keys)):
        if refs is None:
            previous = None
            continue
        if (refs, source, key) != previous:
            heads.append((refs, source))
            rows.append([])
            previous = (refs, source, key)
        rows[-1].append(i)
    groups = [
        Group(refs, tuple(completions[i] for i in idx), source)
        for (refs, source), idx in zip(heads, rows)
    ]
    return groups, rows


def spread(out: RewardOutput, rows: list[list[int]], n: int) -> FlatScores:
    """A reward's output on :func:`group_rows`' groups -> one value per row (None elsewhere)."""

    def flat(grid: list[list[float]]) -> list[float | None]:
        values: list[float | None] = [None] * n
        for idx, row in zip(rows, grid):
            for i, value in zip(idx, row):
                values[i] = value
        return values

    components = {label: flat(grid) for label, grid in out.components.items()}
    return FlatScores(flat(out.scores), components, len(rows))


def score_flat(
    reward: Reward,
    completions: Sequence[str],
    references: Sequence[tuple[str, ...] | None],
    sources: Sequence[str | None] | None = None,
    keys: Sequence[object] | None = None,
) -> FlatScores:
    """Score one completion per row in one reward call, grouped as :func:`group_rows` does;
    rows without references get None."""
    groups, rows = group_rows(completions, references, sources, keys)
    if not groups:
        return FlatScores([None] * len(completions), {}, 0)
    return spread(reward(groups), rows, len(completions))
