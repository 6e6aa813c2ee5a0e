"""``rewardkit train``: GRPO, MP-GRPO and SFT runs on a tiny model, config files, exact resume,
and one-line errors. Tiny settings (G = 3, 4 new tokens, a 10-example synthesised data set)."""

from __future__ import annotations

import json
import shlex
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

import rewardkit
from rewardkit.cli import build_cli
from rewardkit.errors import RewardkitError
from rewardkit.rundir import RunDir
from rewardkit.train import (
    DataOrder,
    TrainConfig,
    load_config,
    make_config,
    train,
    train_command,
)

TINY = dict(
    model="tiny-voxtral",
    lora_r=4,
    group_size=3,
    max_new_tokens=4,
    batch_size=2,
    learning_rate=1e-2,
    lr_schedule="constant",  # a resume that extends --steps continues the same schedule
    reward="chrf",
    sft_warmup_steps=0,  # explicit small settings, not the default run's
    beta=0.02,
    eval_interval=0,
    eval_metric="reward",
    progress=False,
    tensorboard=False,
)


@pytest.fixture(scope="module")
def data(spoken_data) -> str:
    return str(spoken_data / "speech_translation")


@pytest.fixture(scope="module")
def registry() -> rewardkit.Registry:
    return rewardkit.load_registry(entry_points=False)


def run(registry, data, out, **overrides) -> Path:
    cfg = TrainConfig(**{**TINY, "data": data, "output_dir": str(out), **overrides})
    return train(cfg, registry)


def cli(registry, *args):
    group = build_cli(registry)
    group.add_command(train_command)
    return CliRunner().invoke(group, ["train", *args])


def comparable(rows):
    return [
        {k: v for k, v in r.items() if not k.startswith("time") and k != "step_time"} for r in rows
    ]


def test_grpo_run_writes_metrics_checkpoints_plots(registry, data, tmp_path):
    path = run(registry, data, tmp_path / "run", steps=3, eval_interval=2)
    rd = RunDir(path)
    train_rows = rd.read_metrics("train")
    assert [r["step"] for r in train_rows] == [1, 2, 3]
    for key in (
        "reward_mean", "reward_std", "reward_chrf_mean", "reward_chrf_std", "advantage_mean",
        "advantage_std", "zero_std_fraction", "kl", "clip_fraction", "completion_length_mean",
        "completion_length_min", "completion_length_max", "truncated_fraction", "lr",
        "grad_norm", "loss", "entropy", "time_generate", "time_reward", "time_logprob",
        "time_train",
    ):  # fmt: skip
        assert key in train_rows[0], key
    # validation also at step 0 (the starting model, where the curves begin), not a checkpoint
    assert [r["step"] for r in rd.read_metrics("validation")] == [0, 2, 3]
    assert [c.step for c in rd.checkpoints()] == [2, 3]
    assert rd.best_checkpoint() is not None
    assert json.loads((rd.latest_checkpoint() / "trainer_state.json").read_text())["step"] == 3
    assert rd.sample_steps() == [0, 2, 3]
    assert (path / "plots" / "rewards.png").is_file()
    assert (path / "plots" / "validation.png").is_file()
    assert rd.info()["status"] == "completed"


def test_no_evaluation_or_save_when_they_are_turned_off(registry, data, tmp_path, monkeypatch):
    """--eval-interval 0 evaluates nothing (not at step 0, not at the end); --no-save writes no
    checkpoint; with evaluation off but saving on, the end is still saved."""
    import rewardkit.train as train_module

    def no_evaluation(tr):
        raise AssertionError("evaluated with --eval-interval 0")

    monkeypatch.setattr(train_module, "evaluate", no_evaluation)
    off = RunDir(run(registry, data, tmp_path / "off", steps=2, save=False, plot=False))
    assert [r["step"] for r in off.read_metrics("train")] == [1, 2]
    assert off.read_metrics("validation") == [] and off.checkpoints() == []
    assert off.info()["status"] == "completed"
    saved = RunDir(run(registry, data, tmp_path / "saved", steps=2, plot=False))
    assert saved.read_metrics("validation") == []
    assert [c.step for c in saved.checkpoints()] == [2]


def test_mp_grpo_and_sft_run(registry, data, tmp_path):
    mp = RunDir(run(registry, data, tmp_path / "mp", steps=2, off_policy="reference", plot=False))
    rows = mp.read_metrics("train")
    assert len(rows) == 2 and "off_policy_ratio_mean" in rows[0]
    # the reference member scores chrF 1 while random samples do not: the groups have spread
    assert rows[0]["zero_std_fraction"] < 1.0
    assert rows[0]["advantage_max"] > 0
    assert rows[0]["completion_length_max"] <= 4  # sampled rows only

    sft = RunDir(
        run(registry, data, tmp_path / "sft", steps=3, algo="sft", batch_size=10, plot=False)
    )
    losses = [r["loss"] for r in sft.read_metrics("train")]
    assert len(losses) == 3 and all(loss > 0 for loss in losses)
    assert losses[-1] < losses[0]  # each step sees the whole train set
    assert sft.latest_checkpoint() is not None


def test_resume_continues_exactly(registry, data, tmp_path):
    settings = dict(steps=4, eval_interval=2, off_policy="reference", plot=False)
    full = RunDir(run(registry, data, tmp_path / "full", **settings))
    part = run(registry, data, tmp_path / "part", **{**settings, "steps": 2})
    assert [c.step for c in RunDir(part).checkpoints()] == [2]
    result = cli(registry, "--resume", str(part), "--steps", "4")
    assert result.exit_code == 0, result.output
    resumed = RunDir(part)
    for split in ("train", "validation"):
        want = [r for r in full.read_metrics(split) if r["step"] > 2]
        got = [r for r in resumed.read_metrics(split) if r["step"] > 2]
        assert want and comparable(got) == comparable(want), split
    assert resumed.info()["resumes"][0]["from_step"] == 2
    # the learning signal is real: parameters moved (non-zero gradients)
    assert any(r["grad_norm"] > 0 for r in full.read_metrics("train"))


def test_resume_with_more_steps_warns_when_the_schedule_stretches(registry, data, tmp_path):
    """A cosine schedule spans --steps: extending a run on resume changes the lr from there on,
    so it warns (a constant schedule continues unchanged, silently)."""
    part = run(registry, data, tmp_path / "part", steps=2, lr_schedule="cosine", plot=False)
    cfg = make_config(RunDir(part).config(), {"resume": str(part), "steps": 3})
    with pytest.warns(UserWarning, match="cosine lr schedule now spans the new length"):
        train(cfg, registry)
    assert [r["step"] for r in RunDir(part).read_metrics("train")] == [1, 2, 3]


def test_config_file_and_cli_override(registry, data, tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text('group-size = 5\nbeta = 0.1\nreward = "bleu"\nsteps = 7\n')
    yaml = tmp_path / "c.yaml"
    yaml.write_text("train:\n  group_size: 4\n  loss_type: bnpo\n")
    assert load_config(toml) == {"group_size": 5, "beta": 0.1, "reward": "bleu", "steps": 7}
    cfg = make_config(load_config(yaml), {"loss_type": "grpo"})
    assert (cfg.group_size, cfg.loss_type, cfg.beta) == (4, "grpo", 0.02)
    defaults = TrainConfig()
    assert (defaults.group_size, defaults.beta, defaults.temperature) == (8, 0.02, 0.7)
    assert (defaults.max_new_tokens, defaults.eval_temperature, defaults.eval_top_p) == (
        40, 0.9, 0.9,
    )  # fmt: skip
    assert (defaults.loss_type, defaults.scale_rewards, defaults.num_iterations) == (
        "dapo", "group", 1,
    )  # fmt: skip
    with pytest.raises(RewardkitError, match="unknown key 'gropu_size'"):
        make_config({"gropu_size": 3})
    bad = tmp_path / "bad.toml"
    bad.write_text("group_size = 'many'\n")
    with pytest.raises(RewardkitError, match="group_size"):
        load_config(bad)

    # through the command: the file sets G = 5 and 7 steps, the command line says 2 steps
    conf = tmp_path / "run.toml"
    settings = {**TINY, "data": data, "group_size": 5, "steps": 7, "plot": False}
    conf.write_text("".join(f"{k} = {json.dumps(v)}\n" for k, v in settings.items()))
    out = tmp_path / "run"
    result = cli(registry, "--config", str(conf), "--steps", "2", "--output-dir", str(out))
    assert result.exit_code == 0, result.output
    stored = RunDir(out).config()
    assert (stored["group_size"], stored["steps"]) == (5, 2)
    assert len(RunDir(out).read_metrics("train")) == 2


def test_data_order_is_seeded_and_resumable():
    a = DataOrder(7, seed=3)
    first = [a.next(3) for _ in range(5)]
    b = DataOrder(7, seed=3)
    b.next(3), b.next(3)
    c = DataOrder(7, 3, **b.state())
    assert [c.next(3) for _ in range(3)] == first[2:]
    assert sorted(first[0] + first[1] + first[2][:1]) == list(range(7))  # an epoch is a perm
    assert DataOrder(7, seed=4).next(7) != DataOrder(7, seed=3).next(7)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--task", "nope"], "unknown task 'nope'; available: asr, speech_translation, spoken_qa"),
        (["--backend", "nope"], "unknown backend 'nope'; available: deepspeed, hf"),
        (["--reward", "nope"], "nope"),
        (["--group-size", "1"], "--group-size must be >= 2"),
        (["--num-iterations", "0"], "--num-iterations (mu) must be >= 1"),
        (["--beta", "-1"], "--beta must be >= 0"),
        (["--data", "/nonexistent/data"], "/nonexistent/data"),
    ],
)
def test_bad_input_is_one_line(registry, data, tmp_path, args, message):
    base = ["--data", data, "--model", "tiny-voxtral", "--lora-r", "4", "--steps", "1"]
    result = cli(registry, *base, "--output-dir", str(tmp_path / "o"), *args)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines[-1].startswith("Error: ") and message in lines[-1], result.output
    assert len([line for line in lines if line.startswith("Error")]) == 1


def test_resume_needs_a_run_and_the_same_config(registry, data, tmp_path):
    result = cli(registry, "--resume", str(tmp_path / "missing"))
    assert result.exit_code == 2 and "not a run directory" in result.output
    out = run(registry, data, tmp_path / "r", steps=1, plot=False)
    result = cli(registry, "--resume", str(out), "--beta", "0.5")
    assert result.exit_code == 2 and "beta" in result.output, result.output


def test_mu_accumulation_and_other_losses(registry, data, tmp_path):
    out = run(
        registry,
        data,
        tmp_path / "mu",
        steps=2,
        batch_size=4,
        grad_accum=2,
        num_iterations=2,
        loss_type="grpo",
        scale_rewards="batch",
        plot=False,
    )
    rows = RunDir(out).read_metrics("train")
    assert len(rows) == 2
    assert all(r["num_tokens"] == 4 * 3 * 4 and abs(r["ratio_mean"] - 1) < 0.5 for r in rows)
    assert all(r["kl"] >= 0 and r["grad_norm"] > 0 for r in rows)
    # every completion hits the 4-token limit: --mask-truncated leaves no loss tokens
    out = run(registry, data, tmp_path / "masked", steps=1, mask_truncated=True, plot=False)
    (row,) = RunDir(out).read_metrics("train")
    assert row["truncated_fraction"] == 1.0 and row["num_tokens"] == 0 and row["loss"] == 0


def test_max_prompt_tokens_leaves_out_longer_prompts(registry, data, tmp_path):
    """Reference: the backend's own prompt lengths; exactly the longer examples are left out."""
    from rewardkit.train import build_trainer

    settings = {**TINY, "data": data, "eval_split": "train"}  # the 1-item dev set is longest
    full = build_trainer(make_config(settings), registry)
    lengths = full.backend.prompt_tokens([full.task.prompt(e) for e in full.train_examples])
    limit = sorted(lengths)[len(lengths) // 2]
    expected = [e.id for e, n in zip(full.train_examples, lengths) if n <= limit]
    assert 0 < len(expected) < len(lengths)
    with pytest.warns(UserWarning, match=f"left out {len(lengths) - len(expected)} of"):
        tr = build_trainer(make_config({**settings, "max_prompt_tokens": limit}), registry)
    assert [e.id for e in tr.train_examples] == expected
    assert tr.extra["dropped"]["dropped_train_examples"] == len(lengths) - len(expected)
    result = cli(registry, "--data", data, "--max-prompt-tokens", "3", "--lora-r", "4")
    assert result.exit_code == 2
    assert "is longer than --max-prompt-tokens 3; raise it" in result.output


def test_train_encoder_adds_the_audio_encoder_to_the_trainable_set(registry, data):
    """Default: projector + LM (LoRA) only; --train-encoder trains the whole encoder too."""
    from rewardkit.train import build_trainer

    settings = {**TINY, "data": data}
    off = build_trainer(make_config(settings), registry).backend.trainable_parameters()
    on = build_trainer(make_config({**settings, "train_encoder": True}), registry)
    counts = on.backend.trainable_parameters()
    assert off["encoder"] == 0 and counts["encoder"] > 0
    assert counts["trainable"] == off["trainable"] + counts["encoder"]
    assert on.cfg.train_encoder and "--train-encoder" in cli(registry, "--help").output


def test_off_policy_k_cycles_through_the_references(registry):
    """MP-GRPO with K > number of references: member k is reference k mod n."""
    import torch

    from rewardkit.policy import ModelSpec, OptimizerConfig
    from rewardkit.train import Trainer, _add_references

    spec = ModelSpec("tiny-voxtral", lora_r=4)
    backend = registry.get("backend", "hf").build(spec, OptimizerConfig())
    cfg = make_config({**TINY, "group_size": 5, "off_policy": "reference", "off_policy_k": 3,
                       "max_new_tokens": 32})  # fmt: skip
    tr = Trainer(cfg, None, [], [], backend, None, None, None, DataOrder(1, 0))
    example = type("Example", (), {"id": "x", "references": ("Guten Tag.", "Hallo!")})()
    ids = torch.zeros(1, 2, 3, dtype=torch.long)
    out = _add_references(tr, [example], ids, ids.bool(), torch.zeros(1, 2, dtype=torch.bool),
                          None, [["a", "b"]], 3)  # fmt: skip
    assert out[4] == [["a", "b", "Guten Tag.", "Hallo!", "Guten Tag."]]
    decoded = [backend.tokenizer.decode(row[m], skip_special_tokens=True)
               for row, m in zip(out[0][0, 2:], out[1][0, 2:])]  # fmt: skip
    assert decoded == ["Guten Tag.", "Hallo!", "Guten Tag."]


def test_sft_warmup_then_grpo(registry, data, tmp_path):
    """Steps 1..N are SFT steps (NLL logged), then GRPO (rewards logged); the end of the
    warm-up is always evaluated; curves.png marks the boundary."""
    path = run(registry, data, tmp_path / "run", sft_warmup_steps=2, steps=2, eval_interval=3)
    rd = RunDir(path)
    rows = rd.read_metrics("train")
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    assert all("nll" in r and "reward_mean" not in r for r in rows[:2])
    assert all("reward_mean" in r and "nll" not in r for r in rows[2:])
    assert [r["step"] for r in rd.read_metrics("validation")] == [0, 2, 3, 4]
    assert (path / "plots" / "curves.png").is_file()
    # --algo sft has no warm-up: `steps` SFT steps
    sft = run(registry, data, tmp_path / "sft", algo="sft", sft_warmup_steps=2, steps=1,
              plot=False)  # fmt: skip
    assert [r["step"] for r in RunDir(sft).read_metrics("train")] == [1]


@pytest.mark.parametrize("stop", [1, 2, 3])
def test_resume_is_exact_across_the_warmup_boundary(registry, data, tmp_path, stop):
    """A run stopped after step 1 (in the warm-up), 2 (its last step) or 3 (the first GRPO step)
    and resumed logs exactly what the uninterrupted run logged."""
    # evaluated at the end of the warm-up (step 2) and at the end (step 4)
    settings = dict(sft_warmup_steps=2, steps=2, save_interval=1, keep_last=10, plot=False,
                    eval_interval=4)  # fmt: skip
    full = run(registry, data, tmp_path / "full", **settings)
    part = tmp_path / "part"
    shutil.copytree(full, part)
    for checkpoint in RunDir(part).checkpoints():
        if checkpoint.step > stop:  # as if killed after step `stop` was saved
            shutil.rmtree(checkpoint.path)
    result = cli(registry, "--resume", str(part))
    assert result.exit_code == 0, result.output
    assert RunDir(part).info()["resumes"][-1]["from_step"] == stop
    for split in ("train", "validation"):
        want = [r for r in RunDir(full).read_metrics(split) if r["step"] > stop]
        got = [r for r in RunDir(part).read_metrics(split) if r["step"] > stop]
        assert want and comparable(got) == comparable(want), split


def test_defaults_are_the_default_run_the_readme_describes():
    """README's "The default run" spells out `rewardkit train` with explicit options: they give
    exactly the default config, and the data and reward are the embedded set and BLEU."""
    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme.split("## The default run", 1)[1].split("\n## ", 1)[0]
    command = section.split("# the same as `rewardkit train`", 1)[0].rsplit("```bash", 1)[1]
    args = shlex.split(command.replace("\\\n", " "))
    assert args[:2] == ["rewardkit", "train"]
    ctx = train_command.make_context("train", args[2:])
    given = {k: v for k, v in ctx.params.items() if v is not None and k != "config_file"}
    assert make_config(given) == TrainConfig()
    defaults = TrainConfig()
    assert (defaults.algo, defaults.reward, defaults.data, defaults.task) == (
        "grpo", "bleu", None, "speech_translation",
    )  # fmt: skip
    assert (defaults.data_size, defaults.model, defaults.sft_warmup_steps) == (
        2000, "small-voxtral-st", 0,
    )  # fmt: skip


def test_embedded_data_follows_data_size(tmp_path, monkeypatch):
    """The embedded set is built on first use and rebuilt when --data-size changes (a cached
    set of another size is never used silently)."""
    from rewardkit.speech import espeak
    from rewardkit.train import resolve_data

    monkeypatch.setenv("REWARDKIT_CACHE", str(tmp_path))
    monkeypatch.setattr(espeak, "_engine", None)
    for size in (10, 12, 10):
        folder = Path(resolve_data(make_config({"data_size": size})))
        assert len((folder / "train.jsonl").read_text().splitlines()) == size


@pytest.mark.parametrize("task", ["spoken_qa", "speech_translation"])
@pytest.mark.parametrize(
    "model", ["tiny-qwen2-audio", "tiny-granite-speech", "tiny-voxtral", "tiny-whisper-llama"]
)
def test_every_family_trains_a_step_on_both_tasks_through_the_cli(
    registry, spoken_data, tmp_path, model, task
):
    """CLI -> task (prompts with <audio>) -> backend (the family's placeholder) -> reward ->
    run dir, for each model family and both built-in tasks."""
    out = tmp_path / "run"
    args = ["--model", model, "--task", task, "--data", str(spoken_data / task), "--steps", "1",
            "--lora-r", "4", "--group-size", "2", "--max-new-tokens", "3", "--batch-size", "2",
            "--eval-examples", "1", "--no-progress", "--no-plot", "--no-tensorboard",
            "--output-dir", str(out)]  # fmt: skip
    result = cli(registry, *args)
    assert result.exit_code == 0, result.output
    rows = RunDir(out).read_metrics("train")
    assert [r["step"] for r in rows] == [1] and rows[0]["num_tokens"] > 0
    assert (out / "checkpoints" / "step-000001" / "trainable.safetensors").is_file()


def test_the_marker_is_where_the_audio_goes_and_never_reaches_the_model(spoken_data):
    """The task's <audio> becomes the model's audio tokens at the marker's place, for a model
    whose audio token is itself the string <audio> (the assembled layout) and one whose is not."""
    from rewardkit.backends.hf import HFBackend
    from rewardkit.plugins.speech_tasks import SpokenQA
    from rewardkit.policy import ModelSpec, OptimizerConfig

    example = SpokenQA().load(str(spoken_data / "spoken_qa"), "train").examples[0]
    prompt = SpokenQA(templates="fixed").prompt(example)
    before, after = prompt.text.split("<audio>")
    for model in ("tiny-whisper-llama", "tiny-voxtral"):
        backend = HFBackend.build(ModelSpec(model, lora_r=4), OptimizerConfig())
        ids = backend._encode([prompt])[0].ids
        audio = [i for i, t in enumerate(ids) if t == backend.audio.token_id]
        assert audio == list(range(audio[0], audio[-1] + 1))  # one contiguous run
        text_before = backend.tokenizer.decode(ids[: audio[0]])
        text_after = backend.tokenizer.decode(ids[audio[-1] + 1 :])
        assert text_before.endswith(before.rstrip()) or before.strip() in text_before
        assert after.strip() in text_after and "<audio>" not in text_before + text_after


def test_asr_aligns_on_transcripts_through_the_cli(registry, spoken_data, tmp_path):
    """The alignment stage: SFT on the transcripts of the translation set's speech, projector
    and LoRA trained; the references are the transcripts."""
    from rewardkit.plugins.speech_tasks import SpeechRecognition, SpeechTranslation

    folder = str(spoken_data / "speech_translation")
    examples = SpeechRecognition().load(folder, "train").examples
    translations = SpeechTranslation().load(folder, "train").examples
    assert [e.references[0] for e in examples] == [e.source for e in translations]
    assert "<audio>" in SpeechRecognition().prompt(examples[0]).text
    out = tmp_path / "run"
    args = ["--algo", "sft", "--task", "asr", "--model", "tiny-whisper-llama", "--data",
            str(spoken_data / "speech_translation"), "--steps", "2", "--lora-r", "4",
            "--batch-size", "2", "--eval-examples", "1", "--eval-metric", "bleu",
            "--no-progress", "--no-plot", "--no-tensorboard", "--output-dir", str(out)]  # fmt: skip
    result = cli(registry, *args)
    assert result.exit_code == 0, result.output
    assert [r["step"] for r in RunDir(out).read_metrics("train")] == [1, 2]


def test_asr_uses_the_embedded_translation_speech(monkeypatch, tmp_path):
    import rewardkit.speech.make as make
    from rewardkit.train import resolve_data

    calls = []

    def embedded(task, size, seed, progress=None):
        calls.append(task)
        return tmp_path / make.TASKS[task]

    monkeypatch.setattr(make, "embedded_data", embedded)
    assert resolve_data(TrainConfig(task="asr")) == str(tmp_path / "speech_translation")
    assert resolve_data(TrainConfig(task="spoken_qa")) == str(tmp_path / "spoken_qa")
    assert calls == ["st", "qa"]


def test_a_run_from_before_tempered_logprobs_resumes_untempered(registry, data, tmp_path):
    """Runs made before --tempered-logprobs existed scored untempered log-probs; their config
    lacks the key, and resuming one keeps that (not today's tempered default)."""
    assert TrainConfig().tempered_logprobs
    part = run(registry, data, tmp_path / "part", steps=2, temperature=0.7, plot=False,
               tempered_logprobs=False)  # fmt: skip
    stored = json.loads((part / "config.json").read_text())
    del stored["tempered_logprobs"]  # as an older rewardkit wrote it
    (part / "config.json").write_text(json.dumps(stored))
    result = cli(registry, "--resume", str(part), "--steps", "3")
    assert result.exit_code == 0, result.output
    assert RunDir(part).config()["tempered_logprobs"] is False
    assert [r["step"] for r in RunDir(part).read_metrics("train")] == [1, 2, 3]


def _tiny_args(data, out, **extra):
    options = {**TINY, "data": data, "output_dir": str(out), **extra}
    args = []
    for key, value in options.items():
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            args.append(flag if value else "--no-" + flag[2:])
        else:
            args += [flag, str(value)]
    return args


def test_the_terminal_shows_the_validation_metric_and_a_summary(registry, data, tmp_path):
    """Every evaluation prints the metric (start, then with the start and the best so far); the
    run ends with start -> best -> last and where the run and its plot are."""
    out = tmp_path / "run"
    result = cli(registry, *_tiny_args(data, out, steps=4, eval_interval=2, plot=True))
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    values = {r["step"]: r["reward_mean"] for r in RunDir(out).read_metrics("validation")}
    assert sorted(values) == [0, 2, 4]
    shown = [line for line in lines if line.startswith("step ")]
    assert shown[0] == f"step 0: dev reward {values[0]:.4f} (start)"
    best_step = max(values, key=lambda s: (values[s], -s))
    assert shown[2] == (
        f"step 4: dev reward {values[4]:.4f}  start {values[0]:.4f}  "
        f"best {values[best_step]:.4f} (step {best_step})"
    )
    assert (
        f"dev reward: {values[0]:.4f} at step 0 -> best {values[best_step]:.4f} at step "
        f"{best_step} -> last {values[4]:.4f} at step 4"
    ) in lines
    assert f"run: {out} (plot: {out / 'plots' / 'curves.png'})" in lines


def test_the_default_model_depends_on_the_task():
    assert TrainConfig().model == "small-voxtral-st"  # the default run's, unchanged
    assert make_config({"task": "spoken_qa"}).model == "small-voxtral-qa"
    assert make_config({"task": "spoken_qa", "model": "tiny-voxtral"}).model == "tiny-voxtral"
    assert make_config({"task": "asr"}).model == "small-voxtral-st"
    ctx = train_command.make_context("train", ["--task", "spoken_qa"])
    given = {k: v for k, v in ctx.params.items() if v is not None and k != "config_file"}
    assert make_config(given).model == "small-voxtral-qa"


def test_spoken_qa_trains_from_its_bundled_warm_start(registry, tmp_path, monkeypatch):
    """`rewardkit train --task spoken_qa` with the default model: the embedded QA set is built
    (a line says so), and a GRPO run starts from small-voxtral-qa."""
    from rewardkit.speech import espeak

    monkeypatch.setenv("REWARDKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(espeak, "_engine", None)
    out = tmp_path / "qa"
    args = ["--task", "spoken_qa", "--data-size", "10", "--steps", "1", "--batch-size", "2"]
    args += ["--group-size", "2", "--max-new-tokens", "4", "--eval-examples", "2"]
    args += ["--no-progress", "--no-plot", "--no-tensorboard", "--output-dir", str(out)]
    result = cli(registry, *args)
    assert result.exit_code == 0, result.output
    assert "building the embedded spoken_qa data set (12 utterances" in result.stderr
    assert RunDir(out).config()["model"] == "small-voxtral-qa"
    assert [r["step"] for r in RunDir(out).read_metrics("validation")] == [0, 1]
