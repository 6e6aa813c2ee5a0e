"""`rewardkit bench` end to end: sections wired to the statistics, a bad metric found out,
human agreement, outputs on disk, one-line errors."""

from __future__ import annotations

import hashlib
import json
import math
import os

import numpy as np
import pytest
from click.testing import CliRunner

import rewardkit
from rewardkit.bench.report import print_table, summary_rows, write_report
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
    item = h["acc_eq"]["item"]
    assert item["accuracy"] == 1.0 and item["epsilon"] == 0.0
    assert item["ci"] == [1.0, 1.0] and item["ci_undefined"] == 0
    # Items: scores 0.2+0.1i, 0.9-0.1i, 0.5; item 3 is 0.5, 0.6, 0.5: one human tie of 3 pairs,
    # item 4 0.6, 0.5, 0.5: one too; the others none -> baseline (1/3 + 1/3) / 6 = 1/9.
    assert item["all_ties"] == pytest.approx(1 / 9)
    assert h["acc_eq"]["none"]["accuracy"] == 1.0 and h["acc_eq"]["none"]["ci"] is None
    assert h["kendall_tau_b"]["value"] == pytest.approx(1.0)
    assert h["system"]["pearson"]["value"] == pytest.approx(1.0)
    assert h["system"]["score"] == "mean sentence score"  # the oracle has no corpus score
    assert (h["system"]["systems"], h["system"]["same_items"]) == (3, True)
    assert h["average_by"] == "item"


def _write_jsonl(path, rows):
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def test_nan_human_scores_are_counted_and_left_out(toy_registry, human_files, tmp_path):
    data, human = human_files
    rows = [json.loads(line) for line in human.read_text().splitlines()]
    rows[0]["score"] = None  # s0, system a: unrated
    rows[1]["score"] = "NaN"
    rows.append({"id": "s5", "system": "d", "hypothesis": "0.1|y", "score": ""})
    config = BenchConfig(
        rewards=("oracle",), data=data, human=_write_jsonl(tmp_path / "nan.jsonl", rows), **SMALL
    )
    results = run_bench(toy_registry, config)
    assert results.human_counts == {
        "judgments": 19,
        "unrated": 3,
        "aggregated": 0,
        "segments": 16,
        "items": 6,
        "systems": 3,
    }
    h = results.human["oracle"]
    assert h["kendall_tau_b"]["value"] == pytest.approx(1.0)  # not nan: NaN rows left out
    assert h["acc_eq"]["item"]["pairs"] == 15  # item 0 keeps one translation: no pair
    assert h["acc_eq"]["item"]["groups"] == 5
    assert h["system"]["same_items"] is False  # a and b lack item 0


def test_a_statistic_that_cannot_be_computed_is_null_without_interval(
    toy_registry, human_files, tmp_path
):
    data, _ = human_files
    rows = [  # one system, one translation per item: no pair, one system
        {"id": f"s{i}", "system": "a", "hypothesis": f"{i / 10}|x", "score": i} for i in range(6)
    ]
    config = BenchConfig(
        rewards=("oracle",), data=data, human=_write_jsonl(tmp_path / "h.jsonl", rows), **SMALL
    )
    results = run_bench(toy_registry, config)
    h = results.human["oracle"]
    assert math.isnan(h["acc_eq"]["item"]["accuracy"]) and h["acc_eq"]["item"]["ci"] is None
    assert math.isnan(h["system"]["pearson"]["value"]) and h["system"]["pearson"]["ci"] is None
    assert h["kendall_tau_b"]["value"] == pytest.approx(1.0)  # across items it is defined
    write_report(results, tmp_path / "out")
    saved = json.loads((tmp_path / "out" / "results.json").read_text())["human"]["oracle"]
    assert saved["acc_eq"]["item"]["accuracy"] is None
    assert saved["system"]["pearson"] == {"value": None, "ci": None, "ci_undefined": 0}


def test_system_level_uses_the_corpus_score(toy_registry, tmp_path):
    import sacrebleu
    from scipy import stats as st

    refs = [f"Der kleine Hund {i} läuft schnell über die grüne Wiese." for i in range(8)]
    data = _write_jsonl(
        tmp_path / "data.jsonl", [{"id": f"s{i}", "reference": r} for i, r in enumerate(refs)]
    )
    variants = {  # system -> how it damages the reference
        "a": lambda r: r,
        "b": lambda r: r.replace("kleine ", ""),
        "c": lambda r: " ".join(r.split()[:5]),
        "d": lambda r: " ".join(reversed(r.split())),
    }
    human_scores = {"a": 0.0, "b": -1.0, "c": -3.0, "d": -2.0}
    rows = [
        {"id": f"s{i}", "system": s, "hypothesis": f(r), "score": human_scores[s] - 0.01 * i}
        for i, r in enumerate(refs)
        for s, f in variants.items()
    ]
    human = _write_jsonl(tmp_path / "human.jsonl", rows)
    config = BenchConfig(
        rewards=("bleu", "ter"), data=data, human=human, sections=("human",), **SMALL
    )
    results = run_bench(toy_registry, config)
    corpus = {}
    for name, f in variants.items():
        hyps = [f(r) for r in refs]
        corpus[name] = (
            sacrebleu.corpus_bleu(hyps, [refs]).score,
            sacrebleu.corpus_ter(hyps, [refs]).score,
        )
    means = [float(np.mean([h - 0.01 * i for i in range(8)])) for h in human_scores.values()]
    bleu = results.human["bleu"]["system"]
    assert bleu["score"] == "corpus BLEU"
    want = st.pearsonr([corpus[s][0] for s in variants], means).statistic
    assert bleu["pearson"]["value"] == pytest.approx(want)
    ter = results.human["ter"]["system"]
    assert ter["score"] == "corpus TER (negated)"
    want = st.pearsonr([-corpus[s][1] for s in variants], means).statistic
    assert ter["pearson"]["value"] == pytest.approx(want)
    low, high = ter["pearson"]["ci"]
    assert low <= high


def test_duplicate_judgments_are_an_error_or_aggregated(toy_registry, human_files, tmp_path):
    data, human = human_files
    rows = [json.loads(line) for line in human.read_text().splitlines()]
    rows += [  # a second and third rater for s0/a (score 0.2)
        {"id": "s0", "system": "a", "hypothesis": "0.2|x", "score": 0.8},
        {"id": "s0", "system": "a", "hypothesis": "0.2|x", "score": 0.5},
    ]
    dup = _write_jsonl(tmp_path / "dup.jsonl", rows)
    config = BenchConfig(rewards=("oracle",), data=data, human=dup, **SMALL)
    with pytest.raises(rewardkit.RewardkitError, match="--aggregate mean or --aggregate median"):
        run_bench(toy_registry, config)
    for aggregate in ("mean", "median"):  # 0.2, 0.8, 0.5: both give 0.5
        config = BenchConfig(
            rewards=("oracle",), data=data, human=dup, aggregate=aggregate, **SMALL
        )
        results = run_bench(toy_registry, config)
        assert results.human_counts["aggregated"] == 1
        assert results.human_counts["segments"] == 18
    rows[-1]["score"] = 0.9  # ratings 0.2, 0.8, 0.9: mean 0.633, median 0.8
    _write_jsonl(dup, rows)
    from rewardkit.bench.run import load_human, load_items

    items = load_items(data)
    for aggregate, value in (("mean", (0.2 + 0.8 + 0.9) / 3), ("median", 0.8)):
        merged = load_human(dup, items, aggregate)
        assert merged.segments[0][0].score == pytest.approx(value)
    rows[-1]["hypothesis"] = "other"
    _write_jsonl(dup, rows)
    with pytest.raises(rewardkit.RewardkitError, match="different hypotheses"):
        load_human(dup, items, "mean")


def test_sections_human_runs_only_human_and_any_language(toy_registry, human_files, tmp_path):
    _, human = human_files
    french = tmp_path / "fr.tsv"
    lines = ["id\treference\tlang"] + [f"s{i}\tLe chien {i} court.\tfr" for i in range(6)]
    french.write_text("\n".join(lines) + "\n")
    tsv_human = tmp_path / "human.tsv"
    rows = [json.loads(line) for line in human.read_text().splitlines()]
    tsv_human.write_text(
        "id\tsystem\thypothesis\tscore\n"
        + "".join(f"{r['id']}\t{r['system']}\t{r['hypothesis']}\t{r['score']}\n" for r in rows)
    )
    config = BenchConfig(
        rewards=("oracle", "bleu"), data=french, human=tsv_human, sections=("human",), **SMALL
    )
    results = run_bench(toy_registry, config)
    assert results.sections == ["human"]
    assert not (results.cost or results.discrimination or results.probes or results.agreement)
    assert results.human["oracle"]["acc_eq"]["item"]["accuracy"] == 1.0
    write_report(results, tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == ["human.png"]
    report = (tmp_path / "out" / "report.md").read_text()
    assert "How to read acc_eq" in report and "| oracle | 1.000 (1.000-1.000) |" in report
    with pytest.raises(rewardkit.RewardkitError, match="--sections human"):
        run_bench(toy_registry, BenchConfig(rewards=("bleu",), data=french, **SMALL))


class EnglishOnly(Oracle):
    name = "english_only"
    languages = ("en",)


def test_language_and_all_ties_warnings(human_files, tmp_path):
    class Plugin:
        @rewardkit.hookimpl
        def register_rewards(self, register):
            register(EnglishOnly)

    registry = rewardkit.load_registry(entry_points=False, plugins={"p": Plugin()})
    data, _ = human_files  # no lang column: de
    rows = [  # MQM-like: most translations error-free; the metric ranks them in reverse
        {"id": f"s{i}", "system": s, "hypothesis": f"{m}|x", "score": h}
        for i in range(6)
        for s, m, h in (("a", 0.25, 0), ("b", 0.5, 0), ("c", 0.75, 0), ("d", 0.625, -1))
    ]
    human = _write_jsonl(tmp_path / "mqm.jsonl", rows)
    config = BenchConfig(
        rewards=("english_only",), data=data, human=human, sections=("human",), **SMALL
    )
    results = run_bench(registry, config)
    item = results.human["english_only"]["acc_eq"]["item"]
    assert item["mostly_ties"] and item["accuracy"] == pytest.approx(0.5)  # see test_stats
    assert len(results.warnings) == 3  # the language, and both acc_eq variants
    assert "covers en only, but the data is de" in results.warnings[0]
    assert "compare the untied accuracy 0.167" in results.warnings[1]
    from rich.console import Console

    console = Console(width=80, record=True, file=open(os.devnull, "w"))  # noqa: SIM115
    print_table(results, console)
    text = console.export_text()
    assert "0.500!" in text and "warning: english_only: its model covers en" in text
    assert max(len(line) for line in text.splitlines()) <= 80


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
        (
            ["--data", "{d}/data.jsonl", "--human", "{d}/human_dup.jsonl"],
            "pass --aggregate mean or --aggregate median",
        ),
        (["--sections", "human,ladder"], "unknown section 'ladder'; choose from cost,"),
        (["--sections", "human"], "section human needs human judgments: pass --human FILE"),
    ],
)
def test_cli_bench_bad_input(toy_registry, human_files, tmp_path, args, message):
    del human_files  # writes data.jsonl into tmp_path
    (tmp_path / "bad.jsonl").write_text('{"id": "x", "source": "no reference"}\n')
    (tmp_path / "human_bad.jsonl").write_text(
        '{"id": "nope", "system": "a", "hypothesis": "h", "score": 1}\n'
    )
    (tmp_path / "human_dup.jsonl").write_text(
        '{"id": "s0", "system": "a", "hypothesis": "h", "score": 1}\n' * 2
    )
    args = [a.format(d=tmp_path) for a in args]
    result = CliRunner().invoke(build_cli(toy_registry), ["bench", *args, "-o", str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert message in result.stderr
