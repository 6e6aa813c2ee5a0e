"""The bench's outputs: a terminal table, results.json, report.md and PNG plots."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rewardkit.bench.corrupt import LADDERS, PROBES
from rewardkit.bench.run import Results, save_json
from rewardkit.textio import os_error, write_atomic, write_bytes_atomic


def _f(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:.{digits}f}"


def summary_rows(results: Results) -> list[dict[str, Any]]:
    """One row per reward with the headline number of each section that ran."""
    rows = []
    g = str(results.config["group_size"])
    for spec in results.rewards:
        row: dict[str, Any] = {"reward": spec}
        if spec in results.cost:
            row["load_s"] = results.cost[spec]["load_s"]
            row["per_s"] = results.cost[spec]["completions_per_s"].get(g, math.nan)
        if spec in results.discrimination:
            row["all_tie"] = results.discrimination[spec]["all_tie_share"]
            row["spread"] = results.discrimination[spec]["mean_spread"]
        if spec in results.monotonicity:
            mono = [v for v in results.monotonicity[spec].values() if math.isfinite(v)]
            # Spearman(k, score) is -1 for a perfectly monotone reward: report -rho, 1 is ideal.
            row["monotonicity"] = -sum(mono) / len(mono) if mono else math.nan
        if spec in results.probes:
            probes = results.probes[spec]
            row["hacked"] = sum(p["outscores_good"] for p in probes.values()) / len(probes)
        if spec in results.human:
            row["acc_eq"] = results.human[spec]["acc_eq"]["item"]["accuracy"]
        rows.append(row)
    return rows


COLUMNS = {
    "reward": "reward",
    "load_s": "load s",
    "per_s": "completions/s",
    "all_tie": "all-tie groups",
    "spread": "mean spread",
    "monotonicity": "monotonicity",
    "hacked": "probe wins",
    "acc_eq": "acc_eq (human)",
}

#: The terminal's human-agreement table: short headers so that it fits 80 columns.
HUMAN_COLUMNS = {
    "reward": "reward",
    "acc_eq": "acc_eq",
    "untied": "untied",
    "all_ties": "all-tie",
    "tied": "tied",
    "tau": "tau_b",
    "sys_r": "sys r",
    "sys_tau": "sys tau",
}

HUMAN_LEGEND = (
    "acc_eq: pairwise accuracy with ties, tie-calibrated, averaged over items "
    "(average_by=item, as WMT23); untied: the same with no calibration (only equal scores "
    "tie); all-tie: what a metric that ties every pair gets; tied: share of pairs the chosen "
    "epsilon ties; ! = calibration tied nearly all pairs, so acc_eq says little. tau_b: "
    "Kendall over all segments. sys r / sys tau: Pearson / Kendall over systems."
)


def human_rows(results: Results) -> list[dict[str, Any]]:
    """One row per reward with the human-agreement numbers the terminal shows."""
    rows = []
    for spec, h in results.human.items():
        item = h["acc_eq"]["item"]
        rows.append(
            {
                "reward": spec,
                "acc_eq": item["accuracy"],
                "mostly_ties": item["mostly_ties"],
                "untied": item["untied"],
                "all_ties": item["all_ties"],
                "tied": item["tied_share"],
                "tau": h["kendall_tau_b"]["value"],
                "sys_r": h["system"]["pearson"]["value"],
                "sys_tau": h["system"]["kendall_tau_b"]["value"],
            }
        )
    return rows


def print_table(results: Results, console: Any = None) -> None:
    """The summary table, the human-agreement table and the warnings, on stderr."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    console = console or Console(stderr=True)
    rows = summary_rows(results)
    keys = [k for k in COLUMNS if any(k in r for r in rows)]
    if len(keys) > 1:
        table = Table(title=f"rewardkit bench (G={results.config['group_size']})", box=box.SIMPLE)
        for key in keys:
            table.add_column(COLUMNS[key], justify="left" if key == "reward" else "right")
        for row in rows:
            table.add_row(*[row[k] if k == "reward" else _fmt(k, row.get(k)) for k in keys])
        console.print(table)
    if results.human:
        counts = results.human_counts
        table = Table(
            title=f"human agreement ({counts['segments']} segments, {counts['items']} items, "
            f"{counts['systems']} systems)",
            box=box.SIMPLE,
        )
        for key, header in HUMAN_COLUMNS.items():
            table.add_column(header, justify="left" if key == "reward" else "right")
        for row in human_rows(results):
            cells = [row["reward"]] + [_f(row[k]) for k in list(HUMAN_COLUMNS)[1:]]
            cells[1] += "!" if row["mostly_ties"] else ""
            table.add_row(*cells)
        console.print(table)
        console.print(HUMAN_LEGEND, highlight=False)
        console.print(_counts_line(counts), highlight=False)
    for warning in results.warnings:
        console.print(f"warning: {warning}", highlight=False, markup=False)


def _counts_line(counts: dict[str, int]) -> str:
    return (
        f"{counts['judgments']} judgments read; {counts['unrated']} unrated (NaN, left out); "
        f"{counts['aggregated']} (id, system) pairs with several judgments combined "
        f"(--aggregate); {counts['segments']} segments compared."
    )


def _fmt(key: str, value: Any) -> str:
    if key == "per_s":
        return "n/a" if value is None or not math.isfinite(value) else f"{value:,.0f}"
    return _f(value, 2 if key == "load_s" else 3)


def _ci(stat: dict[str, Any]) -> str:
    """value (low-high), "n/a" for a null statistic; notes resamples that were undefined."""
    if stat.get("ci") is None:
        return _f(stat.get("value"))
    low, high = stat["ci"]
    text = f"{_f(stat['value'])} ({_f(low)}-{_f(high)})"
    return text + (f" [{stat['ci_undefined']} resamples undefined]" if stat["ci_undefined"] else "")


READING_ACC_EQ = (
    "How to read acc_eq: over every pair of translations of an item, the metric and the humans "
    "agree when both tie the pair or both order it the same way; a metric difference up to "
    "epsilon counts as a tie, and epsilon is chosen to maximise acc_eq (tie calibration, "
    "Deutsch et al. 2023). When humans tie many pairs (e.g. MQM with many error-free "
    "translations) the best epsilon can tie almost every pair, and acc_eq then equals the "
    "all-ties baseline for every metric. Compare acc_eq with that baseline, and read the untied "
    "accuracy (epsilon 0) and Kendall tau_b beside it. acc_eq is averaged over items "
    "(mt-metrics-eval's average_by=item, WMT23's choice); the pooled variant (average_by=none) "
    "pairs all segments, across items too, and has no interval (its pairs grow with the square "
    "of the segments)."
)


def _human_markdown(results: Results) -> list[str]:
    counts = results.human_counts
    lines = [
        "",
        "## Human agreement",
        "",
        _counts_line(counts) + f" {counts['items']} items, {counts['systems']} systems; "
        "intervals: 95% percentile bootstrap over items.",
        "",
        READING_ACC_EQ,
        "",
        "### Segment level",
        "",
        "| reward | acc_eq (95% CI) | untied | all-ties baseline | epsilon | tied pairs "
        "| acc_eq pooled (epsilon, tied) | Kendall tau_b (95% CI) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for spec, h in results.human.items():
        item, pooled = h["acc_eq"]["item"], h["acc_eq"]["none"]
        flag = " (mostly ties!)" if item["mostly_ties"] else ""
        acc = _ci({"value": item["accuracy"], **item}) + flag
        lines.append(
            f"| {spec} | {acc} | {_f(item['untied'])} | {_f(item['all_ties'])} "
            f"| {_f(item['epsilon'], 4)} | {_f(item['tied_share'])} | {_f(pooled['accuracy'])} "
            f"({_f(pooled['epsilon'], 4)}, {_f(pooled['tied_share'])}) "
            f"| {_ci(h['kendall_tau_b'])} |"
        )
    lines += [
        "",
        "### System level",
        "",
        "| reward | system score | systems | Pearson (95% CI) | Kendall tau_b (95% CI) |",
        "|---|---|---|---|---|",
    ]
    for spec, h in results.human.items():
        system = h["system"]
        lines.append(
            f"| {spec} | {system['score']} | {system['systems']} | {_ci(system['pearson'])} "
            f"| {_ci(system['kendall_tau_b'])} |"
        )
    if any(not h["system"]["same_items"] for h in results.human.values()):
        lines += ["", "Systems cover different items: their scores compare different sets."]
    return lines


def write_markdown(results: Results, path: Path, plots: dict[str, str]) -> None:
    rows = summary_rows(results)
    keys = [k for k in COLUMNS if any(k in r for r in rows)]
    lines = [
        "# rewardkit bench report",
        "",
        f"{len(results.rewards)} rewards; sections: {', '.join(results.sections)}; group size "
        f"{results.config['group_size']}, {results.config['steps']} corruption steps, seed "
        f"{results.config['seed']}.",
    ]
    if results.warnings:
        lines += ["", "## Warnings", ""] + [f"- {w}" for w in results.warnings]
    lines += [
        "",
        "Headline numbers: *monotonicity* is minus the mean Spearman correlation between the "
        "number of corruption edits and the score (1 = the score always falls as edits grow); "
        "*probe wins* is the share of (probe, item) pairs where a degenerate output outscores a "
        "near-perfect one (lower is better); *all-tie groups* is the share of groups of G "
        "realistic completions whose rewards all tie (GRPO learns nothing from them).",
        "",
        "| " + " | ".join(COLUMNS[k] for k in keys) + " |",
        "|" + "---|" * len(keys),
    ]
    for row in rows:
        cells = [row[k] if k == "reward" else _fmt(k, row.get(k)) for k in keys]
        lines.append("| " + " | ".join(cells) + " |")

    if results.cost:
        lines += [
            "",
            "## Cost",
            "",
            "| reward | load s | memory growth MiB | device | threads | "
            + " | ".join(f"G={g} /s" for g in results.config["cost_group_sizes"])
            + " |",
            "|" + "---|" * (5 + len(results.config["cost_group_sizes"])),
        ]
        for spec, cost in results.cost.items():
            speeds = [
                f"{cost['completions_per_s'][str(g)]:,.0f}"
                for g in results.config["cost_group_sizes"]
            ]
            lines.append(
                f"| {spec} | {cost['load_s']:.2f} | {cost['memory_growth_mib']:.0f} | "
                f"{cost['device']} | {cost['threads']} | " + " | ".join(speeds) + " |"
            )
        lines += [
            "",
            "Memory growth is the resident-set growth while the reward loaded and scored; "
            "libraries an earlier reward loaded are not counted again.",
        ]
    if results.monotonicity:
        lines += _matrix(
            "Monotonicity: Spearman(k, score) per corruption, averaged over items (-1 is ideal)",
            results.monotonicity,
            LADDERS,
        )
    if results.probes:
        lines += _matrix(
            "Reward-hacking probes: share of items where the probe outscores a "
            "near-perfect output (0 is ideal)",
            {s: {k: v["outscores_good"] for k, v in p.items()} for s, p in results.probes.items()},
            PROBES,
        )
    if results.agreement:
        lines += _matrix(
            "Agreement: mean within-group Kendall tau_b", results.agreement, results.rewards
        )
    if results.human:
        lines += _human_markdown(results)
    if plots:
        lines += ["", "## Plots", ""] + [f"![{name}]({file})" for name, file in plots.items()]
    repro = results.reproducibility
    lines += [
        "",
        "## Reproducibility",
        "",
        f"- seed: {repro.get('seed')}",
        "- packages: " + ", ".join(f"{k} {v}" for k, v in repro.get("packages", {}).items()),
    ]
    lines += [f"- `{spec}`: `{sig}`" for spec, sig in repro.get("signatures", {}).items()]
    lines += [f"- settings: `{json.dumps(results.config)}`", ""]
    write_atomic(path, "\n".join(lines))


def _matrix(title: str, values: dict[str, dict[str, float]], columns: Any) -> list[str]:
    columns = list(columns)
    lines = [
        "",
        f"## {title}",
        "",
        "| reward | " + " | ".join(columns) + " |",
        "|" + "---|" * (len(columns) + 1),
    ]
    for spec, row in values.items():
        lines.append(f"| {spec} | " + " | ".join(_f(row.get(c)) for c in columns) + " |")
    return lines


def write_plots(results: Results, out: Path) -> dict[str, str]:
    """speed.png, ladders.png, agreement.png and human.png for the sections that ran; returns
    {title: file name}."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    plots = {}

    if results.cost:
        plots["Scoring speed"] = _speed_plot(results, out, plt, np)
    if results.ladder_curves:
        plots["Corruption ladders"] = _ladder_plot(results, out, plt)
    if results.agreement:
        plots["Agreement between rewards"] = _agreement_plot(results, out, plt, np)
    if results.human:
        plots["Human agreement"] = _human_plot(results, out, plt, np)
    return plots


def _speed_plot(results: Results, out: Path, plt: Any, np: Any) -> str:
    rewards = results.rewards
    fig, ax = plt.subplots(figsize=(8, 4))
    sizes = results.config["cost_group_sizes"]
    width = 0.8 / len(sizes)
    for n, g in enumerate(sizes):
        speeds = [results.cost[s]["completions_per_s"][str(g)] for s in rewards]
        ax.bar(np.arange(len(rewards)) + n * width, speeds, width, label=f"G={g}")
    ax.set_xticks(np.arange(len(rewards)) + width * (len(sizes) - 1) / 2, rewards, rotation=30)
    ax.set_yscale("log")
    ax.set_ylabel("completions / s (log)")
    ax.set_title("Scoring speed")
    ax.legend()
    fig.tight_layout()
    _save_png(fig, out / "speed.png")
    plt.close(fig)
    return "speed.png"


def _ladder_plot(results: Results, out: Path, plt: Any) -> str:
    cols = 4
    rows = math.ceil(len(LADDERS) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.2 * rows), squeeze=False)
    for ax, kind in zip(axes.flat, LADDERS):
        for spec in results.rewards:
            curve = results.ladder_curves[spec][kind]
            ax.plot(range(len(curve)), curve, marker="o", ms=3, label=spec)
        ax.set_title(kind)
        ax.set_xlabel("edits k")
        ax.set_ylabel("mean score")
    for ax in list(axes.flat)[len(LADDERS) :]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower right", fontsize=8)
    fig.suptitle("Corruption ladders: mean score after k edits")
    fig.tight_layout()
    _save_png(fig, out / "ladders.png")
    plt.close(fig)
    return "ladders.png"


def label_colour(rgba: Sequence[float]) -> str:
    """Black or white, whichever reads better on a cell of this colour (relative luminance,
    WCAG's formula: dark cells get white text)."""

    def linear(c: float) -> float:
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (linear(float(c)) for c in rgba[:3])
    luminance = 0.2126 * r + 0.7152 * g + 0.0722 * b
    return "black" if luminance > 0.179 else "white"


def _agreement_plot(results: Results, out: Path, plt: Any, np: Any) -> str:
    rewards = results.rewards
    matrix = np.array([[results.agreement[a][b] for b in rewards] for a in rewards], dtype=float)
    fig, ax = plt.subplots(figsize=(1.0 + 0.7 * len(rewards), 0.8 + 0.6 * len(rewards)))
    image = ax.imshow(matrix, vmin=-1, vmax=1, cmap="RdBu")
    ax.set_xticks(range(len(rewards)), rewards, rotation=45, ha="right")
    ax.set_yticks(range(len(rewards)), rewards)
    for i in range(len(rewards)):
        for j in range(len(rewards)):
            cell = image.cmap(image.norm(matrix[i, j]))  # RGBA of the cell (NaN: the "bad" one)
            ax.text(j, i, _f(matrix[i, j], 2), ha="center", va="center", fontsize=7,
                    color=label_colour(cell))  # fmt: skip
    fig.colorbar(image, ax=ax, label="within-group Kendall tau_b")
    ax.set_title("Agreement between rewards")
    fig.tight_layout()
    _save_png(fig, out / "agreement.png")
    plt.close(fig)
    return "agreement.png"


def _human_plot(results: Results, out: Path, plt: Any, np: Any) -> str:
    """Grouped bars, one group per reward, one bar per statistic with its 95% interval; a null
    statistic has no bar; a dash marks acc_eq's all-ties baseline."""
    names = ["acc_eq", "acc_eq untied", "Kendall tau_b", "system Pearson", "system Kendall"]
    rewards = list(results.human)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(rewards) + 2), 4))
    width = 0.8 / len(names)
    x = np.arange(len(rewards))
    for n, name in enumerate(names):
        stats = [_human_stat(results.human[spec], name) for spec in rewards]
        keep = [k for k, st in enumerate(stats) if math.isfinite(st["value"])]
        if not keep:
            continue
        values = np.array([stats[k]["value"] for k in keep])
        errors = np.zeros((2, len(keep)))
        for col, k in enumerate(keep):
            if stats[k].get("ci") is not None:
                low, high = stats[k]["ci"]
                errors[:, col] = [max(values[col] - low, 0), max(high - values[col], 0)]
        ax.bar(x[keep] + n * width, values, width, yerr=errors, capsize=2, label=name)
    for k, spec in enumerate(rewards):
        baseline = results.human[spec]["acc_eq"]["item"]["all_ties"]
        if math.isfinite(baseline):
            ax.hlines(baseline, k - width / 2, k + width / 2, colors="black", linestyles="--")
    ax.axhline(0, color="grey", linewidth=0.5)
    ax.set_xticks(x + width * (len(names) - 1) / 2, rewards, rotation=30)
    ax.set_ylabel("agreement with humans")
    ax.set_title("Human agreement (95% bootstrap intervals; dashes: all-ties baseline)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    _save_png(fig, out / "human.png")
    plt.close(fig)
    return "human.png"


def _human_stat(human: dict[str, Any], name: str) -> dict[str, Any]:
    """One statistic of a reward's human agreement as {"value", "ci"} (value nan when null)."""
    item = human["acc_eq"]["item"]
    stat = {
        "acc_eq": {"value": item["accuracy"], "ci": item["ci"]},
        "acc_eq untied": {"value": item["untied"], "ci": None},
        "Kendall tau_b": human["kendall_tau_b"],
        "system Pearson": human["system"]["pearson"],
        "system Kendall": human["system"]["kendall_tau_b"],
    }[name]
    value = stat["value"]
    return {"value": math.nan if value is None else float(value), "ci": stat["ci"]}


def _save_png(fig: Any, path: Path) -> None:
    """A figure as PNG, atomically (a full disk leaves the old file, not a part)."""
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    write_bytes_atomic(path, buffer.getvalue())


def write_report(results: Results, out: Path) -> None:
    """results.json, the plots and report.md, each written atomically into ``out`` (which
    ``rewardkit bench`` has claimed before the work: see :func:`claim_output_dir`)."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        save_json(results, out / "results.json")
        plots = write_plots(results, out)
        write_markdown(results, out / "report.md", plots)
    except OSError as exc:
        raise os_error(exc, out, "write the report to") from None
