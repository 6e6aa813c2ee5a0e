"""rewardkit rewards as a verl custom reward function.

verl loads a reward function from a file (``custom_reward_function.path``) by name
(``custom_reward_function.name``) and passes ``custom_reward_function.reward_kwargs`` as extra
keyword arguments. This file is such a module; its path is printed by
``python -c "import rewardkit.integrations.verl as m; print(m.__file__)"``.

* ``compute_score(data_source, solution_str, ground_truth, extra_info=None, reward="bleu")``:
  one completion, for verl's default ("naive") reward manager;
* ``compute_score_batch(data_sources, solution_strs, ground_truths, extra_infos, reward="bleu")``:
  the whole batch, for ``reward_model.reward_manager=batch``. Consecutive rows with the same
  ground truth and source (verl repeats each prompt ``rollout.n`` times, interleaved) form one
  rewardkit group, so per-group work and caches apply.

``ground_truth`` is the reference: a string, or a list of strings for several references. The
source text (COMET needs it) is read from ``extra_info[source_key]`` when ``source_key`` is
set. Options come through ``reward_kwargs``: ``reward`` (a rewardkit spec such as
``bleu=0.7,chrf=0.3``), ``source_key``, and ``details`` (return ``{"score": ..., <component>:
...}`` dicts, which verl logs as extra reward info, instead of floats).

verl need not be installed to import this module, and it defines no dataclasses (verl may load
it without registering it in ``sys.modules``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rewardkit.integrations import as_references, build, score_flat

__all__ = ["compute_score", "compute_score_batch"]


def compute_score(
    data_source: Any,
    solution_str: str,
    ground_truth: Any,
    extra_info: Any = None,
    reward: str = "bleu",
    source_key: str | None = None,
    details: bool = False,
    **unused: Any,
) -> float | dict[str, float]:
    """Score one completion against its ground truth with the rewardkit reward ``reward``."""
    return compute_score_batch(
        [data_source], [solution_str], [ground_truth], [extra_info], reward, source_key, details
    )[0]


def compute_score_batch(
    data_sources: Sequence[Any],
    solution_strs: Sequence[str],
    ground_truths: Sequence[Any],
    extra_infos: Sequence[Any] | None = None,
    reward: str = "bleu",
    source_key: str | None = None,
    details: bool = False,
    **unused: Any,
) -> list[float] | list[dict[str, float]]:
    """Score a batch (verl's batch reward manager): one float (or dict) per completion."""
    n = len(solution_strs)
    if extra_infos is None:
        extra_infos = [None] * n
    references = []
    for i, truth in enumerate(ground_truths):
        refs = as_references(truth, f"verl row {i} (ground_truth)")
        if refs is None:
            raise ValueError(f"verl row {i} has no ground_truth; rewardkit rewards need one")
        references.append(refs)
    sources = None
    if source_key:
        sources = []
        for i, info in enumerate(extra_infos):
            if not isinstance(info, dict) or not isinstance(info.get(source_key), str):
                raise ValueError(f"verl row {i}: extra_info has no string {source_key!r}")
            sources.append(info[source_key])
    result = score_flat(
        build(reward), [str(s) for s in solution_strs], references, sources, keys=data_sources
    )
    scores = [float(s) for s in result.scores]
    if not details:
        return scores
    return [
        {"score": score, **{label: float(v[i]) for label, v in result.components.items()}}
        for i, score in enumerate(scores)
    ]
