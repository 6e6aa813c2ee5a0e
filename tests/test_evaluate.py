"""``rewardkit eval``: run directories, checkpoints and plain models on a tiny model and a
10-example synthesised data set (one test example); metrics, files and one-line errors."""

from __future__ import annotations

import json
import shutil
import statistics
from pathlib import Path

import pytest
import sacrebleu
from click.testing import CliRunner

import rewardkit
from rewardkit.cli import build_cli
from rewardkit.errors import RewardkitError
from rewardkit.evaluate import (
    GENERATIONS,
    RESULTS_JSON,
    RESULTS_MD,
    EvalConfig,
    eval_command,
    evaluate,
    resolve_model,
)
from rewardkit.textio import OUTPUT_MARKER
from rewardkit.train import TrainConfig, train

FAST = dict(max_new_tokens=4, progress=False)


@pytest.fixture(scope="module")
def data(spoken_data) -> str:
    return str(spoken_data / "speech_translation")


@pytest.fixture(scope="module")
def registry() -> rewardkit.Registry:
    return rewardkit.load_registry(entry_points=False)


@pytest.fixture(scope="module")
def run_dir(registry, data, tmp_path_factory) -> Path:
    cfg = TrainConfig(
        model="tiny-voxtral",
        lora_r=4,
        group_size=2,
        max_new_tokens=4,
        batch_size=2,
        steps=2,
        sft_warmup_steps=0,
        beta=0.02,
        eval_interval=1,
        eval_metric="reward",
        eval_greedy=False,
        reward="chrf",
        data=data,
        output_dir=str(tmp_path_factory.mktemp("runs") / "run"),
        progress=False,
        tensorboard=False,
        plot=False,
    )
    return train(cfg, registry)


def cli(registry, *args):
    group = build_cli(registry)
    group.add_command(eval_command)
    return CliRunner().invoke(group, ["eval", *args])


def read_outputs(out: Path) -> tuple[dict, list[dict]]:
    names = {p.name for p in out.iterdir()}
    assert names == {RESULTS_JSON, RESULTS_MD, GENERATIONS, OUTPUT_MARKER}
    results = json.loads((out / RESULTS_JSON).read_text(encoding="utf-8"))
    lines = (out / GENERATIONS).read_text(encoding="utf-8").splitlines()
    return results, [json.loads(line) for line in lines]


def test_run_dir_via_cli_writes_files_and_corpus_bleu(registry, data, run_dir, tmp_path):
    out = tmp_path / "eval"
    result = cli(registry, "--model", str(run_dir), "--split", "test", "--output-dir", str(out),
                 "--no-progress")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "BLEU" in result.stdout and "ROUGE-L" in result.stdout  # the rich table
    results, gens = read_outputs(out)
    s = results["settings"]
    assert s["model_kind"] == "run" and s["base_model"] == "tiny-voxtral"
    assert s["task"] == "speech_translation" and s["data"] == data  # from the run's config
    assert s["max_new_tokens"] == 4 and s["temperature"] == 0.9 and s["top_p"] == 0.9
    best = json.loads((run_dir / "checkpoints" / "index.json").read_text())["best"]
    assert Path(s["checkpoint"]).name == (best if isinstance(best, str) else best["name"])
    assert set(results["metrics"]) == {"BLEU", "chrF", "ROUGE-1", "ROUGE-2", "ROUGE-L", "METEOR"}
    assert "version:" in results["metric_info"]["BLEU"]["signature"]
    assert "sacrebleu" in results["versions"]["packages"]
    assert gens and set(gens[0]) == {"id", "prompt", "hypotheses", "references", "source"}
    hyps = [g["hypotheses"][0] for g in gens]
    refs = [[g["references"][0] for g in gens]]
    expected = sacrebleu.corpus_bleu(hyps, refs).score
    assert results["runs"][0]["metrics"]["BLEU"] == pytest.approx(expected)
    assert results["metrics"]["chrF"]["mean"] == pytest.approx(
        sacrebleu.corpus_chrf(hyps, refs).score
    )
    assert "| BLEU |" in (out / RESULTS_MD).read_text()


def test_checkpoint_dir_and_model_spec_with_runs(registry, data, run_dir, tmp_path):
    step = sorted((run_dir / "checkpoints").glob("step-*"))[0]
    assert resolve_model(str(step)).kind == "checkpoint"
    assert resolve_model(str(step)).config["lora_r"] == 4
    res = evaluate(
        EvalConfig(model="tiny-voxtral", data=data, runs=2, metrics="bleu,chrf,rougeL",
                   output_dir=str(tmp_path / "m"), **FAST),
        registry,
    )  # fmt: skip
    results, gens = read_outputs(tmp_path / "m")
    assert results["settings"]["model_kind"] == "model" and results["settings"]["seeds"] == [0, 1]
    assert all(len(g["hypotheses"]) == 2 for g in gens)
    for name in ("BLEU", "chrF", "ROUGE-L"):
        per_run = [r["metrics"][name] for r in results["runs"]]
        agg = results["metrics"][name]
        assert agg["mean"] == pytest.approx(statistics.fmean(per_run))
        assert agg["std"] == pytest.approx(statistics.stdev(per_run)) and agg["n"] == 2
    assert "±" in (tmp_path / "m" / RESULTS_MD).read_text()
    assert res.results == results


def test_greedy_is_deterministic(registry, data, run_dir, tmp_path):
    step = sorted((run_dir / "checkpoints").glob("step-*"))[0]
    outputs = []
    for name in ("a", "b"):
        cfg = EvalConfig(model=str(step), greedy=True, metrics="chrf",
                         output_dir=str(tmp_path / name), **FAST)  # fmt: skip
        outputs.append(evaluate(cfg, registry))
    assert outputs[0].generations == outputs[1].generations
    assert outputs[0].results["metrics"] == outputs[1].results["metrics"]
    assert outputs[0].results["settings"]["temperature"] is None


def test_errors_are_one_line(registry, data, run_dir, tmp_path, monkeypatch):
    def error(*args):
        result = cli(registry, *args, "--no-progress", "-o", str(tmp_path / "x"))
        assert result.exit_code == 2, result.output
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
        return lines[0]

    assert "does not exist" in error("--model", str(tmp_path / "nope"))
    (tmp_path / "empty-run" / "checkpoints").mkdir(parents=True)
    assert "no complete checkpoint" in error("--model", str(tmp_path / "empty-run"))
    message = error("--model", str(run_dir), "--metrics", "bleu,blue")
    assert "unknown metric 'blue'" in message and "rougeL" in message and "chrf" in message
    assert "--greedy" in error("--model", "tiny-voxtral", "--greedy", "--runs", "2")
    comet = registry.get("reward", "comet")
    monkeypatch.setattr(comet, "unavailable", classmethod(lambda cls: "not installed here"))
    assert "rewardkit[comet]" in error("--model", str(run_dir), "--metrics", "bleu,comet")
    copy = tmp_path / "data"
    shutil.copytree(data, copy)
    (copy / "test.jsonl").write_text("")
    message = error("--model", "tiny-voxtral", "--data", str(copy), "--max-new-tokens", "2")
    assert "no usable examples" in message
    with pytest.raises(RewardkitError, match="--runs"):
        EvalConfig(model="tiny-voxtral", runs=0)
    assert not (tmp_path / "x").exists()


def test_export_writes_a_model_that_generates_like_the_run(registry, data, run_dir, tmp_path):
    """`rewardkit model export RUN --out DIR` writes the best checkpoint with LoRA merged as a
    save_pretrained directory; greedy generations from it equal the run's own."""
    out = tmp_path / "exported"
    result = CliRunner().invoke(
        build_cli(registry), ["model", "export", str(run_dir), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert (out / "config.json").is_file() and (out / "preprocessor_config.json").is_file()
    assert not (out / "trainable.safetensors").exists()  # a model, not a training checkpoint
    hyps = []
    for model in (str(run_dir), str(out)):
        where = tmp_path / f"eval{len(hyps)}"
        cfg = EvalConfig(model=model, data=data, greedy=True, metrics="bleu",
                         output_dir=str(where), **FAST)  # fmt: skip
        evaluate(cfg, registry)
        hyps.append([g["hypotheses"] for g in read_outputs(where)[1]])
    assert hyps[0] == hyps[1]
    again = CliRunner().invoke(
        build_cli(registry), ["model", "export", str(run_dir), "--out", str(out)]
    )
    assert again.exit_code == 2 and "exists; give --overwrite" in again.output
    replaced = CliRunner().invoke(
        build_cli(registry), ["model", "export", str(run_dir), "--out", str(out), "--overwrite"]
    )
    assert replaced.exit_code == 0 and (out / "config.json").is_file()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    plain = CliRunner().invoke(
        build_cli(registry), ["model", "export", "tiny-voxtral", "--out", str(tmp_path / "x")]
    )
    assert plain.exit_code == 2 and "not a run or a checkpoint" in plain.output
