"""Plots of a run directory and `rewardkit plot`."""

from __future__ import annotations

import math
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from rewardkit.cli import RewardkitGroup
from rewardkit.errors import RewardkitError
from rewardkit.plots import plot_command, plot_run
from rewardkit.rundir import RunDir

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ALL_PLOTS = ["rewards.png", "kl.png", "lengths.png", "training.png", "validation.png", "timing.png"]


def train_metrics(step: int) -> dict[str, float]:
    wiggle = 0.05 * math.sin(step)
    return {
        "reward_mean": 0.2 + step / 100 + wiggle,
        "reward_std": 0.1,
        "reward_bleu_mean": 0.1 + step / 120,
        "reward_bleu_std": 0.08,
        "reward/chrf/mean": 0.3 + step / 150,  # another separator style
        "kl": step * 1e-3,
        "entropy": 2.0 - step / 100,
        "completion_length_mean": 30 + step / 2,
        "completion_length_min": 4,
        "completion_length_max": 80,
        "truncated_fraction": 0.1,
        "advantage_mean": 0.0,
        "advantage_std": 0.95,
        "advantage_min": -1.8,
        "advantage_max": 2.1,
        "clip_fraction": 0.02,
        "clip_fraction_low": 0.01,
        "clip_fraction_high": 0.01,
        "zero_std_fraction": 0.25,
        "ratio_mean": 1.0,
        "lr": 1e-5 * min(1.0, step / 5),
        "grad_norm": 1.0 + wiggle,
        "loss": -0.01 + wiggle,
        "time_generate": 1.2,
        "time_reward": 0.1,
        "time_logprob": 0.4,
        "time_train": 0.9,
        "time_total": 2.7,
    }


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    path = tmp_path / "run"
    with RunDir(path).create({"lr": 1e-5}, resume=False) as run:
        for step in range(1, 41):  # 40 points: the smoothed drawing path
            run.log(step, train_metrics(step))
            if step % 10 == 0:
                run.log(step, {"bleu": step / 100, "chrf": step / 90}, split="validation")
        run.log(41, {"loss": float("nan"), "kl": float("inf")})  # non-finite values plot fine
    return path


def assert_pngs(paths: list[Path], names: list[str]) -> None:
    assert [p.name for p in paths] == names
    for path in paths:
        data = path.read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 5_000, path
    leftovers = [p.name for p in paths[0].parent.iterdir() if p.name.startswith(".")]
    assert leftovers == []  # written through temporaries, none left


def test_plot_run_writes_every_plot(run_dir: Path) -> None:
    paths = plot_run(run_dir)
    assert_pngs(paths, ALL_PLOTS)
    assert paths[0].parent == run_dir / "plots"
    again = plot_run(run_dir)  # overwrites in place
    assert again == paths


def test_plot_run_writes_only_what_exists(tmp_path: Path) -> None:
    with RunDir(tmp_path / "run").create({}, resume=False) as run:
        for step in range(5):
            run.log(step, {"kl": 0.01 * step, "lr": 1e-5})
    paths = plot_run(tmp_path / "run", tmp_path / "out")
    assert_pngs(paths, ["kl.png", "training.png"])
    assert paths[0].parent == tmp_path / "out"


def test_plot_command(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "pngs"
    result = CliRunner().invoke(plot_command, [str(run_dir), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [str(out / name) for name in ALL_PLOTS]
    assert_pngs([out / name for name in ALL_PLOTS], ALL_PLOTS)


def test_bad_input_errors(tmp_path: Path) -> None:
    with pytest.raises(RewardkitError, match="does not exist"):
        plot_run(tmp_path / "absent")
    (tmp_path / "plain").mkdir()
    with pytest.raises(RewardkitError, match="not a run directory"):
        plot_run(tmp_path / "plain")
    RunDir(tmp_path / "fresh").create({}, resume=False).close()
    with pytest.raises(RewardkitError, match="no metrics yet"):
        plot_run(tmp_path / "fresh")
    with RunDir(tmp_path / "odd").create({}, resume=False) as run:
        run.log(1, {"something_else": 1.0})
    with pytest.raises(RewardkitError, match="no metrics that rewardkit plots"):
        plot_run(tmp_path / "odd")


def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    """Wired into rewardkit's group, a RewardkitError becomes `Error: ...` and exit code 2."""

    @click.group(cls=RewardkitGroup)
    def cli() -> None:
        pass

    cli.add_command(plot_command)
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "notes.txt").write_text("x")
    result = CliRunner().invoke(cli, ["plot", str(tmp_path / "plain")])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        f"Error: {tmp_path / 'plain'} is not a run directory (no run.json)"
    ]


def test_curves_png_shows_the_validation_metric_and_the_warmup(tmp_path: Path) -> None:
    """curves.png needs the validation metric the config selects with; the training signal is
    the NLL of SFT warm-up steps and the mean reward of GRPO steps."""
    config = {"algo": "grpo", "eval_metric": "bleu", "sft_warmup_steps": 20, "eval_greedy": True}
    with RunDir(tmp_path / "run").create(config, resume=False) as run:
        for step in range(1, 41):
            run.log(step, {"nll": 5 - step / 10} if step <= 20 else train_metrics(step))
            if step % 10 == 0:
                run.log(step, {"bleu": step / 10, "reward_mean": 0.1}, split="validation")
    paths = plot_run(tmp_path / "run")
    assert paths[0].name == "curves.png"
    assert_pngs(paths[:1], ["curves.png"])
    # without the selected metric in the validation rows there is no curves.png
    with RunDir(tmp_path / "other").create({"eval_metric": "chrf"}, resume=False) as run:
        run.log(1, {"kl": 0.1})
        run.log(1, {"bleu": 1.0}, split="validation")
    assert "curves.png" not in [p.name for p in plot_run(tmp_path / "other")]
