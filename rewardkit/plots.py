"""PNG plots of a run directory's metrics, and ``rewardkit plot RUN_DIR``.

:func:`plot_run` reads ``metrics.jsonl`` (see :mod:`rewardkit.rundir`) and writes each plot whose
data exists, atomically (a temporary file renamed into place). Metric names it recognises; ``/``,
``_`` or ``.`` may separate the parts, so ``reward/bleu/mean`` works as well as
``reward_bleu_mean``:

=================  ================================================================================
curves.png         the run at a glance: the validation metric that selects checkpoints (config
                   ``eval_metric``: ``reward`` means ``reward_mean``) and the training signal
                   (``nll`` of SFT steps, ``reward_mean`` of GRPO steps); an SFT warm-up (config
                   ``sft_warmup_steps``) is shaded and its end marked
rewards.png        ``reward_mean`` (the total) and ``reward_<component>_mean``, each with its
                   ``..._std`` as a band (plain ``reward_<component>`` works too)
kl.png             ``kl`` (k3 KL to the reference policy) and ``entropy``, with ``..._std`` bands
lengths.png        ``completion_length_mean`` with ``..._min``/``..._max`` and ``..._std`` bands;
                   any ``...truncat...`` key (share of completions cut at the limit)
training.png       ``advantage_{mean,std,min,max}``; ``clip_fraction{,_low,_high}`` and
                   ``zero_std_fraction``; ``ratio_mean``, ``off_policy_ratio_mean``; ``lr`` (or
                   ``learning_rate``); ``grad_norm``; ``loss``
validation.png     every metric logged with ``split="validation"``, one panel each
timing.png         ``time_<stage>`` (or ``timing_<stage>``) seconds per step, stacked;
                   ``time_total`` / ``step_time`` as a line on top
=================  ================================================================================

The curves of every plot but validation.png come from ``split="train"``. Noisy series (30 points
or more) are drawn faintly with a smoothed line (a centred moving average) on top.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from rewardkit.errors import RewardkitError
from rewardkit.rundir import METRICS_FILE, RESERVED_KEYS, RUN_FILE, RunDir

DPI = 110
SMOOTH_MIN_POINTS = 30
_SEP = "[/_.]"
_STATS = ("mean", "std", "min", "max")

Series = dict[str, dict[int, float]]  # metric name -> {step: value}


def plot_run(run_dir: Path | str, out_dir: Path | str | None = None) -> list[Path]:
    """Write the run's PNG plots to ``out_dir`` (default ``RUN_DIR/plots``); returns their
    paths. A plot is written only when its metrics exist."""
    run = RunDir(run_dir)
    if not run.path.exists():
        raise RewardkitError(f"{run.path} does not exist")
    if not run.is_run_dir():
        raise RewardkitError(f"{run.path} is not a run directory (no {RUN_FILE})")
    rows = run.read_metrics()
    if not rows:
        raise RewardkitError(f"{run.path} has no metrics yet ({METRICS_FILE} is missing or empty)")
    train, validation = _series(rows, "train"), _series(rows, "validation")
    config = run.config() if run.config_path.is_file() else {}
    out = Path(out_dir) if out_dir is not None else run.path / "plots"
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RewardkitError(f"cannot create the plot directory {out}: {exc.strerror}") from None

    name = run.path.resolve().name
    plots: list[tuple[str, Callable[..., Any], Any]] = [
        ("curves.png", _curves_figure, (train, validation, config)),
        ("rewards.png", _rewards_figure, train),
        ("kl.png", _kl_figure, train),
        ("lengths.png", _lengths_figure, train),
        ("training.png", _training_figure, train),
        ("validation.png", _validation_figure, validation),
        ("timing.png", _timing_figure, train),
    ]
    written = []
    for file, build, series in plots:
        figure = build(series, name)
        if figure is not None:
            written.append(_save(figure, out / file))
    if not written:
        splits = sorted({str(r.get("split")) for r in rows})
        raise RewardkitError(
            f"{run.path} has no metrics that rewardkit plots (splits: {', '.join(splits)}); "
            "see `rewardkit.plots` for the metric names it knows"
        )
    return written


@click.command("plot")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Where the PNGs go (default: RUN_DIR/plots).",
)
def plot_command(run_dir: Path, out_dir: Path | None) -> None:
    """Plot a run's metrics: rewards, KL, completion lengths, optimisation, validation and time
    per stage (each when logged). Prints the paths of the PNGs written."""
    for path in plot_run(run_dir, out_dir):
        click.echo(str(path))


# --- data ---


def _series(rows: list[dict[str, Any]], split: str) -> Series:
    series: Series = {}
    for row in rows:
        if row.get("split") != split:
            continue
        step = row["step"]
        for key, value in row.items():
            if key in RESERVED_KEYS or isinstance(value, bool):
                continue
            if isinstance(value, (int, float)):
                series.setdefault(key, {})[step] = float(value)  # a repeated step: last wins
    return series


def _xy(series: Series, key: str) -> tuple[Any, Any]:
    import numpy as np

    points = sorted(series[key].items())
    return np.array([p[0] for p in points], dtype=float), np.array(
        [p[1] for p in points], dtype=float
    )


def _find(series: Series, base: str, stat: str) -> str | None:
    """``base`` + separator + ``stat`` if logged (``reward`` + ``std`` -> ``reward_std``)."""
    for sep in "_/.":
        if base + sep + stat in series:
            return base + sep + stat
    return None


def _bases(series: Series, pattern: str) -> list[str]:
    """Series bases whose name matches ``pattern`` at the start: ``x_mean`` gives ``x``, a plain
    ``x`` gives ``x``; ``x_std``/``x_min``/``x_max`` are bands, not series of their own."""
    matcher = re.compile(pattern)
    bases: list[str] = []
    for key in series:
        if not matcher.match(key):
            continue
        stat = re.search(f"{_SEP}({'|'.join(_STATS)})$", key)
        if stat and stat.group(1) != "mean":
            base = key[: stat.start()]
            if base in series or _find(series, base, "mean"):
                continue  # a band of a series that exists
            # a lone x_min / x_max / x_std: plot it as its own series
            base = key
        elif stat:
            base = key[: stat.start()]
        else:
            base = key
        if base not in bases:
            bases.append(base)
    return bases


def _main_key(series: Series, base: str) -> str:
    return base if base in series else (_find(series, base, "mean") or base)


# --- drawing ---


def _figure(panels: int, title: str, cols: int = 3, width: float = 4.6) -> tuple[Any, list[Any]]:
    from matplotlib.figure import Figure

    cols = min(cols, panels)
    rows = -(-panels // cols)
    fig = Figure(figsize=(width * cols, 3.3 * rows + 0.4), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).flatten().tolist()
    for ax in axes[panels:]:
        ax.axis("off")
    fig.suptitle(title)
    return fig, axes[:panels]


def _style(ax: Any, title: str, ylabel: str, legend: bool = False) -> None:
    ax.set_title(title)
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if legend:
        handles, _ = ax.get_legend_handles_labels()
        if len(handles) > 1:
            ax.legend(fontsize=8)


def _smooth(values: Any) -> Any:
    """Centred moving average over about 1/15 of the points (no lag, unlike an EMA), ignoring
    NaNs; shorter windows at the ends."""
    import numpy as np

    half = max(1, len(values) // 30)
    finite = np.isfinite(values)
    kernel = np.ones(2 * half + 1)
    sums = np.convolve(np.where(finite, values, 0.0), kernel, mode="same")
    counts = np.convolve(finite.astype(float), kernel, mode="same")
    return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def _line(ax: Any, x: Any, y: Any, label: str | None = None, **kwargs: Any) -> Any:
    """A curve; noisy long series faint with a smoothed line on top. Returns the colour."""
    if len(x) >= SMOOTH_MIN_POINTS:
        (raw,) = ax.plot(x, y, lw=0.8, alpha=0.3, **kwargs)
        kwargs["color"] = raw.get_color()
        ax.plot(x, _smooth(y), lw=1.6, label=label, **kwargs)
        return raw.get_color()
    marker = "o" if len(x) <= 15 else None
    (line,) = ax.plot(x, y, lw=1.6, marker=marker, ms=3, label=label, **kwargs)
    return line.get_color()


def _with_bands(ax: Any, series: Series, base: str, label: str | None = None) -> None:
    """The series ``base`` (plain or ``_mean``), its ±std band and min-max band if logged."""
    import numpy as np

    key = _main_key(series, base)
    x, y = _xy(series, key)
    color = _line(ax, x, y, label=label or ("mean" if key != base else base))
    std = _find(series, base, "std")
    if std:
        s = np.array([series[std].get(int(step), np.nan) for step in x])
        ax.fill_between(x, y - s, y + s, color=color, alpha=0.18, lw=0, label="± std")
    lo, hi = _find(series, base, "min"), _find(series, base, "max")
    if lo and hi:
        low = np.array([series[lo].get(int(step), np.nan) for step in x])
        high = np.array([series[hi].get(int(step), np.nan) for step in x])
        ax.fill_between(x, low, high, color=color, alpha=0.08, lw=0, label="min-max")


def _label(base: str, prefix: str) -> str:
    rest = re.sub(f"^{prefix}{_SEP}?", "", base)
    return rest.replace("/", " ").replace("_", " ") if rest else "total"


def _rewards_figure(series: Series, run: str) -> Any:
    bases = _bases(series, f"rewards?($|{_SEP})")
    if not bases:
        return None
    bases.sort(key=lambda b: _label(b, "rewards?") != "total")  # the total first
    fig, axes = _figure(len(bases), f"Rewards: mean ± std over a step's completions ({run})")
    for ax, base in zip(axes, bases):
        _with_bands(ax, series, base)
        name = _label(base, "rewards?")
        _style(ax, "reward (total)" if name == "total" else f"reward: {name}", "reward")
    return fig


def _kl_figure(series: Series, run: str) -> Any:
    kl = _bases(series, f"kl($|{_SEP})")
    entropy = _bases(series, f"entropy($|{_SEP})")
    if not kl:
        return None
    fig, axes = _figure(1 + bool(entropy), f"KL to the reference policy ({run})")
    for base in kl:
        _with_bands(axes[0], series, base, label=base)
    _style(axes[0], "KL (k3 estimate)", "KL per token (nats)", legend=True)
    if entropy:
        for base in entropy:
            _with_bands(axes[1], series, base, label=base)
        _style(axes[1], "Policy entropy", "entropy per token (nats)", legend=True)
    return fig


def _lengths_figure(series: Series, run: str) -> Any:
    lengths = _bases(series, f"completion{_SEP}lengths?($|{_SEP})")
    truncated = [k for k in series if "truncat" in k]
    if not lengths:
        return None
    fig, axes = _figure(1 + bool(truncated), f"Completion lengths ({run})")
    for base in lengths:
        _with_bands(axes[0], series, base, label=base)
    _style(axes[0], "Completion length", "tokens", legend=True)
    if truncated:
        for key in truncated:
            _line(axes[1], *_xy(series, key), label=key)
        _style(axes[1], "Truncated completions (hit the length limit)", "share", legend=True)
    return fig


def _training_figure(series: Series, run: str) -> Any:
    import numpy as np

    def present(*keys: str) -> list[str]:
        return [k for k in keys if k in series]

    panels: list[Callable[[Any], None]] = []
    if _find(series, "advantage", "mean") or _find(series, "advantage", "std"):

        def advantages(ax: Any) -> None:
            if _find(series, "advantage", "mean"):
                _with_bands(ax, series, "advantage")  # mean, ± std, min-max
            else:
                for stat in ("std", "min", "max"):
                    key = _find(series, "advantage", stat)
                    if key:
                        _line(ax, *_xy(series, key), label=stat)
            _style(ax, "Advantages", "advantage", legend=True)

        panels.append(advantages)
    clip = present("clip_fraction", "clip_fraction_low", "clip_fraction_high", "zero_std_fraction")
    if clip:

        def clipping(ax: Any) -> None:
            for key in clip:
                _line(ax, *_xy(series, key), label=key.replace("_", " "))
            _style(ax, "Clipped tokens, zero-variance groups", "fraction", legend=True)

        panels.append(clipping)
    ratio = present("ratio_mean", "off_policy_ratio_mean")
    if ratio:

        def ratios(ax: Any) -> None:
            for key in ratio:
                _line(ax, *_xy(series, key), label=key.replace("_", " "))
            _style(ax, "Importance ratio π/π_old", "ratio", legend=True)

        panels.append(ratios)
    lr = present("lr", "learning_rate")
    if lr:

        def learning_rate(ax: Any) -> None:
            x, y = _xy(series, lr[0])
            ax.plot(x, y, lw=1.6)
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
            _style(ax, "Learning rate", "learning rate")

        panels.append(learning_rate)
    if "grad_norm" in series:

        def grad_norm(ax: Any) -> None:
            x, y = _xy(series, "grad_norm")
            _line(ax, x, y)
            finite = y[np.isfinite(y)]
            if finite.size and finite.min() > 0 and finite.max() / finite.min() > 100:
                ax.set_yscale("log")  # spikes would flatten everything else
            _style(ax, "Gradient norm (before clipping)", "L2 norm")

        panels.append(grad_norm)
    if "loss" in series:

        def loss(ax: Any) -> None:
            _line(ax, *_xy(series, "loss"))
            _style(ax, "Policy loss", "loss")

        panels.append(loss)
    if not panels:
        return None
    fig, axes = _figure(len(panels), f"Optimisation ({run})")
    for ax, draw in zip(axes, panels):
        draw(ax)
    return fig


def _curves_figure(data: tuple[Series, Series, dict[str, Any]], run: str) -> Any:
    """Validation metric (left) and training signal (right), the SFT warm-up shaded."""
    train, validation, config = data
    metric = str(config.get("eval_metric") or "reward")
    key = "reward_mean" if metric == "reward" else metric
    if key not in validation:
        return None
    warmup = int(config.get("sft_warmup_steps") or 0) if config.get("algo", "grpo") == "grpo" else 0
    fig, (left, right) = _figure(2, f"{run}: validation {metric} and training signal", width=5.6)
    x, y = _xy(validation, key)
    left.plot(x, y, lw=1.8, marker="o", ms=4, color="C0")
    for xi, yi in zip(x, y):
        left.annotate(f"{yi:.3g}", (xi, yi), textcoords="offset points", xytext=(0, 6),
                      ha="center", fontsize=7)  # fmt: skip
    sampling = "greedy" if config.get("eval_greedy") else "sampled"
    _style(left, f"validation {metric} ({sampling})", metric)
    signals = [(k, label) for k, label in (("nll", "SFT: NLL per token"),
               ("reward_mean", "GRPO: mean reward")) if k in train]  # fmt: skip
    twin = None
    for i, (k, label) in enumerate(signals):
        ax = right if i == 0 else (twin := right.twinx())
        ax.set_ylabel(label, color=f"C{i + 1}")
        _line(ax, *_xy(train, k), color=f"C{i + 1}")
    _style(right, "training signal", signals[0][1] if signals else "")
    right.set_ylabel(signals[0][1] if signals else "", color="C1")
    if twin is not None:
        twin.set_ylabel(signals[1][1], color="C2")
    if warmup:
        for ax in (left, right):
            ax.axvspan(0, warmup, color="0.5", alpha=0.12, lw=0)
            ax.axvline(warmup, color="0.3", ls="--", lw=1)
        left.text(warmup / 2, 0.98, "SFT warm-up", transform=left.get_xaxis_transform(),
                  ha="center", va="top", fontsize=8)  # fmt: skip
        left.text(warmup, 0.98, "  GRPO", transform=left.get_xaxis_transform(), ha="left",
                  va="top", fontsize=8)  # fmt: skip
    return fig


def _validation_figure(series: Series, run: str) -> Any:
    if not series:
        return None
    keys = sorted(series)
    fig, axes = _figure(len(keys), f"Validation ({run})")
    for ax, key in zip(axes, keys):
        x, y = _xy(series, key)
        ax.plot(x, y, lw=1.6, marker="o", ms=4)
        _style(ax, key.replace("_", " "), key)
    return fig


_TIME = re.compile(f"^(?:time|timing){_SEP}(?P<stage>.+?)(?:{_SEP}(?:s|sec|seconds))?$")
_TOTALS = ("total", "step")


def _timing_figure(series: Series, run: str) -> Any:
    import numpy as np

    stages: dict[str, str] = {}
    total = None
    for key in series:
        match = _TIME.match(key)
        if match and match.group("stage") in _TOTALS:
            total = key
        elif match:
            stages[match.group("stage")] = key
        elif re.match(f"^step{_SEP}time({_SEP}(s|sec|seconds))?$", key):
            total = key
    if not stages and total is None:
        return None
    fig, axes = _figure(1, f"Time per step by stage ({run})", width=7.0)
    ax = axes[0]
    if stages:
        steps = sorted({s for key in stages.values() for s in series[key]})
        x = np.array(steps, dtype=float)
        ys = [np.array([series[key].get(s, 0.0) for s in steps]) for key in stages.values()]
        ys = [np.nan_to_num(y, nan=0.0) for y in ys]
        ax.stackplot(x, *ys, labels=[s.replace("_", " ") for s in stages], alpha=0.85)
    if total is not None:
        ax.plot(*_xy(series, total), color="black", lw=1.2, label="total")
    ax.set_ylim(bottom=0)
    _style(ax, "", "seconds (stacked)")
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return fig


def _save(fig: Any, target: Path) -> Path:
    """Render to a temporary file beside ``target``, then rename it into place."""
    tmp = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex[:12]}"
    try:
        fig.savefig(tmp, format="png", dpi=DPI)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target
