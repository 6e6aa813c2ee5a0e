"""The reward contract.

A reward scores a whole training step at once. The step is a list of :class:`Group`: for each
prompt its reference(s), an optional source text (a transcript or source-language sentence) and
its G sampled completions. The reward returns one float per completion, as a :class:`RewardOutput`.

Two ways to write a reward:

* subclass :class:`GroupwiseReward` and implement ``prepare`` (per-reference work, run once per
  group) and ``score_one`` (one completion against the prepared references); deduplication of
  identical completions within a group comes for free;
* subclass :class:`Reward` and implement ``score`` for full control, e.g. to batch a neural
  model's calls across the whole step.

Rewards are built from a spec string (``bleu``, ``bleu:tokenize=intl,smooth=floor``,
``bleu=0.7,chrf=0.3``, ``0.5*bleu:tokenize=intl,0.5*chrf``): see :func:`parse_reward_spec`.
"""

from __future__ import annotations

import math
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from rewardkit.errors import RewardError
from rewardkit.options import Configurable, convert_options

NAME_PATTERN = re.compile(r"[a-z0-9_]+")


@dataclass(frozen=True)
class Group:
    """One prompt of a step: its reference(s), optional source text and G completions."""

    references: tuple[str, ...]
    completions: tuple[str, ...]
    source: str | None = None

    def __post_init__(self) -> None:
        # Accept lists for convenience, store tuples so groups are hashable and immutable.
        object.__setattr__(self, "references", tuple(self.references))
        object.__setattr__(self, "completions", tuple(self.completions))
        if not self.references:
            raise RewardError("a group needs at least one reference (an empty string is allowed)")


@dataclass
class RewardOutput:
    """Scores for a step: ``scores[i][j]`` is completion j of group i.

    ``components`` holds each named part of a combined reward (a single reward has one component,
    itself); ``diagnostics`` holds optional scalar statistics a reward wants logged.
    """

    scores: list[list[float]]
    components: dict[str, list[list[float]]] = field(default_factory=dict)
    diagnostics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class CorpusScore:
    """A corpus-level score in the metric's usual scale, e.g. BLEU 0-100, with its signature;
    ``higher_is_better`` is false for error rates such as TER."""

    metric: str
    score: float
    signature: str | None = None
    higher_is_better: bool = True

    def format(self) -> str:
        text = f"{self.metric} = {self.score:.2f}"
        return f"{text} ({self.signature})" if self.signature else text


class Reward(Configurable, ABC):
    """Base class of every reward. Subclasses set the class attributes and implement ``score``.

    Options are the keyword parameters of ``__init__``, annotated with ``bool``, ``int``,
    ``float``, ``str`` or a ``Literal`` of strings; a spec like ``bleu:smooth=floor`` passes them.
    """

    name: ClassVar[str]
    kind: ClassVar[str] = "reward"
    error = RewardError
    #: Closed interval of possible scores, and whether higher is better (always true for a reward).
    range: ClassVar[tuple[float, float]] = (0.0, 1.0)
    higher_is_better: ClassVar[bool] = True
    #: Language codes the reward's model was trained on (BERTScore with an English encoder:
    #: ("en",)); None when it covers any language or nobody knows. ``rewardkit bench`` warns when
    #: the data's language is not among them.
    languages: tuple[str, ...] | None = None
    #: Options that make rewardkit run a program (comet's env=DIR runs DIR/bin/python): taken
    #: from the command line only, never from a config file or a resumed run's config.
    command_line_only: ClassVar[tuple[str, ...]] = ()
    #: Set by the registry: the plugin that registered the reward, and the spec it was built from.
    plugin: str = "?"
    spec: str = ""

    @abstractmethod
    def score(self, groups: Sequence[Group]) -> RewardOutput:
        """Score every completion of every group of the step."""

    def corpus_score(
        self, hypotheses: Sequence[str], references: Sequence[Sequence[str]]
    ) -> CorpusScore | None:
        """The metric's corpus-level score, if it has one (``references[i]`` belong to hyp i)."""
        return None

    def corpus_resampler(
        self, hypotheses: Sequence[str], references: Sequence[Sequence[str]]
    ) -> Callable[[Sequence[int]], CorpusScore | None] | None:
        """For bootstrap intervals: a function of per-segment counts (segment i repeated
        ``counts[i]`` times) giving the corpus score of that resampled corpus; None when the
        reward has no corpus score. This default calls :meth:`corpus_score` on each resample;
        metrics with sufficient statistics (BLEU, chrF, TER) override it to sum them instead."""
        if self.corpus_score(hypotheses, references) is None:
            return None

        def resample(counts: Sequence[int]) -> CorpusScore | None:
            picked = [i for i, c in enumerate(counts) for _ in range(int(c))]
            return self.corpus_score(
                [hypotheses[i] for i in picked], [references[i] for i in picked]
            )

        return resample

    @classmethod
    def unavailable(cls) -> str | None:
        """Why this reward cannot be built here (a missing extra or environment), else None.
        Commands that pick rewards by default (``rewardkit bench``) skip unavailable ones."""
        return None

    def signature(self) -> str:
        """What identifies this reward's scores for reproducibility (override to add versions,
        tokenizers or model ids)."""
        return f"{self.spec or self.name}|plugin:{self.plugin}"

    def __call__(self, groups: Sequence[Group]) -> RewardOutput:
        """Score a step, checking the plugin's output and naming the plugin if it fails."""
        try:
            output = self.score(groups)
        except RewardError:
            raise
        except Exception as exc:
            raise RewardError(
                f"reward '{self.name}' (plugin '{self.plugin}') failed while scoring: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        _check_output(self, groups, output)
        if not output.components:
            output.components = {self.name: output.scores}
        return output


class GroupwiseReward(Reward):
    """A reward computed one completion at a time against references prepared once per group.

    Identical completions within a group are scored once. ``diagnostics['unique_fraction']``
    reports the share of completions that needed scoring.
    """

    @abstractmethod
    def prepare(self, references: Sequence[str], source: str | None) -> Any:
        """Per-reference work for one group (tokenisation, n-gram statistics)."""

    @abstractmethod
    def score_one(self, prepared: Any, completion: str) -> float:
        """Score one completion against the output of :meth:`prepare`."""

    def score(self, groups: Sequence[Group]) -> RewardOutput:
        scores: list[list[float]] = []
        total = unique = 0
        for group in groups:
            prepared = self.prepare(group.references, group.source)
            seen: dict[str, float] = {}
            row = []
            for completion in group.completions:
                if completion not in seen:
                    seen[completion] = float(self.score_one(prepared, completion))
                row.append(seen[completion])
            scores.append(row)
            total += len(row)
            unique += len(seen)
        return RewardOutput(scores, diagnostics={"unique_fraction": unique / max(total, 1)})


def _check_output(reward: Reward, groups: Sequence[Group], output: RewardOutput) -> None:
    where = f"reward '{reward.name}' (plugin '{reward.plugin}')"
    if not isinstance(output, RewardOutput):
        raise RewardError(f"{where} returned {type(output).__name__}, expected RewardOutput")
    shape = [len(g.completions) for g in groups]
    if [len(row) for row in output.scores] != shape:
        raise RewardError(
            f"{where} returned scores of shape {[len(r) for r in output.scores]}, "
            f"expected one per completion {shape}"
        )
    for row in output.scores:
        for value in row:
            if not isinstance(value, float) or not math.isfinite(value):
                raise RewardError(f"{where} returned a non-finite or non-float score: {value!r}")


class WeightedSum(Reward):
    """A weighted sum of rewards; each component's scores are returned for logging."""

    name = "weighted_sum"
    plugin = "rewardkit"

    def __init__(self, parts: Sequence[tuple[str, float, Reward]]):
        self.parts = list(parts)
        low = sum(w * r.range[0] for _, w, r in self.parts)
        high = sum(w * r.range[1] for _, w, r in self.parts)
        self.range = (low, high)  # type: ignore[misc]

    def score(self, groups: Sequence[Group]) -> RewardOutput:
        total = [[0.0] * len(g.completions) for g in groups]
        components: dict[str, list[list[float]]] = {}
        diagnostics: dict[str, float] = {}
        for label, weight, reward in self.parts:
            out = reward(groups)
            components[label] = out.scores
            diagnostics.update({f"{label}/{k}": v for k, v in out.diagnostics.items()})
            for row_total, row in zip(total, out.scores):
                for j, value in enumerate(row):
                    row_total[j] += weight * value
        return RewardOutput(total, components, diagnostics)

    def signature(self) -> str:
        return " + ".join(f"{weight}*({reward.signature()})" for _, weight, reward in self.parts)

    def corpus_score(self, hypotheses, references):
        return None

    @property
    def languages(self) -> tuple[str, ...] | None:  # type: ignore[override]
        """The languages every part's model covers (None when no part restricts them)."""
        known = [set(r.languages) for _, _, r in self.parts if r.languages is not None]
        return tuple(sorted(set.intersection(*known))) if known else None


# --- Spec parsing -------------------------------------------------------------------------------


@dataclass(frozen=True)
class RewardPart:
    """One component of a reward spec: ``weight * name:options``."""

    name: str
    options: dict[str, str]
    weight: float = 1.0

    @property
    def label(self) -> str:
        if not self.options:
            return self.name
        return self.name + ":" + ",".join(f"{k}={v}" for k, v in self.options.items())


SPEC_HELP = (
    "a reward spec is NAME, NAME:KEY=VALUE,KEY=VALUE, or a weighted sum such as "
    "bleu=0.7,chrf=0.3 or 0.7*bleu:tokenize=intl,0.3*chrf"
)


def parse_reward_spec(spec: str, is_reward: Callable[[str], bool]) -> list[RewardPart]:
    """Parse a reward spec into its parts.

    Grammar (tokens separated by commas)::

        NAME                one reward with default options
        NAME:KEY=VALUE      a reward with its first option; further KEY=VALUE tokens add options
        NAME=WEIGHT         a weighted component (NAME must be a known reward)
        WEIGHT*NAME[:...]   a weighted component with options

    ``is_reward`` tells known reward names apart from option keys in ``NAME=WEIGHT`` tokens.
    """
    parts: list[dict[str, Any]] = []
    tokens = [t.strip() for t in spec.split(",")]
    if not spec.strip() or any(not t for t in tokens):
        raise RewardError(f"malformed reward spec {spec!r}: empty item; {SPEC_HELP}")
    for token in tokens:
        weight = None
        star = re.fullmatch(r"([^*:=]+)\*(.+)", token)
        if star:
            weight, token = _parse_weight(star.group(1), star.group(2).split(":")[0]), star.group(2)
        key, eq, value = token.partition("=")
        name, colon, first_option = token.partition(":")
        if colon:  # NAME:KEY=VALUE starts a component
            parts.append(_new_part(name, weight, spec))
            _add_option(parts[-1], first_option, spec)
        elif not eq:  # NAME
            parts.append(_new_part(token, weight, spec))
        elif is_reward(key.lower()) and weight is None:  # NAME=WEIGHT
            parts.append(_new_part(key, _parse_weight(value, key), spec))
        elif parts and weight is None:  # KEY=VALUE continues the current component
            _add_option(parts[-1], token, spec)
        else:
            raise RewardError(
                f"malformed reward spec {spec!r}: {token!r} is neither a known reward nor an "
                f"option of one; {SPEC_HELP}"
            )
    result = [RewardPart(p["name"], p["options"], p["weight"]) for p in parts]
    labels = [p.label for p in result]
    for label in labels:
        if labels.count(label) > 1:  # one column per component: two would share a name
            raise RewardError(
                f"malformed reward spec {spec!r}: '{label}' appears twice; give it once with "
                "the sum of the weights, or different options"
            )
    return result


def _new_part(name: str, weight: float | None, spec: str) -> dict[str, Any]:
    name = name.lower()  # registered names are lowercase, so `rougeL` means `rougel`
    if not NAME_PATTERN.fullmatch(name):
        raise RewardError(
            f"malformed reward spec {spec!r}: {name!r} is not a reward name; {SPEC_HELP}"
        )
    return {"name": name, "options": {}, "weight": 1.0 if weight is None else weight}


def _add_option(part: dict[str, Any], token: str, spec: str) -> None:
    key, eq, value = token.partition("=")
    if not eq or not key or not value:
        raise RewardError(
            f"malformed reward spec {spec!r}: option {token!r} of '{part['name']}' "
            "must be KEY=VALUE"
        )
    if key in part["options"]:
        raise RewardError(f"malformed reward spec {spec!r}: option {key!r} given twice")
    part["options"][key] = value


def _parse_weight(text: str, name: str) -> float:
    try:
        weight = float(text)
    except ValueError:
        weight = math.nan
    if not math.isfinite(weight) or weight <= 0:
        raise RewardError(
            f"bad weight {text!r} for reward '{name}': use a positive number, e.g. {name}=0.5"
        )
    return weight


# --- Options ------------------------------------------------------------------------------------


def build_reward(cls: type[Reward], options: dict[str, str]) -> Reward:
    """Instantiate ``cls`` with string options converted to the types its ``__init__`` declares."""
    kwargs = convert_options(cls, options)
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as exc:
        raise RewardError(f"reward '{cls.name}': {exc}") from exc
