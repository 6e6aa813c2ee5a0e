"""benchmarks/paper/study.py: the paired bootstrap on hand-computed cases, and the whole cell
pipeline (common SFT, export, sweeps, main arms, ablation, bench, evals, collect, render) at the
``tiny`` scale through rewardkit's CLI, on a random-init tiny model and the 10-item spoken data."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

PAPER = Path(__file__).resolve().parents[1] / "benchmarks" / "paper"


def _module(name: str):
    sys.path.insert(0, str(PAPER))
    try:
        spec = importlib.util.spec_from_file_location(f"paper_{name}", PAPER / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(PAPER))
    return module


def test_paired_bootstrap_on_a_hand_computed_case():
    """Two items; per item the arms differ by 0 and by 2 (scores: the mean of column 0). A
    resample draws {0,0} (p 1/4, difference 0), {0,1} or {1,0} (p 1/2, 1) or {1,1} (p 1/4, 2):
    the difference on all items is 1, the 95% percentile interval [0, 2], and 3/4 of the
    resamples are above zero."""
    bootstrap = _module("bootstrap")
    a = np.array([[1.0, 1.0], [3.0, 1.0]])
    b = np.array([[1.0, 1.0], [1.0, 1.0]])
    got = bootstrap.paired_bootstrap([a], [b], lambda s: s[0] / s[1], resamples=4000, seed=1)
    assert got["difference"] == 1.0
    assert (got["low"], got["high"]) == (0.0, 2.0)
    assert got["share_above_zero"] == pytest.approx(0.75, abs=0.03)
    assert got["items"] == 2


def test_trained_ranks_and_rank_bootstrap_on_a_hand_computed_case():
    """trained_ranks: per metric a > b > c and b > c > a: mean ranks a 2, b 1.5, c 2.5.
    rank_bootstrap, two items: x scores (2, 0), y (0, 2), z (-1, -1); the other ranking is x, y,
    z. A resample draws {0,0} (p 1/4: x, y, z, rho 1), {1,1} (1/4: y, x, z, rho 0.5) or one of
    each (1/2: x and y tie at 1.5, rho 0.866 as on all items); x, first on all items (tied,
    first by name), stays first (or tied first) in 3/4 of the resamples."""
    bootstrap = _module("bootstrap")
    got = bootstrap.trained_ranks(
        {"a": {"m1": 3, "m2": 1}, "b": {"m1": 2, "m2": 3}, "c": {"m1": 1, "m2": 2}}
    )
    assert got == {"b": 1.0, "a": 2.0, "c": 3.0}
    arms = {k: {"m": bootstrap.sentence_stats(v)} for k, v in
            {"x": [2.0, 0.0], "y": [0.0, 2.0], "z": [-1.0, -1.0]}.items()}  # fmt: skip
    got = bootstrap.rank_bootstrap(arms, {"x": 1, "y": 2, "z": 3}, resamples=4000, seed=1)
    assert got["ranks"] == {"x": 1.5, "y": 1.5, "z": 3.0} and got["top"] == "x"
    assert got["rho"] == pytest.approx(3**0.5 / 2)
    assert (got["low"], got["high"]) == pytest.approx((0.5, 1.0))
    assert got["top_share"] == pytest.approx(0.75, abs=0.03) and got["items"] == 2


def test_bootstrap_bleu_is_sacrebleus_corpus_bleu():
    """Summed per-item statistics give sacrebleu's corpus BLEU and chrF exactly; perfect
    hypotheses against empty ones differ by 100 BLEU on every resample; an arm against itself
    by 0; an arm's score is the mean over its lists (seeds / runs)."""
    import sacrebleu

    bootstrap = _module("bootstrap")
    refs = [["the cat sat on the mat"], ["a dog barks at night"], ["it rains in Bonn today"]]
    hyps = ["the cat sat on a mat", "the dog barks", "it rains in Bonn"]
    for name, corpus in (("BLEU", sacrebleu.corpus_bleu), ("chrF", sacrebleu.corpus_chrf)):
        stats, score = bootstrap.item_stats(name, hyps, refs)
        assert stats.shape[0] == 3
        expected = corpus(hyps, [[r[0] for r in refs]]).score
        assert score(stats.sum(axis=0)) == pytest.approx(expected, abs=1e-9)
    perfect, score = bootstrap.item_stats("BLEU", [r[0] for r in refs], refs)
    empty, _ = bootstrap.item_stats("BLEU", ["", "", ""], refs)
    got = bootstrap.paired_bootstrap([perfect], [empty], score, resamples=200)
    for key in ("difference", "low", "high"):
        assert got[key] == pytest.approx(100.0)
    same = bootstrap.paired_bootstrap([perfect], [perfect], score, resamples=50)
    assert (same["difference"], same["low"], same["high"]) == (0.0, 0.0, 0.0)
    half = bootstrap.paired_bootstrap([perfect, empty], [empty], score, resamples=50)
    assert half["difference"] == pytest.approx(50.0)
    with pytest.raises(ValueError, match="different numbers of items"):
        bootstrap.paired_bootstrap([perfect], [perfect[:2]], score)


def test_the_whole_study_runs_at_the_tiny_scale(spoken_data, tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    study = _module("study")
    exp, results = tmp_path / "exp", tmp_path / "results"
    first = ["--exp", str(exp), "--start", "tiny-voxtral", "--data-root", str(spoken_data)]
    first += ["--scale", "tiny", "--in-process"]
    assert study.main([*first, "--run", "*"]) == 0
    settings = study.load_settings(exp, None, None, None)
    cells = study.build_cells(exp, settings)
    assert all(study.is_done(c) for c in cells), [c.name for c in cells if not study.is_done(c)]
    names = {c.name for c in cells}
    for name in ("st/sweep/sft-lr0.001", "st/main/grpo-bleu-seed1", "qa/ablation/grpo-chrf-seed0",
                 "st/eval/grpo-bleu-seed1-test-sampled", "qa/bench/rewards"):  # fmt: skip
        assert name in names
    # the main arms run at the swept lr, recorded in their config
    lr, scores = study.chosen_lr(exp, "st", "sft", study.SCALES["tiny"])
    assert set(scores) == {"0.001", "0.01"} and lr in (0.001, 0.01)
    config = json.loads((exp / "st/main/sft-seed0/config.json").read_text())
    assert config["learning_rate"] == lr and config["model"] == str(exp / "st/common/model")
    assert json.loads((exp / "st/main/mpgrpo-bleu-seed0/config.json").read_text())[
        "off_policy"] == "reference"  # fmt: skip
    # a second run skips everything
    assert study.main(["--exp", str(exp), "--in-process", "--run", "*"]) == 0
    assert f"done: {len(cells)} " in study.list_cells(exp, settings)

    assert study.main(["--exp", str(exp), "--collect", "--results", str(results)]) == 0
    summary = json.loads((results / "summary.json").read_text())
    boot = summary["bootstrap"]["st/grpo-bleu-minus-sft/sampled/BLEU"]
    assert boot["low"] <= boot["difference"] <= boot["high"] and boot["items"] >= 1
    mp = summary["bootstrap"]["st/mpgrpo-bleu-minus-grpo-bleu/greedy/chrF"]
    assert mp["a"] == ["mpgrpo-bleu-seed0"] and mp["b"] == ["grpo-bleu-seed0", "grpo-bleu-seed1"]
    assert set(summary["step_costs"]) >= {"st/sft", "st/grpo", "qa/grpo", "st/sft-common"}
    abl = summary["ablation"]
    assert set(abl["trained"]) == {"bleu", "chrf", "mix"} and set(abl["bench"]) == set(
        abl["trained"])  # fmt: skip
    assert -1.0 <= abl["spearman"]["rho"] <= 1.0 or np.isnan(abl["spearman"]["rho"])
    # the item bootstrap recomputes the same trained ranking from the per-item scores (ROUGE-L
    # from its sentence scores, cached beside the eval and checked against the eval's score)
    ranked = abl["spearman"]["bootstrap"]
    assert ranked["ranks"] == {k: v["trained_rank"] for k, v in abl["trained"].items()}
    cached = json.loads((exp / "qa/eval/grpo-chrf-seed0-test-greedy/item_scores.json").read_text())
    assert set(cached) == {"ROUGE-L"} and len(cached["ROUGE-L"]) == ranked["items"]
    assert study.main(["--render", "--results", str(results)]) == 0
    tables = (results / "tables.md").read_text()
    assert "| GRPO, BLEU reward |" in tables and "95% interval" in tables
    assert (results / "st-main-dev-curves.png").is_file()


def test_an_interrupted_train_cell_resumes(spoken_data, tmp_path):
    """A train cell whose run stopped after a checkpoint continues with --resume."""
    study = _module("study")
    exp = tmp_path / "exp"
    args = ["--exp", str(exp), "--start", "tiny-voxtral", "--data-root", str(spoken_data)]
    assert study.main([*args, "--scale", "tiny", "--in-process", "--run", "st/common/sft"]) == 0
    run = exp / "st/common/sft"
    info = json.loads((run / "run.json").read_text())
    info["status"] = "interrupted"  # as a killed run leaves it
    (run / "run.json").write_text(json.dumps(info))
    cell = next(c for c in study.build_cells(exp, study.load_settings(exp, None, None, None))
                if c.name == "st/common/sft")  # fmt: skip
    assert not study.is_done(cell)
    assert study.main(["--exp", str(exp), "--in-process", "--run", "st/common/sft"]) == 0
    record = (exp / "records" / "st__common__sft.jsonl").read_text().splitlines()[-2]
    assert json.loads(record)["argv"][:3] == ["train", "--resume", str(run)]


def test_the_committed_tables_are_rendered_from_the_committed_summary(tmp_path):
    """benchmarks/results/paper/tables.md is what --render makes of summary.json (no number
    typed by hand)."""
    committed = PAPER.parent / "results" / "paper"
    if not (committed / "summary.json").is_file():
        pytest.skip("no paper-study results committed yet")
    study = _module("study")
    (tmp_path / "summary.json").write_text((committed / "summary.json").read_text())
    tables = (committed / "tables.md").read_text()
    assert study.render(tmp_path) == tables
    readme = (PAPER.parents[1] / "README.md").read_text()
    assert tables in readme, "README's 'The paper, reproduced' tables are not the rendered ones"
