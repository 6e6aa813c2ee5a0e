"""`rewardkit bench` end to end: sections wired to the statistics, a bad metric found out,
human agreement, outputs on disk, one-line errors."""

from __future__ import annotations

import hashlib
import json
import math

import pytest
from click.testing import CliRunner

import rewardkit
from rewardkit.bench.report import summary_rows, write_report
from rewardkit.bench.run import BenchConfig, run_bench
from rewardkit.cli import build_cli


class Verbosity(rewardkit.GroupwiseReward):
    """A deliberately bad reward: longer is better, plus deterministic noise from the text."""

    name = "verbosity"

    def prepare(self, references, source):
        return max(len(references[0].split()), 1)

    def score_one(self, prepared, completion):
        noise = int(hashlib.sha256(completion.encode()).hexdigest()[:8], 16) / 16**8
        return len(completion.split()) / prepared + 0.05 * noise


class Oracle(rewardkit.GroupwiseReward):
    """Reads the human score hidden in the hypothesis ("0.7|text"): agrees perfectly."""

    name = "oracle"

    def prepare(self, references, source):
        return None

    def score_one(self, prepared, completion):
        head, bar, _ = completion.partition("|")
        return float(head) if bar else 0.0  # ladders and probes carry no hidden score


class Toys:
    @rewardkit.hookimpl
    def register_rewards(self, register):
        register(Verbosity)
        register(Oracle)


@pytest.fixture
def toy_registry():
    return rewardkit.load_registry(entry_points=False, plugins={"toys": Toys()})


SMALL = dict(items=24, steps=4, group_size=4, cost_group_sizes=(4,), bootstrap=50)


def test_bad_metric_comes_out_worst_on_ladders_and_probes(toy_registry):
    config = BenchConfig(rewards=("bleu", "chrf", "verbosity"), **SMALL)
    results = run_bench(toy_registry, config)
    rows = {r["reward"]: r for r in summary_rows(results)}
    assert min(rows, key=lambda s: rows[s]["monotonicity"]) == "verbosity"
    assert max(rows, key=lambda s: rows[s]["hacked"]) == "verbosity"
    assert rows["bleu"]["monotonicity"] > 0.8
    # padding the reference always wins for a longer-is-better metric
    assert results.probes["verbosity"]["pad"]["outscores_good"] == 1.0
    assert results.probes["bleu"]["empty"]["outscores_good"] == 0.0
    assert results.agreement["bleu"]["bleu"] == pytest.approx(1.0)
    assert -1.0 <= results.agreement["bleu"]["verbosity"] <= 1.0
    for curve in results.ladder_curves["bleu"].values():
        assert curve[0] == pytest.approx(1.0)  # k = 0 is the reference itself
    assert set(results.cost["chrf"]) == {
        "load_s",
        "completions_per_s",
        "memory_growth_mib",
        "device",
        "threads",
    }


def test_bench_is_deterministic(toy_registry):
    config = BenchConfig(rewards=("chrf",), **SMALL)
    first, second = run_bench(toy_registry, config), run_bench(toy_registry, config)
    assert first.monotonicity == second.monotonicity
    assert first.probes == second.probes
    assert first.discrimination == second.discrimination


@pytest.fixture
def human_files(tmp_path):
    data = tmp_path / "data.jsonl"
    human = tmp_path / "human.jsonl"
    items = [
        {"id": f"s{i}", "reference": f"Der Hund {i} läuft.", "source": f"The dog {i} runs."}
        for i in range(6)
    ]
    data.write_text("\n".join(json.dumps(i) for i in items) + "\n")
    rows = []
    for i in range(6):
        for system, score in (("a", 0.2 + 0.1 * i), ("b", 0.9 - 0.1 * i), ("c", 0.5)):
            rows.append(
                {"id": f"s{i}", "system": system, "hypothesis": f"{score}|x", "score": score}
            )
    human.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return data, human


def test_human_agreement_of_a_perfect_metric(toy_registry, human_files):
    data, human = human_files
    config = BenchConfig(rewards=("oracle",), data=data, human=human, **SMALL)
    h = run_bench(toy_registry, config).human["oracle"]
    assert h["pairwise_accuracy"] == 1.0
    assert h["kendall_tau_b"] == pytest.approx(1.0)
    assert h["system_pearson"] == pytest.approx(1.0)
    assert (h["items"], h["systems"]) == (6, 3)
    low, high = h["pairwise_accuracy_ci"]
    assert low == high == 1.0


def test_report_files(toy_registry, tmp_path):
    results = run_bench(toy_registry, BenchConfig(rewards=("bleu", "verbosity"), **SMALL))
    write_report(results, tmp_path)
    for name in ("results.json", "report.md", "speed.png", "ladders.png", "agreement.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["rewards"] == ["bleu", "verbosity"]
    signature = data["reproducibility"]["signatures"]["bleu"]
    assert signature.startswith("bleu|nrefs:var|case:mixed|eff:yes|tok:13a|smooth:exp|version:")
    report = (tmp_path / "report.md").read_text()
    assert "| bleu |" in report and "![Corruption ladders](ladders.png)" in report
    assert all(math.isfinite(v) or v is None for v in data["monotonicity"]["bleu"].values())


def test_cli_bench_writes_the_report(toy_registry, tmp_path):
    out = tmp_path / "report"
    result = CliRunner().invoke(
        build_cli(toy_registry),
        [
            "bench",
            "-r",
            "bleu",
            "-r",
            "0.5*bleu,0.5*chrf",
            "--items",
            "6",
            "--steps",
            "2",
            "-g",
            "4",
            "-o",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert (out / "report.md").exists()
    assert "rewardkit bench" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-r", "bleu", "-r", "blue"], "unknown reward 'blue'"),
        (["-r", "bleu:smooth=foo"], "choose one of exp, floor, add-k, none"),
        (["--data", "{d}/bad.jsonl"], "bad.jsonl:1 lacks reference"),
        (
            ["--data", "{d}/data.jsonl", "--human", "{d}/human_bad.jsonl"],
            "scores item 'nope', which is not in the data",
        ),
        (["--data", "{d}/missing.jsonl"], "no such file"),
    ],
)
def test_cli_bench_bad_input(toy_registry, human_files, tmp_path, args, message):
    del human_files  # writes data.jsonl into tmp_path
    (tmp_path / "bad.jsonl").write_text('{"id": "x", "source": "no reference"}\n')
    (tmp_path / "human_bad.jsonl").write_text(
        '{"id": "nope", "system": "a", "hypothesis": "h", "score": 1}\n'
    )
    args = [a.format(d=tmp_path) for a in args]
    result = CliRunner().invoke(build_cli(toy_registry), ["bench", *args, "-o", str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert message in result.stderr
