"""The bench's outputs: a terminal table, results.json, report.md and PNG plots."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from rewardkit.bench.corrupt import LADDERS, PROBES
from rewardkit.bench.run import Results, save_json


def _f(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:.{digits}f}"


def summary_rows(results: Results) -> list[dict[str, Any]]:
    """One row per reward with the headline number of each section."""
    rows = []
    g = str(results.config["group_size"])
    for spec in results.rewards:
        cost = results.cost[spec]
        mono = [v for v in results.monotonicity[spec].values() if math.isfinite(v)]
        probes = results.probes[spec]
        row = {
            "reward": spec,
            "load_s": cost["load_s"],
            "per_s": cost["completions_per_s"].get(g, math.nan),
            "all_tie": results.discrimination[spec]["all_tie_share"],
            "spread": results.discrimination[spec]["mean_spread"],
            # Spearman(k, score) is -1 for a perfectly monotone reward: report -rho, 1 is ideal.
            "monotonicity": -sum(mono) / len(mono) if mono else math.nan,
            "hacked": sum(p["outscores_good"] for p in probes.values()) / len(probes),
        }
        if spec in results.human:
            row["acc_eq"] = results.human[spec]["pairwise_accuracy"]
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


def print_table(results: Results) -> None:
    from rich.console import Console
    from rich.table import Table

    rows = summary_rows(results)
    keys = [k for k in COLUMNS if any(k in r for r in rows)]
    table = Table(title=f"rewardkit bench (G={results.config['group_size']})")
    for key in keys:
        table.add_column(COLUMNS[key], justify="left" if key == "reward" else "right")
    for row in rows:
        table.add_row(*[row[k] if k == "reward" else _fmt(k, row.get(k)) for k in keys])
    Console(stderr=True).print(table)


def _fmt(key: str, value: Any) -> str:
    if key == "per_s":
        return "n/a" if value is None or not math.isfinite(value) else f"{value:,.0f}"
    return _f(value, 2 if key == "load_s" else 3)


def write_markdown(results: Results, path: Path, plots: dict[str, str]) -> None:
    rows = summary_rows(results)
    keys = [k for k in COLUMNS if any(k in r for r in rows)]
    lines = [
        "# rewardkit bench report",
        "",
        f"{len(results.rewards)} rewards; group size {results.config['group_size']}, "
        f"{results.config['steps']} corruption steps, seed {results.config['seed']}.",
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
            f"{cost['completions_per_s'][str(g)]:,.0f}" for g in results.config["cost_group_sizes"]
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

    lines += _matrix(
        "Monotonicity: Spearman(k, score) per corruption, averaged over items (-1 is ideal)",
        results.monotonicity,
        LADDERS,
    )
    lines += _matrix(
        "Reward-hacking probes: share of items where the probe outscores a "
        "near-perfect output (0 is ideal)",
        {s: {k: v["outscores_good"] for k, v in p.items()} for s, p in results.probes.items()},
        PROBES,
    )
    lines += _matrix(
        "Agreement: mean within-group Kendall tau_b", results.agreement, results.rewards
    )
    if results.human:
        lines += [
            "",
            "## Human agreement",
            "",
            "| reward | acc_eq (95% CI) | tie epsilon | Kendall tau_b (95% CI) | system Pearson |",
            "|---|---|---|---|---|",
        ]
        for spec, h in results.human.items():
            lo, hi = h["pairwise_accuracy_ci"]
            tlo, thi = h["kendall_tau_b_ci"]
            lines.append(
                f"| {spec} | {_f(h['pairwise_accuracy'])} ({_f(lo)}-{_f(hi)}) | "
                f"{_f(h['tie_epsilon'], 4)} | {_f(h['kendall_tau_b'])} "
                f"({_f(tlo)}-{_f(thi)}) | {_f(h['system_pearson'])} |"
            )
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
    path.write_text("\n".join(lines), encoding="utf-8")


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
    """speed.png, ladders.png, agreement.png; returns {title: file name}."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    rewards = results.rewards
    plots = {}

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
    fig.savefig(out / "speed.png", dpi=110)
    plt.close(fig)
    plots["Scoring speed"] = "speed.png"

    cols = 4
    rows = math.ceil(len(LADDERS) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.2 * rows), squeeze=False)
    for ax, kind in zip(axes.flat, LADDERS):
        for spec in rewards:
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
    fig.savefig(out / "ladders.png", dpi=110)
    plt.close(fig)
    plots["Corruption ladders"] = "ladders.png"

    matrix = np.array([[results.agreement[a][b] for b in rewards] for a in rewards], dtype=float)
    fig, ax = plt.subplots(figsize=(1.0 + 0.7 * len(rewards), 0.8 + 0.6 * len(rewards)))
    image = ax.imshow(matrix, vmin=-1, vmax=1, cmap="RdBu")
    ax.set_xticks(range(len(rewards)), rewards, rotation=45, ha="right")
    ax.set_yticks(range(len(rewards)), rewards)
    for i in range(len(rewards)):
        for j in range(len(rewards)):
            ax.text(j, i, _f(matrix[i, j], 2), ha="center", va="center", fontsize=7)
    fig.colorbar(image, ax=ax, label="within-group Kendall tau_b")
    ax.set_title("Agreement between rewards")
    fig.tight_layout()
    fig.savefig(out / "agreement.png", dpi=110)
    plt.close(fig)
    plots["Agreement between rewards"] = "agreement.png"
    return plots


def write_report(results: Results, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    save_json(results, out / "results.json")
    plots = write_plots(results, out)
    write_markdown(results, out / "report.md", plots)
