"""The deepspeed backend on CPU (gloo): ZeRO-2 and ZeRO-3, one and two processes (torchrun and
the deepspeed launcher), parity with the hf backend, exact resume, checkpoints that the hf
backend and ``rewardkit eval`` load, and the one-line errors.

Reference for parity: the same run (seed, data, settings) on the ``hf`` backend. Sampling has a
random stream per completion, so both backends draw the same completions however the prompts are
split over ranks; rewards are then equal exactly, and losses, KL, gradient norms and the trained
weights agree within float32 rounding (stated tolerances below). Runs are subprocesses, so no
process group outlives a test.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from rewardkit.errors import RewardkitError
from rewardkit.policy import ModelSpec, OptimizerConfig
from rewardkit.rundir import RunDir

RTOL, ATOL = 1e-4, 1e-6  # metrics (loss, kl, grad_norm) vs the hf backend
# Trained tensors vs the hf backend: 4 AdamW steps at lr 0.01 move a weight by up to 0.04; Adam's
# normalisation turns float32 rounding in near-zero gradients into differences up to ~3e-5.
WEIGHTS_ATOL = 1e-4
SETTINGS = [
    "--model=tiny-voxtral", "--lora-r=8", "--task=speech_translation", "--steps=4",
    "--batch-size=2", "--group-size=4", "--max-new-tokens=8", "--eval-interval=2",
    "--eval-examples=4", "--learning-rate=0.01", "--lr-schedule=constant", "--no-progress",
    "--no-plot",
    "--no-tensorboard", "--sft-warmup-steps=0", "--beta=0.02", "--no-eval-greedy",
    "--eval-metric=reward",
]  # fmt: skip
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "REWARDKIT_DISABLE_PLUGIN_AUTOLOAD": "1"}
for key in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
    ENV.pop(key, None)


def free_port() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return str(sock.getsockname()[1])


def train(data: str, out: Path, *extra: str, launcher: str | None = None, settings=SETTINGS):
    """``rewardkit train`` in one process, or two under ``torchrun`` / ``deepspeed``."""
    args = ["train", *settings, "--data", data, "--output-dir", str(out), *extra]
    if launcher is None:
        cmd = [sys.executable, "-m", "rewardkit", *args]
    elif launcher == "torchrun":
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2",
               f"--master-port={free_port()}", "-m", "rewardkit", *args]  # fmt: skip
    else:
        cmd = [sys.executable, "-m", "deepspeed.launcher.runner", "--num_gpus=2",
               f"--master_port={free_port()}", "--no_local_rank", "--module", "rewardkit",
               *args]  # fmt: skip
    return subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=600)


def ok(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 0, proc.stderr[-3000:]


def metrics(out: Path, split: str = "train") -> list[dict]:
    return RunDir(out).read_metrics(split)


def weights(out: Path, step: int = 4) -> dict[str, torch.Tensor]:
    return load_file(str(out / "checkpoints" / f"step-{step:06d}" / "trainable.safetensors"))


def assert_same_run(run: Path, reference: Path, exact: bool = False, step: int = 4) -> None:
    """Equal rewards and samples; losses, KL, grad norms and weights within the tolerances."""
    a, b = metrics(run), metrics(reference)
    assert [r["step"] for r in a] == [r["step"] for r in b]
    for x, y in zip(a, b):
        assert x["reward_mean"] == y["reward_mean"] and x["num_tokens"] == y["num_tokens"]
        for key in ("loss", "kl", "grad_norm", "entropy"):
            if exact:
                assert x[key] == y[key], (key, x["step"])
            else:
                assert x[key] == pytest.approx(y[key], rel=RTOL, abs=ATOL), (key, x["step"])
    for x, y in zip(metrics(run, "validation"), metrics(reference, "validation")):
        assert x["reward_mean"] == y["reward_mean"]
    wa, wb = weights(run, step), weights(reference, step)
    assert sorted(wa) == sorted(wb)
    for name in wa:
        if exact:
            assert torch.equal(wa[name], wb[name]), name
        else:
            torch.testing.assert_close(wa[name], wb[name], rtol=0, atol=WEIGHTS_ATOL)


@pytest.fixture(scope="module")
def data(spoken_data) -> str:
    return str(spoken_data / "speech_translation")


@pytest.fixture(scope="module")
def hf_run(data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("hf") / "run"
    ok(train(data, out, "--backend=hf"))
    return out


def test_two_ranks_zero3_torchrun_match_the_hf_backend(data, hf_run, tmp_path):
    out = tmp_path / "run"
    proc = train(data, out, "--backend=deepspeed", "--zero-stage=3", launcher="torchrun")
    ok(proc)
    assert_same_run(out, hf_run)
    info = json.loads((out / "checkpoints" / "step-000004" / "backend.json").read_text())
    assert info["zero_stage"] == 3 and info["world_size"] == 2
    assert sorted(p.name for p in (out / "checkpoints" / "step-000004").glob("rng-rank*.pt")) == [
        "rng-rank0.pt",
        "rng-rank1.pt",
    ]
    assert proc.stderr.count("run written to") == 1  # rank 0 reports; the other rank is quiet


def test_two_ranks_zero3_synced_generation_match_the_hf_backend(data, hf_run, tmp_path):
    """Without gathering, ranks generate in lockstep; the 1-item validation split leaves rank 1
    without a prompt of its own (it pads with a copy and drops it)."""
    out = tmp_path / "run"
    ok(train(data, out, "--backend=deepspeed", "--zero-stage=3", "--no-gather-for-generation",
             launcher="torchrun"))  # fmt: skip
    assert_same_run(out, hf_run)


def test_single_process_zero2_matches_the_hf_backend(data, hf_run, tmp_path):
    out = tmp_path / "run"
    ok(train(data, out, "--backend=deepspeed", "--zero-stage=2"))
    assert_same_run(out, hf_run)


def test_zero3_resume_continues_exactly(data, tmp_path):
    full, part = tmp_path / "full", tmp_path / "part"
    ok(train(data, full, "--backend=deepspeed", "--zero-stage=3"))
    ok(train(data, part, "--backend=deepspeed", "--zero-stage=3", "--steps=2"))
    resumed = subprocess.run(
        [sys.executable, "-m", "rewardkit", "train", "--resume", str(part), "--steps=4"],
        env=ENV, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    ok(resumed)
    assert_same_run(part, full, exact=True)


def test_two_ranks_zero2_deepspeed_launcher_with_accumulation(data, tmp_path):
    """batch 4 over 2 ranks, 2 micro-batches each, against the hf backend at batch 4."""
    settings = [a for a in SETTINGS if not a.startswith(("--batch-size", "--steps"))]
    settings += ["--batch-size=4", "--steps=2", "--eval-interval=0"]
    ref, out = tmp_path / "hf", tmp_path / "ds"
    ok(train(data, ref, "--backend=hf", settings=settings))
    ok(train(data, out, "--backend=deepspeed", "--zero-stage=2", "--grad-accum=2",
             launcher="deepspeed", settings=settings))  # fmt: skip
    a, b = metrics(out), metrics(ref)
    for x, y in zip(a, b):
        assert x["reward_mean"] == y["reward_mean"]
        for key in ("loss", "grad_norm"):
            assert x[key] == pytest.approx(y[key], rel=RTOL, abs=ATOL)
    wa, wb = weights(out, 2), weights(ref, 2)
    for name in wa:
        torch.testing.assert_close(wa[name], wb[name], rtol=0, atol=WEIGHTS_ATOL)


def test_checkpoints_load_into_the_hf_backend_and_eval(data, tmp_path, hf_run, registry):
    from click.testing import CliRunner

    from rewardkit.backends.hf import HFBackend
    from rewardkit.cli import build_cli

    out = tmp_path / "run"
    ok(train(data, out, "--backend=deepspeed", "--zero-stage=3", "--steps=2"))
    checkpoint = out / "checkpoints" / "step-000002"
    backend = HFBackend.build(ModelSpec("tiny-voxtral", lora_r=8), OptimizerConfig())
    backend.load_weights(checkpoint)
    saved = load_file(str(checkpoint / "trainable.safetensors"))
    for name, param in backend._trainable:
        assert torch.equal(param.detach(), saved[name])
    result = CliRunner().invoke(
        build_cli(registry),
        ["eval", "--model", str(out), "--data", data, "--split", "dev", "--greedy",
         "--metrics", "bleu", "--limit", "4", "--output-dir", str(tmp_path / "eval")],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    results = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert results["settings"]["backend"] == "hf"


def test_invalid_deepspeed_config_key_is_one_line(data, tmp_path):
    config = tmp_path / "ds.json"
    config.write_text(json.dumps({"zero_optimization": {"stage": 2, "overlap_comms": True}}))
    proc = train(data, tmp_path / "run", "--backend=deepspeed", f"--deepspeed-config={config}")
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert "'zero_optimization.overlap_comms'" in last and "Traceback" not in proc.stderr


# --- without a process group -----------------------------------------------------------------


def config(extra: dict, **optimizer) -> dict:
    from rewardkit.backends.deepspeed import deepspeed_config

    spec = ModelSpec("tiny-voxtral", extra=extra)
    return deepspeed_config(spec, OptimizerConfig(**optimizer), world_size=2, hidden_size=64)


def test_auto_values_are_filled_from_the_run(tmp_path):
    path = tmp_path / "ds.json"
    path.write_text(json.dumps({
        "train_batch_size": "auto", "gradient_clipping": "auto", "bf16": {"enabled": "auto"},
        "optimizer": {"type": "AdamW", "params": {"lr": "auto", "weight_decay": "auto"}},
        "zero_optimization": {"stage": 3, "reduce_bucket_size": "auto"},
    }))  # fmt: skip
    extra = {"deepspeed_config": str(path), "prompts_per_rank": 4}
    out = config(extra, learning_rate=3e-4, max_grad_norm=0.5, grad_accum_steps=2)
    assert out["train_micro_batch_size_per_gpu"] == 2 and out["gradient_accumulation_steps"] == 2
    assert out["train_batch_size"] == 2 * 2 * 2  # micro x accumulation x world
    assert out["gradient_clipping"] == 0.5 and out["bf16"] == {"enabled": False}
    assert out["optimizer"]["params"] == {"lr": 3e-4, "weight_decay": 0.0}
    assert out["zero_optimization"] == {  # buckets from the hidden size (64) unless given
        "stage": 3,
        "reduce_bucket_size": 64 * 64,
        "stage3_prefetch_bucket_size": int(0.9 * 64 * 64),
        "stage3_param_persistence_threshold": 10 * 64,
        "stage3_max_live_parameters": 16 * 64 * 64,  # ZeRO-3's step peak
        "stage3_max_reuse_distance": 16 * 64 * 64,
        "sub_group_size": 8 * 64 * 64,
    }
    # run settings override the file
    assert config({**extra, "zero_stage": 1})["zero_optimization"]["stage"] == 1


@pytest.mark.parametrize(
    ("content", "extra", "message"),
    [
        ('{"zero_optimization": {"stage": 2,}}', {}, "is not valid JSON: Expecting"),
        ('{"zero_optimization": {"allgather_bucket_size": "auto"}}', {},
         "cannot fill 'zero_optimization.allgather_bucket_size'"),
        ("[1, 2]", {}, "must hold a JSON object"),
        ("{}", {"offload_params": True, "zero_stage": 2}, "parameter offload needs ZeRO stage 3"),
        ("{}", {"offload_optimizer": True, "zero_stage": 0}, "optimizer offload needs ZeRO"),
        ('{"zero_optimization": {"stage": 5}}', {}, "'zero_optimization.stage' must be"),
    ],
)  # fmt: skip
def test_bad_deepspeed_configs(tmp_path, content, extra, message):
    path = tmp_path / "ds.json"
    path.write_text(content)
    with pytest.raises(RewardkitError, match=message.replace("(", r"\(")) as info:
        config({"deepspeed_config": str(path), **extra})
    assert "\n" not in str(info.value)


def test_incomplete_launcher_environment(monkeypatch):
    from rewardkit.distributed import launcher_environment

    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    for key in ("LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(RewardkitError, match="LOCAL_RANK, MASTER_ADDR, MASTER_PORT missing"):
        launcher_environment()


def launched(monkeypatch, world: int) -> None:
    env = {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": str(world), "MASTER_ADDR": "127.0.0.1",
           "MASTER_PORT": "29999"}  # fmt: skip
    for key, value in env.items():
        monkeypatch.setenv(key, value)


def test_world_size_must_divide_the_batch(monkeypatch, data, registry):
    from rewardkit.train import build_trainer, make_config

    launched(monkeypatch, world=4)
    cfg = make_config({"backend": "deepspeed", "data": data, "batch_size": 6, "steps": 1})
    with pytest.raises(RewardkitError, match="--batch-size 6 is not divisible by the world size 4"):
        build_trainer(cfg, registry)


def test_hf_backend_refuses_several_ranks(monkeypatch, data, registry):
    from rewardkit.train import build_trainer, make_config

    launched(monkeypatch, world=2)
    cfg = make_config({"backend": "hf", "data": data, "batch_size": 2, "lora_r": 4})
    with pytest.raises(RewardkitError, match="use --backend deepspeed for multi-process"):
        build_trainer(cfg, registry)


def test_deepspeed_options_need_the_deepspeed_backend():
    from rewardkit.train import make_config

    with pytest.raises(RewardkitError, match="need --backend deepspeed"):
        make_config({"backend": "hf", "zero_stage": 3})


def test_errors_name_the_failing_rank(monkeypatch, registry):
    from click.testing import CliRunner

    from rewardkit.cli import build_cli

    launched(monkeypatch, world=2)
    monkeypatch.setenv("RANK", "1")
    result = CliRunner().invoke(build_cli(registry), ["train", "--group-size", "1"])
    assert result.exit_code == 2
    assert result.output.strip() == "Error: rank 1: --group-size must be >= 2, got 1"
