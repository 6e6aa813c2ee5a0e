"""The ``text`` task: JSONL / TSV / ``datasets`` sources with a prompt, one or more references
and an optional source; templates without audio; and ``rewardkit train --task text`` then
``rewardkit eval`` through the CLI on a tiny causal LM saved to a temporary folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

import rewardkit
from rewardkit.cli import build_cli
from rewardkit.plugins.text_task import TextTask
from rewardkit.rundir import RunDir
from rewardkit.tasks import DataError, TaskError

ROWS = [
    {"id": "a", "prompt": "Translate into German: Good morning.", "reference": "Guten Morgen.",
     "source": "Good morning."},
    {"id": "b", "prompt": "Translate into German: Thank you.",
     "reference": ["Danke.", "Danke schön."]},
    {"id": "c", "prompt": "Translate into German: Hello.", "reference": "Hallo."},
    {"id": "d", "prompt": "Translate into German: Good night.", "reference": "Gute Nacht."},
]  # fmt: skip


def write_jsonl(path: Path, rows=ROWS) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def registry() -> rewardkit.Registry:
    return rewardkit.load_registry(entry_points=False)


def test_registered_as_a_builtin(registry):
    assert registry.get("task", "text") is TextTask


def test_jsonl_prompts_references_and_source(tmp_path):
    examples = TextTask().load(str(write_jsonl(tmp_path / "p.jsonl")), "train").examples
    assert [e.id for e in examples] == ["a", "b", "c", "d"]
    assert examples[1].references == ("Danke.", "Danke schön.")
    assert examples[0].source == "Good morning." and examples[1].source is None
    prompt = TextTask().prompt(examples[0])
    assert prompt.text == "Translate into German: Good morning." and prompt.audio is None
    assert prompt.id == "a"


def test_tsv_with_a_repeated_reference_column(tmp_path):
    path = tmp_path / "train.tsv"
    path.write_text(
        "prompt\treference\treference\tsource\n"
        "Say thanks in German.\tDanke.\tDanke schön.\tThanks.\n"
        "\n"
        "Say hello in German.\tHallo.\t\t\n",
        encoding="utf-8",
    )
    for source in (str(path), str(tmp_path)):  # the file, or a directory holding {split}.tsv
        examples = TextTask().load(source, "train").examples
        assert [e.references for e in examples] == [("Danke.", "Danke schön."), ("Hallo.",)]
        assert [e.source for e in examples] == ["Thanks.", None]
        assert [e.id for e in examples] == ["train-0", "train-1"]
    path.write_text("prompt\treference\nonly a prompt\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"train.tsv line 2: 1 tab-separated cells, the header"):
        TextTask().load(str(path), "train")


def test_datasets_directory_and_column_mapping(tmp_path):
    from datasets import Dataset, DatasetDict

    data = {"question": ["2 + 2?", "3 + 3?"], "answer": ["4", "6"]}
    DatasetDict({"test": Dataset.from_dict(data)}).save_to_disk(str(tmp_path / "ds"))
    examples = TextTask().load(str(tmp_path / "ds"), "test").examples
    assert [(e.fields["prompt"], e.references) for e in examples] == [
        ("2 + 2?", ("4",)), ("3 + 3?", ("6",)),
    ]  # fmt: skip
    rows = [{"q": "x?", "a": "y"}]
    mapped = TextTask(columns="prompt:q;reference:a").load(
        str(write_jsonl(tmp_path / "m.jsonl", rows)), "train"
    )
    assert mapped.examples[0].fields["prompt"] == "x?"


def test_templates_wrap_the_prompt_and_hold_no_audio(tmp_path):
    example = TextTask().load(str(write_jsonl(tmp_path / "p.jsonl")), "train").examples[0]
    task = TextTask(template="Q: {prompt} (from: {source}) A:")
    assert task.instruction(example) == (
        "Q: Translate into German: Good morning. (from: Good morning.) A:"
    )
    with pytest.raises(TaskError, match="has no audio"):
        TextTask(template="<audio> {prompt}")
    with pytest.raises(TaskError, match=r"\{question\} is unknown"):
        TextTask(template="{question}")
    with pytest.raises(DataError, match="no 'prompt' field"):
        TextTask().load(str(write_jsonl(tmp_path / "bad.jsonl", [{"reference": "x"}])), "train")


def test_train_then_eval_through_the_cli(registry, tmp_path):
    """`rewardkit train --task text --data prompts.jsonl --model DIR --reward bleu`, then
    `rewardkit eval` on the run, with a tiny causal LM saved to a folder."""
    from rewardkit.backends.tiny import build_tiny_causal_lm, save_tiny

    model = save_tiny(build_tiny_causal_lm(seed=0), tmp_path / "model")
    data = write_jsonl(tmp_path / "prompts.jsonl")
    run = tmp_path / "run"
    cli = build_cli(registry)
    train_args = ["train", "--task", "text", "--data", str(data), "--model", str(model),
                  "--reward", "bleu", "--steps", "2", "--batch-size", "2", "--group-size", "3",
                  "--max-new-tokens", "4", "--eval-interval", "2", "--output-dir", str(run),
                  "--no-progress", "--no-plot", "--no-tensorboard"]  # fmt: skip
    result = CliRunner().invoke(cli, train_args)
    assert result.exit_code == 0, result.output
    rd = RunDir(run)
    assert [r["step"] for r in rd.read_metrics("train")] == [1, 2]
    assert [r["step"] for r in rd.read_metrics("validation")] == [0, 2]
    assert "bleu" in rd.read_metrics("validation")[-1]
    assert "reward_mean" in rd.read_metrics("train")[0]
    assert [c.step for c in rd.checkpoints()] == [2]

    out = tmp_path / "eval"
    eval_args = ["eval", "--model", str(run), "--metrics", "bleu,chrf", "--max-new-tokens", "4",
                 "--output-dir", str(out), "--no-progress"]  # fmt: skip
    result = CliRunner().invoke(cli, eval_args)
    assert result.exit_code == 0, result.output
    results = json.loads((out / "results.json").read_text())
    assert results["settings"]["task"] == "text" and results["settings"]["num_examples"] == 4
    assert set(results["metrics"]) == {"BLEU", "chrF"}
    generations = [json.loads(line) for line in (out / "generations.jsonl").open()]
    assert generations[1]["references"] == ["Danke.", "Danke schön."]
