"""The deepspeed backend at the paper's scale, on CPU (gloo): full fine-tuning with the KL term
under ZeRO-3 (the reference policy as its own ZeRO-3 inference engine) against the hf backend,
exact resume, the same job as two nodes of one process on loopback, rewards sharded over ranks,
the one-line errors of this setting, and the GPU benchmark script's CPU dry run.

Runs are subprocesses (see test_deepspeed.py for the harness and the tolerances); three steps,
so the policy has moved from the reference and the KL term is not zero.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from test_deepspeed import ENV, SETTINGS, assert_same_run, free_port, metrics, ok

from rewardkit.distributed import Distributed, same_on_every_rank, score_on_ranks
from rewardkit.errors import RewardkitError
from rewardkit.rewards import Group

STEPS = 3
FULL = [a for a in SETTINGS if not a.startswith(("--lora-r", "--steps"))]
FULL += ["--lora-r=0", f"--steps={STEPS}"]  # full fine-tuning, beta = 0.02 (SETTINGS)
ZERO3 = ["--backend=deepspeed", "--zero-stage=3"]


def train(data: str, out: Path, *extra: str, nproc: int = 1) -> subprocess.CompletedProcess:
    args = ["-m", "rewardkit", "train", *FULL, "--data", data, "--output-dir", str(out), *extra]
    if nproc > 1:
        args = ["-m", "torch.distributed.run", f"--nproc-per-node={nproc}",
                f"--master-port={free_port()}", *args]  # fmt: skip
    return subprocess.run([sys.executable, *args], env=ENV, capture_output=True, text=True,
                          timeout=600)  # fmt: skip


@pytest.fixture(scope="module")
def data(spoken_data) -> str:
    return str(spoken_data / "speech_translation")


@pytest.fixture(scope="module")
def hf_full(data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("hf-full") / "run"
    ok(train(data, out, "--backend=hf"))
    return out


@pytest.fixture(scope="module")
def zero3_full(data, tmp_path_factory) -> Path:
    """Full fine-tuning with beta 0.02 under ZeRO-3, two processes on one node."""
    out = tmp_path_factory.mktemp("zero3-full") / "run"
    ok(train(data, out, *ZERO3, nproc=2))
    return out


def test_zero3_full_fine_tuning_with_kl_matches_the_hf_backend(zero3_full, hf_full):
    assert_same_run(zero3_full, hf_full, step=STEPS)
    assert metrics(zero3_full)[-1]["kl"] > 0  # the reference engine is not the policy
    info = json.loads(
        (zero3_full / "checkpoints" / f"step-{STEPS:06d}" / "backend.json").read_text()
    )
    assert info["zero_stage"] == 3 and info["world_size"] == 2


def test_zero3_with_gradient_checkpointing_matches_too(data, hf_full, tmp_path):
    """The memory setting of benchmarks/results/zero3_step_memory (ZeRO-3's step peak 0.57x
    ZeRO-0's) leaves the results as they were."""
    out = tmp_path / "run"
    ok(train(data, out, *ZERO3, "--gradient-checkpointing", nproc=2))
    assert_same_run(out, hf_full, step=STEPS)


def test_zero3_full_fine_tuning_resumes_exactly(data, zero3_full, tmp_path):
    part = tmp_path / "part"
    ok(train(data, part, *ZERO3, "--steps=2", nproc=2))
    resumed = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2",
         f"--master-port={free_port()}", "-m", "rewardkit", "train", "--resume", str(part),
         f"--steps={STEPS}"],
        env=ENV, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    ok(resumed)
    assert_same_run(part, zero3_full, exact=True, step=STEPS)


def test_two_nodes_on_loopback_equal_two_processes_on_one_node(data, zero3_full, tmp_path):
    """torchrun --nnodes 2 (one process each) with a c10d rendezvous on 127.0.0.1: the job of
    two machines, run on one."""
    out, port = tmp_path / "run", free_port()
    args = ["train", *FULL, "--data", data, "--output-dir", str(out), *ZERO3]

    def node(rank: int) -> list[str]:
        return [sys.executable, "-m", "torch.distributed.run", "--nnodes=2",
                "--nproc-per-node=1", f"--node-rank={rank}", "--rdzv-backend=c10d",
                f"--rdzv-endpoint=127.0.0.1:{port}", "--rdzv-id=rewardkit-two-nodes",
                "-m", "rewardkit", *args]  # fmt: skip

    pipe = subprocess.PIPE
    nodes = [
        subprocess.Popen(node(r), env=ENV, stdout=pipe, stderr=pipe, text=True) for r in (0, 1)
    ]
    results = [node.communicate(timeout=600) for node in nodes]
    for node, (_, stderr) in zip(nodes, results):
        assert node.returncode == 0, stderr[-3000:]
    assert_same_run(out, zero3_full, exact=True, step=STEPS)
    info = json.loads((out / "checkpoints" / f"step-{STEPS:06d}" / "backend.json").read_text())
    assert info["world_size"] == 2


# --- rewards sharded over ranks (no process group: each rank simulated in turn) ---------------


class Counting:
    """BLEU with a combined-reward's components and a diagnostic; counts the groups it scores."""

    def __init__(self) -> None:
        from rewardkit.rewards import RewardOutput

        self.scored = 0
        self.output = RewardOutput

    def __call__(self, groups):
        import sacrebleu

        self.scored += len(groups)
        bleu = sacrebleu.metrics.BLEU(effective_order=True)
        scores = [[bleu.sentence_score(c, list(g.references)).score / 100 for c in g.completions]
                  for g in groups]  # fmt: skip
        lengths = [[float(len(c)) for c in g.completions] for g in groups]
        total = sum(len(g.completions) for g in groups)
        unique = sum(len(set(g.completions)) for g in groups) / total
        return self.output(scores, {"bleu": scores, "length": lengths}, {"unique_fraction": unique})


class Rank(Distributed):
    """Rank ``rank`` of ``world``; ``all_gather`` returns ``shares`` (each rank's value) once
    every rank's value is known, and records this rank's."""

    def __init__(self, rank: int, world: int, shares: dict[int, object]) -> None:
        self.rank, self.world_size, self.shares = rank, world, shares

    def all_gather(self, value):
        self.shares[self.rank] = value
        return [self.shares.get(r, value) for r in range(self.world_size)]


def groups(n: int = 6) -> list[Group]:
    refs = ["the cat sat on the mat", "a dog runs in the park", "it is raining today"]
    return [Group(references=(refs[i % 3],), source=None,
                  completions=["the cat sat", refs[i % 3], "", "the cat sat", f"word {i}"])
            for i in range(n)]  # fmt: skip


@pytest.mark.parametrize("world", [2, 3])
def test_sharded_rewards_equal_the_whole_steps(world):
    whole = Counting()(groups())
    shares: dict[int, object] = {}
    rewards = [Counting() for _ in range(world)]
    for rank in range(world):  # first pass: each rank's share
        score_on_ranks(rewards[rank], groups(), Rank(rank, world, shares))
    outputs = [score_on_ranks(Counting(), groups(), Rank(r, world, shares)) for r in range(world)]
    assert [r.scored for r in rewards] == [6 // world] * world  # each rank scored its share only
    for out in outputs:  # every rank holds every score
        assert out.scores == whole.scores and out.components == whole.components
        assert out.diagnostics == pytest.approx(whole.diagnostics, rel=1e-12)


def test_one_process_scores_directly():
    reward = Counting()
    assert score_on_ranks(reward, groups()).scores == Counting()(groups()).scores
    assert reward.scored == 6


def test_ranks_with_different_data_or_options_are_one_line_errors():
    shares = {1: {"--seed": 0, "the train split of --data": "9b1c0e7f2a11"}}
    mine = {"--seed": 0, "the train split of --data": "3f2a9d0c51b4"}
    with pytest.raises(RewardkitError) as info:
        same_on_every_rank(Rank(0, 2, shares), mine)
    assert str(info.value) == (
        "ranks disagree on the train split of --data: rank 0 has '3f2a9d0c51b4', rank 1 has "
        "'9b1c0e7f2a11'; start every rank with the same command and data"
    )
    same_on_every_rank(Rank(0, 2, {1: dict(mine)}), mine)  # the same: fine


def test_a_config_that_cannot_hold_the_reference_engine(tmp_path):
    from rewardkit.backends.deepspeed import reference_config

    nvme = {
        "zero_optimization": {
            "stage": 3,
            "offload_param": {"device": "nvme", "nvme_path": str(tmp_path)},
        }
    }
    with pytest.raises(RewardkitError, match=r"'zero_optimization.offload_param.device': nvme"):
        reference_config(nvme, "ds.json")
    cpu = {"optimizer": {"type": "AdamW"}, "scheduler": {"type": "WarmupLR"},
           "zero_optimization": {"stage": 3, "offload_param": {"device": "cpu"},
                                 "offload_optimizer": {"device": "cpu"}}}  # fmt: skip
    ref = reference_config(cpu, "ds.json")
    assert "optimizer" not in ref and "scheduler" not in ref
    assert ref["zero_optimization"] == {"stage": 3, "offload_param": {"device": "cpu"}}


def test_the_gpu_script_dry_run(tmp_path):
    """benchmarks/gpu_zero3.py's CPU path (tiny Granite-Speech, ZeRO-3 bf16, beta 0.02): the
    prepared GPU benchmark runs end to end and writes its report."""
    script = Path(__file__).parents[2] / "benchmarks" / "gpu_zero3.py"
    out = tmp_path / "gpu_zero3.json"
    ok(subprocess.run([sys.executable, str(script), "--tiny", "--device", "cpu", "--out", str(out)],
                      env=ENV, capture_output=True, text=True, timeout=600))  # fmt: skip
    report = json.loads(out.read_text())
    assert report["gpu"] == "none (CPU dry run)" and report["settings"]["bf16"]
    assert report["step_seconds"] > 0 and report["generation_tokens_per_s"] > 0
    assert report["steps_rank0"][0]["kl"] >= 0 and report["phase_seconds"]["reference"] > 0
