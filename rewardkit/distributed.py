"""Data parallelism as the training loop sees it: which rank this is, and the few collectives the
loop needs (broadcast a value, average logged numbers, wait for everyone).

A backend exposes one as ``backend.dist``: :data:`SINGLE` (one process; every collective is the
identity) unless it runs several ranks, as the ``deepspeed`` backend does under ``torchrun`` or
the ``deepspeed`` launcher (:class:`TorchDistributed`, over an initialised torch.distributed
process group).

The loop's contract with a data-parallel backend: every rank holds the whole step's prompts (the
data order is seeded, so all ranks agree on it); ``generate`` returns the completions of all of
them (each rank samples :meth:`Distributed.shard` of them and the results are gathered), so
rewards, advantages and logs see the whole step; ``logprobs`` and ``backward`` then run on this
rank's shard only, and ``backward(loss)`` sums gradients over ranks (``loss`` is this rank's
share of the step's loss). Only rank 0 writes the run directory.

Rewards are sharded too (:func:`score_on_ranks`): each rank scores its share of the step's
groups and the scores are gathered, so every rank sees every reward while each computes 1/world
of them.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from typing import Any

from rewardkit.errors import RewardkitError

LAUNCHER_VARIABLES = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


class Distributed:
    """One process: rank 0 of 1, and every collective is the identity."""

    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, n: int) -> range:
        """This rank's contiguous share of ``n`` items (ranks differ by at most one item)."""
        return range(self.rank * n // self.world_size, (self.rank + 1) * n // self.world_size)

    def broadcast(self, value: Any) -> Any:
        """Rank 0's ``value`` on every rank (a picklable object)."""
        return value

    def all_gather(self, value: Any) -> list[Any]:
        """Every rank's ``value`` (picklable), in rank order."""
        return [value]

    def mean(self, values: Mapping[str, float]) -> dict[str, float]:
        """The mean over ranks of each number (every rank must pass the same keys)."""
        return dict(values)

    def barrier(self) -> None:
        """Wait until every rank gets here."""


SINGLE = Distributed()


class TorchDistributed(Distributed):
    """The default torch.distributed process group (it must be initialised)."""

    def __init__(self) -> None:
        import torch.distributed as dist

        self._dist = dist
        self.rank, self.world_size = dist.get_rank(), dist.get_world_size()

    def broadcast(self, value: Any) -> Any:
        box = [value]
        self._dist.broadcast_object_list(box, src=0)
        return box[0]

    def all_gather(self, value: Any) -> list[Any]:
        out: list[Any] = [None] * self.world_size
        self._dist.all_gather_object(out, value)
        return out

    def mean(self, values: Mapping[str, float]) -> dict[str, float]:
        import torch

        keys = sorted(values)
        if not keys:
            return {}
        tensor = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64)
        if self._dist.get_backend() == "nccl":
            tensor = tensor.cuda()
        self._dist.all_reduce(tensor)
        return {k: v / self.world_size for k, v in zip(keys, tensor.tolist())}

    def barrier(self) -> None:
        self._dist.barrier()


def score_on_ranks(reward: Any, groups: Sequence[Any], dist: Distributed = SINGLE) -> Any:
    """``reward(groups)`` with the work split over ranks: each scores its share of the groups
    (:meth:`Distributed.shard`) and the shares' numbers are gathered, so every rank returns the
    whole step's :class:`~rewardkit.rewards.RewardOutput`. Scores and components are the ones the
    shares computed, in order; a diagnostic is the mean of the shares' values weighted by their
    number of groups. One process: exactly ``reward(groups)``."""
    if dist.world_size == 1:
        return reward(groups)
    from rewardkit.rewards import RewardOutput

    mine = dist.shard(len(groups))
    local = reward([groups[i] for i in mine]) if len(mine) else RewardOutput(scores=[])
    shares = dist.all_gather(  # numbers only: no texts travel
        (len(mine), local.scores, local.components, local.diagnostics)
    )
    scores = [row for _, rows, _, _ in shares for row in rows]
    names = next((parts for n, _, parts, _ in shares if n), {})  # the same in every share
    components = {name: [row for _, _, parts, _ in shares for row in parts.get(name, [])]
                  for name in names}  # fmt: skip
    weights = {name: 0 for _, _, _, diag in shares for name in diag}
    diagnostics = dict.fromkeys(weights, 0.0)
    for n, _, _, diag in shares:
        for name, value in diag.items():
            diagnostics[name] += n * float(value)
            weights[name] += n
    return RewardOutput(
        scores=scores,
        components=components,
        diagnostics={k: v / weights[k] for k, v in diagnostics.items() if weights[k]},
    )


def same_on_every_rank(dist: Distributed, values: Mapping[str, Any]) -> None:
    """A one-line error naming the first setting whose value differs between ranks (ranks
    started with different options or data would silently train on different steps)."""
    if dist.world_size == 1:
        return
    every = dist.all_gather(dict(values))
    for key in values:
        for rank, theirs in enumerate(every):
            if theirs.get(key) != every[0].get(key):
                raise RewardkitError(
                    f"ranks disagree on {key}: rank 0 has {every[0].get(key)!r}, rank {rank} has "
                    f"{theirs.get(key)!r}; start every rank with the same command and data"
                )


def fingerprint(items: Sequence[Any]) -> str:
    """A short digest of a sequence of printable items (e.g. a split's ids and references)."""
    digest = hashlib.sha256()
    for item in items:
        digest.update(repr(item).encode("utf-8"))
    return digest.hexdigest()[:12]


def launcher_environment() -> dict[str, str] | None:
    """The launcher's variables when this process was started by ``torchrun`` or the
    ``deepspeed`` launcher; None when none is set (a plain single process). Some but not all of
    them set is a one-line error naming the missing ones."""
    present = {k: os.environ[k] for k in LAUNCHER_VARIABLES if os.environ.get(k)}
    if not present:
        return None
    missing = [k for k in LAUNCHER_VARIABLES if k not in present]
    if missing:
        raise RewardkitError(
            f"incomplete launcher environment: {', '.join(present)} set but {', '.join(missing)} "
            "missing; start through torchrun or the deepspeed launcher, or unset them all to run "
            "one process"
        )
    for key in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_PORT"):
        if not present[key].isdigit():
            raise RewardkitError(f"launcher environment: {key}={present[key]!r} is not a number")
    if int(present["RANK"]) >= int(present["WORLD_SIZE"]):
        raise RewardkitError(
            f"launcher environment: RANK={present['RANK']} must be below "
            f"WORLD_SIZE={present['WORLD_SIZE']}"
        )
    return present
