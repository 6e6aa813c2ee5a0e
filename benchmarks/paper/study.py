"""The paper's comparison and its reward ablation, on the pretrained speech LM.

The study is a list of named cells, each one ``rewardkit`` command (``train``, ``model export``,
``eval`` or ``bench``) with its full argument list; ``--list`` prints them with their status and
``--run PATTERN...`` runs the cells whose names match (fnmatch), in order, each after the cells
it needs:

* ``TASK/common/sft`` + ``TASK/common/export``: the common SFT stage (below) and its merged model,
  the start of every arm;
* ``TASK/sweep/{sft,grpo}-lrLR``: short runs, seed 0, one per learning rate; the arm's lr is the
  one with the best mean dev BLEU over the second half of its validations;
* ``TASK/main/sft-seedS``, ``TASK/main/grpo-bleu-seedS`` (3 seeds each) and
  ``TASK/main/mpgrpo-bleu-seed0`` (``--off-policy reference``): same data order (the seed),
  steps, batch of prompts and schedule; each arm at its own swept lr; model selection: the best
  greedy dev-BLEU checkpoint (``--eval-metric bleu``);
* ``qa/ablation/grpo-REWARD-seed0``: GRPO on spoken QA with chrF, ROUGE-L, METEOR, BERTScore and
  a weighted mix as the reward (BLEU is ``qa/main/grpo-bleu-seed0``), at GRPO's swept lr, the
  best checkpoint by the run's own reward on dev; ``qa/bench/rewards``: ``rewardkit bench`` of
  the same rewards on the spoken-QA dev references;
* ``TASK/eval/MODEL-test-{greedy,sampled}``: ``rewardkit eval`` on the test split, greedy and
  sampled (T 0.9, top-p 0.9, N runs), BLEU, chrF, ROUGE-L, METEOR, BERTScore (COMET for
  translation in the gpu preset: its model is not available on the CPU build machine).

A completed cell is skipped; a train cell that was interrupted continues with
``rewardkit train --resume`` (from its last checkpoint, saved at every validation); an
interrupted eval or bench starts again. Two ``--run`` processes may share one EXP: each cell is
locked while it runs. ``--collect`` writes ``benchmarks/results/paper/summary.json`` from the run
directories (configs, validation curves, step costs, eval results, paired bootstrap intervals
of GRPO and MP-GRPO minus SFT and of MP-GRPO minus GRPO, recomputed from the evals' per-item
generations, the bench's ranking and its Spearman correlation with the trained ranking, with
that correlation's interval over resampled test items); ``--render`` writes ``tables.md`` and
the dev curve plots from that file alone, so no number is typed by hand.

**Scales.** ``--scale cpu`` is sized from step costs measured on the 2-core build machine (one
thread; README "From `model assemble` to a GRPO run"): a GRPO step of 4 prompts x G = 8, 32 new
tokens, LoRA r 8 costs about 15 s on translation and about 42 s on spoken QA from the aligned
start (less once completions are short answers), an SFT step of 4 items ~1-2 s (measured:
``benchmarks/results/paper/summary.json``, ``step_costs``). ``--scale gpu`` is the paper's
sizes (G = 8, 200 new tokens, the full test split, more steps and evaluation items, COMET for
translation); the commands are otherwise the same. ``--scale tiny`` is the test's.

**Why a common SFT stage.** The aligned start (Whisper tiny.en + SmolLM2-135M after the ASR
stage) answers no question and writes no German: zero-shot dev BLEU 0.19 (QA) and 0.16
(translation), a mean sentence-BLEU reward of 0.003-0.011 on QA samples. GRPO then compares
groups of near-zero rewards and learns from noise, while SFT gets the full signal of the
references from step one; that would compare a warm SFT with a cold GRPO, not the paper's
setting (its Granite-Speech already does both tasks before GRPO). So every arm starts from the
same short SFT stage on each task (``TASK/common/sft``: seed 0, batch 8, lr 5e-4 constant, LoRA
r 8, then merged by ``model export`` from its best dev-BLEU checkpoint); the arms differ only in
what comes after. What 80 steps (640 items) give on this machine (``tables.md``, "Common SFT
stage", dev BLEU on 32 items every 20 steps): on spoken QA the answer format is learned within
20-40 steps (BLEU 0.2 -> 13, answers of ~4 tokens, mean sentence-BLEU reward ~0.4: GRPO's groups
now have signal); on translation the model learns to write German-looking sentences but not to
translate (0.5 -> 0.7, reward ~0.04), so at the cpu scale translation's GRPO still starts from
near-noise rewards: a longer common stage (the gpu preset's 500 steps x 8) is what translation
needs, and the cpu study's translation comparison is read with that in mind.

Run on the build machine (``OMP_NUM_THREADS=1``; at most two processes)::

    python benchmarks/paper/study.py --exp EXP --start models/ws-aligned --data-root data \\
        --scale cpu --run 'st/*'          # first call records start, data and scale in EXP
    python benchmarks/paper/study.py --exp EXP --list
    python benchmarks/paper/study.py --exp EXP --run 'st/main/grpo-bleu-seed1'   # one cell
    python benchmarks/paper/study.py --exp EXP --collect --render
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fnmatch
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bootstrap import (  # noqa: E402
    item_stats,
    mean_ranks,
    paired_bootstrap,
    rank_bootstrap,
    ranks,
    sentence_stats,
)

RESULTS = HERE.parent / "results" / "paper"
TASKS = {"st": "speech_translation", "qa": "spoken_qa"}
TASK_LABELS = {"st": "speech translation (En→De)", "qa": "spoken QA"}
EVAL_METRICS = ("BLEU", "chrF", "ROUGE-L", "METEOR", "BERTScore-F1", "COMET")


@dataclass(frozen=True)
class Scale:
    """Every size the study uses; the cpu and gpu presets differ only here."""

    tasks: tuple[str, ...] = ("st", "qa")
    group_size: int = 8
    max_new_tokens: int = 32
    batch_size: int = 4  # prompts per step, the same for SFT and GRPO
    lora_r: int = 8
    temperature: float = 1.0  # GRPO sampling, the paper's
    common_steps: dict = field(default_factory=lambda: {"st": 80, "qa": 80})
    common_batch: int = 8
    common_lr: float = 5e-4
    sweep_steps: dict = field(default_factory=lambda: {"st": 30, "qa": 16})
    main_steps: dict = field(default_factory=lambda: {"st": 60, "qa": 32})
    eval_interval: dict = field(default_factory=lambda: {"st": 15, "qa": 8})
    eval_examples: int = 32
    sft_lrs: tuple[float, ...] = (1e-4, 3e-4, 1e-3)
    grpo_lrs: tuple[float, ...] = (3e-5, 1e-4, 3e-4)
    seeds: tuple[int, ...] = (0, 1, 2)
    mp_seeds: tuple[int, ...] = (0,)
    ablation: tuple[tuple[str, str], ...] = (
        ("chrf", "chrf"),
        ("rougel", "rougel"),
        ("meteor", "meteor"),
        ("bertscore", "bertscore"),
        ("mix", "bleu=0.5,meteor=0.25,bertscore=0.25"),
    )
    ablation_sampled: bool = False  # ablation models: greedy test eval only (cpu budget)
    test_limit: int | None = 200
    sampled_runs: int = 3
    metrics: dict = field(
        default_factory=lambda: {
            "st": "bleu,chrf,rougel,meteor,bertscore",
            "qa": "bleu,chrf,rougel,meteor,bertscore",
        }
    )
    bench_items: int = 120
    bench_split: str = "dev"
    bootstrap: int = 1000
    extra_train: tuple[str, ...] = ("--no-tensorboard",)


SCALES: dict[str, Scale] = {
    "cpu": Scale(),
    "gpu": Scale(
        max_new_tokens=200,
        batch_size=8,
        common_steps={"st": 500, "qa": 500},
        sweep_steps={"st": 200, "qa": 200},
        main_steps={"st": 1000, "qa": 1000},
        eval_interval={"st": 100, "qa": 100},
        eval_examples=400,
        ablation_sampled=True,
        test_limit=None,
        sampled_runs=5,
        metrics={
            "st": "bleu,chrf,rougel,meteor,bertscore,comet",
            "qa": "bleu,chrf,rougel,meteor,bertscore",
        },
        bench_items=400,
        extra_train=("--device", "cuda", "--bf16"),
    ),
    "tiny": Scale(
        group_size=2,
        max_new_tokens=4,
        batch_size=2,
        lora_r=4,
        common_steps={"st": 2, "qa": 2},
        common_batch=2,
        sweep_steps={"st": 2, "qa": 2},
        main_steps={"st": 2, "qa": 2},
        eval_interval={"st": 1, "qa": 1},
        eval_examples=2,
        sft_lrs=(1e-3, 1e-2),
        grpo_lrs=(1e-3,),
        seeds=(0, 1),
        ablation=(("chrf", "chrf"), ("mix", "bleu=0.5,chrf=0.5")),
        test_limit=None,
        sampled_runs=2,
        metrics={"st": "bleu,chrf,rougel", "qa": "bleu,chrf,rougel"},
        bench_items=6,
        bench_split="train",
        bootstrap=50,
        extra_train=("--no-tensorboard", "--no-plot"),
    ),
}


@dataclass
class Cell:
    name: str
    kind: str  # train | export | eval | bench
    out: Path
    args: list[str] | None  # the rewardkit argv; None while a choice it needs is pending
    needs: tuple[str, ...] = ()
    note: str = ""
    prepare: Callable[[], None] | None = None  # writes an input file the command reads


# ---------------------------------------------------------------------------------------------
# the study's settings, kept in EXP/study.json


def load_settings(exp: Path, start: str | None, data_root: str | None, scale: str | None) -> dict:
    path = exp / "study.json"
    saved = json.loads(path.read_text()) if path.is_file() else {}
    given = {"start": start, "data_root": data_root, "scale": scale}
    for key, value in given.items():
        if value is not None and key in saved and saved[key] != value:
            raise SystemExit(f"{exp} was started with {key}={saved[key]!r}, not {value!r}")
    settings = {**{k: v for k, v in given.items() if v is not None}, **saved}
    missing = [k for k in ("start", "data_root", "scale") if k not in settings]
    if missing:
        raise SystemExit(f"{exp} has no study.json yet: give --{missing[0].replace('_', '-')}")
    if not path.is_file():
        exp.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(settings, indent=1) + "\n")
    return settings


# ---------------------------------------------------------------------------------------------
# cell status


def _run_status(out: Path) -> str | None:
    try:
        return json.loads((out / "run.json").read_text())["status"]
    except (OSError, ValueError, KeyError):
        return None


def is_done(cell: Cell) -> bool:
    if cell.kind == "train":
        return _run_status(cell.out) == "completed"
    if cell.kind == "export":
        return (cell.out / "config.json").is_file() and (cell.out / ".study-done").is_file()
    return (cell.out / "results.json").is_file()


def validation(out: Path) -> list[dict]:
    rows = []
    for line in (out / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        if row.get("split") == "validation":
            rows.append(row)
    return rows


def second_half_mean(rows: list[dict], key: str = "bleu") -> float:
    last = rows[-1]["step"]
    half = [r[key] for r in rows if r["step"] >= last / 2 and r["step"] > 0]
    return sum(half) / len(half)


def chosen_lr(exp: Path, task: str, arm: str, scale: Scale) -> tuple[float | None, dict]:
    """The sweep's lr with the best mean dev BLEU over the second half of its validations."""
    lrs = scale.sft_lrs if arm == "sft" else scale.grpo_lrs
    scores = {}
    for lr in lrs:
        out = exp / task / "sweep" / f"{arm}-lr{lr:g}"
        if _run_status(out) != "completed":
            return None, scores
        scores[f"{lr:g}"] = second_half_mean(validation(out))
    best = max(scores, key=lambda k: scores[k])
    return float(best), scores


# ---------------------------------------------------------------------------------------------
# the cells


def build_cells(exp: Path, settings: dict) -> list[Cell]:
    scale = SCALES[settings["scale"]]
    cells: list[Cell] = []
    for t in scale.tasks:
        task = TASKS[t]
        data = str(Path(settings["data_root"]) / task)
        common_run, common_model = exp / t / "common" / "sft", exp / t / "common" / "model"
        start = str(common_model)

        def train_args(
            out,
            *,
            algo,
            lr,
            steps,
            seed,
            reward="bleu",
            eval_metric="bleu",
            t=t,
            data=data,
            start=start,
        ):
            args = ["train", "--algo", algo, "--task", TASKS[t], "--data", data]
            args += ["--model", start, "--lora-r", str(scale.lora_r)]
            args += ["--batch-size", str(scale.batch_size), "--group-size", str(scale.group_size)]
            args += ["--max-new-tokens", str(scale.max_new_tokens)]
            args += ["--temperature", f"{scale.temperature:g}", "--reward", reward]
            args += ["--learning-rate", f"{lr:g}", "--lr-schedule", "cosine"]
            args += ["--warmup-steps", str(max(1, steps // 10)), "--steps", str(steps)]
            interval = str(scale.eval_interval[t])
            args += ["--eval-interval", interval, "--save-interval", interval, "--keep-last", "1"]
            args += ["--eval-examples", str(scale.eval_examples), "--eval-greedy"]
            args += ["--eval-metric", eval_metric, "--seed", str(seed)]
            return [*args, *scale.extra_train, "--output-dir", str(out)]

        common = ["train", "--algo", "sft", "--task", task, "--data", data]
        common += ["--model", settings["start"], "--lora-r", str(scale.lora_r)]
        common += ["--batch-size", str(scale.common_batch), "--max-new-tokens"]
        common += [str(scale.max_new_tokens), "--learning-rate", f"{scale.common_lr:g}"]
        common += ["--lr-schedule", "constant", "--steps", str(scale.common_steps[t])]
        interval = str(max(1, scale.common_steps[t] // 4))
        common += ["--eval-interval", interval, "--save-interval", interval, "--keep-last", "1"]
        common += ["--eval-examples", str(scale.eval_examples), "--eval-greedy"]
        common += ["--eval-metric", "bleu", "--seed", "0", *scale.extra_train]
        cells.append(
            Cell(f"{t}/common/sft", "train", common_run, [*common, "--output-dir", str(common_run)])
        )
        cells.append(
            Cell(
                f"{t}/common/export",
                "export",
                common_model,
                ["model", "export", str(common_run), "--out", str(common_model)],
                needs=(f"{t}/common/sft",),
            )
        )
        base = (f"{t}/common/export",)

        for arm, lrs in (("sft", scale.sft_lrs), ("grpo", scale.grpo_lrs)):
            for lr in lrs:
                out = exp / t / "sweep" / f"{arm}-lr{lr:g}"
                args = train_args(out, algo=arm, lr=lr, steps=scale.sweep_steps[t], seed=0)
                cells.append(Cell(f"{t}/sweep/{arm}-lr{lr:g}", "train", out, args, needs=base))

        lr = {arm: chosen_lr(exp, t, arm, scale)[0] for arm in ("sft", "grpo")}
        sweep = {
            arm: tuple(c.name for c in cells if c.name.startswith(f"{t}/sweep/{arm}-"))
            for arm in ("sft", "grpo")
        }
        main = [("sft", "sft", s, "none") for s in scale.seeds]
        main += [("grpo-bleu", "grpo", s, "none") for s in scale.seeds]
        main += [("mpgrpo-bleu", "grpo", s, "reference") for s in scale.mp_seeds]
        models: list[tuple[str, str, str]] = [("start", start, "")]  # (name, path, needs)
        for label, algo, seed, off in main:
            name, out = f"{label}-seed{seed}", exp / t / "main" / f"{label}-seed{seed}"
            swept = "sft" if algo == "sft" else "grpo"
            args = None
            if lr[swept] is not None:
                args = train_args(
                    out, algo=algo, lr=lr[swept], steps=scale.main_steps[t], seed=seed
                )
                args[-2:-2] = ["--off-policy", off] if off != "none" else []
            cells.append(
                Cell(
                    f"{t}/main/{name}",
                    "train",
                    out,
                    args,
                    needs=(*base, *sweep[swept]),
                    note="" if args else f"lr: after {t}/sweep/{swept}-*",
                )
            )
            models.append((name, str(out), f"{t}/main/{name}"))
        if t == "qa":
            for label, spec in scale.ablation:
                name, out = f"grpo-{label}-seed0", exp / t / "ablation" / f"grpo-{label}-seed0"
                args = None
                if lr["grpo"] is not None:
                    args = train_args(
                        out,
                        algo="grpo",
                        lr=lr["grpo"],
                        steps=scale.main_steps[t],
                        seed=0,
                        reward=spec,
                        eval_metric="reward",
                    )
                cells.append(
                    Cell(
                        f"{t}/ablation/{name}",
                        "train",
                        out,
                        args,
                        needs=(*base, *sweep["grpo"]),
                        note="" if args else f"lr: after {t}/sweep/grpo-*",
                    )
                )
                models.append((name, str(out), f"{t}/ablation/{name}"))
            bench_data = exp / t / "bench" / "items.jsonl"
            bench = [
                "bench",
                *(x for _, spec in (("bleu", "bleu"), *scale.ablation) for x in ("-r", spec)),
            ]
            bench += ["--data", str(bench_data), "-g", str(scale.group_size)]
            bench += ["--sections", "discrimination,ladders,probes,agreement"]
            bench_out = exp / t / "bench" / "rewards"
            cells.append(
                Cell(
                    f"{t}/bench/rewards",
                    "bench",
                    bench_out,
                    [*bench, "-o", str(bench_out)],
                    prepare=lambda d=data, p=bench_data: _bench_items(d, p, scale),
                )
            )

        for name, path, need in models:
            ablation_model = name.startswith("grpo-") and not name.startswith("grpo-bleu")
            modes = ["greedy"]
            if not ablation_model or scale.ablation_sampled:
                modes.append("sampled")
            for mode in modes:
                out = exp / t / "eval" / f"{name}-test-{mode}"
                args = ["eval", "--model", path, "--task", task, "--data", data]
                args += ["--split", "test", "--max-new-tokens", str(scale.max_new_tokens)]
                args += ["--metrics", scale.metrics[t], "--seed", "0"]
                args += ["--limit", str(scale.test_limit)] if scale.test_limit else []
                args += ["--greedy"] if mode == "greedy" else ["--runs", str(scale.sampled_runs)]
                if "--device" in scale.extra_train:
                    args += ["--device", "cuda"]
                cells.append(
                    Cell(
                        f"{t}/eval/{name}-test-{mode}",
                        "eval",
                        out,
                        [*args, "-o", str(out)],
                        needs=(need or base[0],),
                    )
                )
    return cells


def _bench_items(data: str, path: Path, scale: Scale) -> None:
    """The spoken-QA dev references (tiny: train) and their passages (the source) as bench
    items."""
    rows = []
    with open(Path(data) / f"{scale.bench_split}.jsonl") as f:
        for line in f:
            item = json.loads(line)
            reference = item.get("reference", item.get("answer"))
            if isinstance(reference, list):
                reference = reference[0]
            rows.append(
                {
                    "id": item.get("id", str(len(rows))),
                    "reference": reference,
                    "source": item.get("transcript", item.get("source", "")),
                    "lang": "en",
                }
            )
            if len(rows) == scale.bench_items:
                break
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


# ---------------------------------------------------------------------------------------------
# running


def _alive(pid: int) -> bool:
    """Whether ``pid`` is a live study process (a lock left by a process that died with its
    session names a pid that a later, unrelated process may have been given)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        return b"study" in Path(f"/proc/{pid}/cmdline").read_bytes() or pid == os.getpid()
    except OSError:
        return True  # no /proc: trust the signal check


@contextlib.contextmanager
def cell_lock(exp: Path, cell: Cell):
    """Yields True when this process holds the cell's lock (a dead holder's lock is taken)."""
    locks = exp / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    path = locks / (cell.name.replace("/", "__") + ".lock")
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                pid = int(path.read_text() or 0)
            except (OSError, ValueError):
                pid = 0
            if pid and _alive(pid):
                yield False
                return
            path.unlink(missing_ok=True)
            continue
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        try:
            yield True
        finally:
            path.unlink(missing_ok=True)
        return
    yield False


def _locked(exp: Path, cell: Cell | str) -> bool:
    name = cell if isinstance(cell, str) else cell.name
    lock = exp / "locks" / (name.replace("/", "__") + ".lock")
    try:
        return _alive(int(lock.read_text()))
    except (OSError, ValueError):
        return False


def status(exp: Path, cell: Cell, done: set[str]) -> str:
    if cell.name in done:
        return "done"
    if _locked(exp, cell):
        return "running"
    if cell.out.exists():
        return "partial"
    if cell.args is None or any(n not in done for n in cell.needs):
        return "waiting"
    return "ready"


def _rewardkit(argv: list[str], log: Path, in_process: bool) -> int:
    log.parent.mkdir(parents=True, exist_ok=True)
    if in_process:  # the test's way: the same argv through rewardkit's CLI, in this process
        from rewardkit.cli import main

        with log.open("w") as out, contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            try:
                main(argv)
            except SystemExit as exc:
                return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        return 0
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    with log.open("a") as out:
        return subprocess.run(["rewardkit", *argv], stdout=out, stderr=out, env=env).returncode


def run_cell(exp: Path, cell: Cell, in_process: bool = False) -> bool:
    argv = list(cell.args or [])
    if cell.kind == "train" and cell.out.exists():
        if any((cell.out / "checkpoints").glob("step-*")):
            argv = ["train", "--resume", str(cell.out)]
        else:  # started but nothing saved yet: start again
            shutil.rmtree(cell.out)
    elif cell.kind in ("eval", "bench", "export") and cell.out.exists():
        shutil.rmtree(cell.out)  # an interrupted evaluation starts again
    if cell.prepare:
        cell.prepare()
    if cell.kind in ("train", "eval"):
        argv.append("--no-progress")
    path = exp / "records" / (cell.name.replace("/", "__") + ".jsonl")
    path.parent.mkdir(exist_ok=True)

    def note(**record) -> None:  # one line when the command starts, one when it ends
        with path.open("a") as f:
            f.write(json.dumps({"cell": cell.name, **record}) + "\n")

    note(argv=argv, started=time.time(), load_start=os.getloadavg()[0],
         threads=os.environ.get("OMP_NUM_THREADS"))  # fmt: skip
    print(
        f"[{time.strftime('%H:%M:%S')}] {cell.name}: rewardkit {' '.join(argv)}",
        file=sys.stderr,
        flush=True,
    )
    rc = _rewardkit(argv, exp / "logs" / (cell.name.replace("/", "__") + ".log"), in_process)
    if rc == 0 and cell.kind == "export":
        (cell.out / ".study-done").write_text("")
    note(finished=time.time(), load_end=os.getloadavg()[0], rc=rc)
    if rc != 0:
        print(f"{cell.name}: failed (exit {rc}), see {exp}/logs", file=sys.stderr, flush=True)
    return rc == 0


def run(exp: Path, settings: dict, patterns: list[str], in_process: bool = False) -> int:
    failed: set[str] = set()
    while True:  # the cells are rebuilt after each one: a finished sweep fixes the main lr
        cells = build_cells(exp, settings)
        done = {c.name for c in cells if is_done(c)}
        wanted = [c for c in cells if any(fnmatch.fnmatch(c.name, p) for p in patterns)]
        todo = [c for c in wanted if c.name not in done and c.name not in failed]
        ready = [c for c in todo if c.args is not None and all(n in done for n in c.needs)]
        started = False
        for cell in ready:
            with cell_lock(exp, cell) as mine:
                if not mine or is_done(cell):
                    continue
                if not run_cell(exp, cell, in_process):
                    failed.add(cell.name)
                started = True
                break
        if not started and any(
            _locked(exp, c) or any(_locked(exp, n) for n in c.needs)
            for c in todo
            if c.args is not None or c.needs
        ):
            time.sleep(30)  # another --run process holds a cell this one waits for
            continue
        if not started:
            left = [c.name for c in todo]
            if left:
                print(
                    f"not run here (waiting, failed or running elsewhere): {', '.join(left)}",
                    file=sys.stderr,
                )
            return 1 if failed else 0


# Seconds per step and per generated evaluation item, one thread on the 2-core build machine,
# before anything is measured in EXP (README: GRPO 4 prompts x G = 8, 32 new tokens, LoRA r 8;
# SFT and evaluation from the ASR stage and the aligned start's evaluation); measured values in
# EXP replace them.
GUESS_STEP = {"st/grpo": 15.0, "qa/grpo": 42.0, "st/sft": 7.0, "qa/sft": 14.0,
              "st/sft-common": 14.0, "qa/sft-common": 27.0}  # fmt: skip
GUESS_ITEM = {"st": 1.5, "qa": 1.7}


def _kind(cell_name: str, algo: str) -> str:
    t = cell_name.split("/")[0]
    return f"{t}/sft-common" if "/common/" in cell_name else f"{t}/{algo}"


def measured_costs(exp: Path, cells: list[Cell]) -> tuple[dict, dict]:
    """Median step time per task/stage and seconds per generated eval item per task, from
    whatever EXP holds (finished or not), over the guesses."""
    steps: dict[str, list[float]] = {}
    items: dict[str, list[float]] = {}
    for cell in cells:
        if cell.kind == "train" and (cell.out / "metrics.jsonl").is_file():
            algo = json.loads((cell.out / "config.json").read_text())["algo"]
            rows = [json.loads(x) for x in (cell.out / "metrics.jsonl").read_text().splitlines()]
            times = [r["step_time"] for r in rows if r.get("split") == "train" and "step_time" in r]
            steps.setdefault(_kind(cell.name, algo), []).extend(times[1:])
        if cell.kind == "eval" and (cell.out / "results.json").is_file():
            data = json.loads((cell.out / "results.json").read_text())
            n = data["settings"]["num_examples"] * data["settings"]["runs"]
            if data.get("generation_seconds"):
                items.setdefault(cell.name.split("/")[0], []).append(data["generation_seconds"] / n)
    step = {**GUESS_STEP, **{k: _median(v) for k, v in steps.items() if v}}
    item = {**GUESS_ITEM, **{k: _median(v) for k, v in items.items() if v}}
    return step, item


def estimate(cell: Cell, scale: Scale, step: dict, item: dict) -> float:
    """Seconds of one thread this cell still needs (0 when done)."""
    if is_done(cell):
        return 0.0
    t = cell.name.split("/")[0]
    if cell.kind == "export":
        return 30.0
    if cell.kind == "bench":
        return 300.0
    if cell.kind == "eval":
        runs = 1 if cell.name.endswith("-greedy") else scale.sampled_runs
        return (scale.test_limit or 400) * runs * item[t]
    common = "/common/" in cell.name
    algo = "sft" if (common or cell.name.split("/")[-1].startswith("sft")) else "grpo"
    steps = (
        scale.common_steps
        if common
        else scale.sweep_steps
        if "/sweep/" in cell.name
        else scale.main_steps
    )[t]
    interval = max(1, steps // 4) if common else scale.eval_interval[t]
    done_steps = 0
    if (cell.out / "metrics.jsonl").is_file():
        rows = (cell.out / "metrics.jsonl").read_text().splitlines()
        done_steps = sum(1 for x in rows if '"split": "train"' in x)
    left = max(0, steps - done_steps)
    evals = left // interval + (1 if done_steps == 0 else 0)
    return left * step[_kind(cell.name, algo)] + evals * scale.eval_examples * item[t]


def list_cells(exp: Path, settings: dict, verbose: bool = False) -> str:
    cells = build_cells(exp, settings)
    scale = SCALES[settings["scale"]]
    done = {c.name for c in cells if is_done(c)}
    step, item = measured_costs(exp, cells)
    lines, total = [], 0.0
    states = []
    for cell in cells:
        state = status(exp, cell, done)
        states.append(state)
        left = estimate(cell, scale, step, item)
        total += left
        cost = f"{left / 60:6.0f} min" if left else " " * 10
        lines.append(f"{state:8} {cost} {cell.name}" + (f"  ({cell.note})" if cell.note else ""))
        if verbose and cell.args:
            lines.append("         rewardkit " + " ".join(cell.args))
    counts = {s: states.count(s) for s in ("done", "running", "partial", "ready", "waiting")}
    lines.append(" ".join(f"{k}: {v}" for k, v in counts.items()))
    lines.append(
        f"left: about {total / 3600:.1f} CPU hours (one thread per cell; seconds per "
        "step: "
        + ", ".join(f"{k} {v:.1f}" for k, v in sorted(step.items()))
        + "; per eval item: "
        + ", ".join(f"{k} {v:.2f}" for k, v in item.items())
        + ")"
    )
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# collect: everything the tables and plots need, from the run directories


def _median(values: list[float]) -> float | None:
    values = sorted(values)
    return values[len(values) // 2] if values else None


def _train_summary(out: Path) -> dict:
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in rows if r.get("split") == "train"]
    timed = train[1:] if len(train) > 1 else train  # step 1 pays for warm-up
    keys = ("step_time", "time_generate", "time_logprob", "time_train")
    costs = {k: _median([r[k] for r in timed if k in r]) for k in keys}
    lengths = [r["completion_length_mean"] for r in train if "completion_length_mean" in r]
    rewards = [r["reward_mean"] for r in train if "reward_mean" in r]
    config = json.loads((out / "config.json").read_text())
    info = json.loads((out / "run.json").read_text())
    best = None
    with contextlib.suppress(OSError, ValueError, KeyError):
        index = json.loads((out / "checkpoints" / "index.json").read_text())
        best = int(str(index["best"]).rsplit("-", 1)[-1])
    return {
        "config": config,
        "status": info.get("status"),
        "started": info.get("started"),
        "finished": info.get("finished"),
        "resumes": len(info.get("resumes", [])),
        "validation": [r for r in rows if r.get("split") == "validation"],
        "steps": len(train),
        "step_costs_median_s": costs,
        "completion_length_first": sum(lengths[:5]) / max(1, len(lengths[:5])),
        "completion_length_last": sum(lengths[-5:]) / max(1, len(lengths[-5:])),
        "reward_first": sum(rewards[:5]) / max(1, len(rewards[:5])) if rewards else None,
        "reward_last": sum(rewards[-5:]) / max(1, len(rewards[-5:])) if rewards else None,
        "best_step": best,
    }


def _records(exp: Path, name: str) -> list[dict]:
    path = exp / "records" / (name.replace("/", "__") + ".jsonl")
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def _generations(out: Path) -> tuple[list[list[str]], list[list[str]], list[str]]:
    """Per run, the hypotheses in item order; the references; the item ids."""
    items = [json.loads(line) for line in (out / "generations.jsonl").read_text().splitlines()]
    runs = len(items[0]["hypotheses"])
    hyps = [[item["hypotheses"][k] for item in items] for k in range(runs)]
    return hyps, [item["references"] for item in items], [item["id"] for item in items]


def bootstrap_arms(
    exp: Path, t: str, a: list[str], b: list[str], mode: str, metric: str, resamples: int
) -> dict | None:
    """Paired bootstrap of arm a minus arm b (lists of model names, e.g. the seeds) on the test
    evals of ``mode``: every seed's (and sampled run's) generations form one list of the arm.
    Only the seeds evaluated so far count (the result names them); None while an arm has none."""

    def evaluated(names: list[str]) -> list[str]:  # the seeds evaluated so far
        return [n for n in names if (exp / t / "eval" / f"{n}-test-{mode}/results.json").is_file()]

    a, b = evaluated(a), evaluated(b)
    if not a or not b:
        return None
    lists: dict[str, list] = {"a": [], "b": []}
    ids = None
    score = None
    for key, names in (("a", a), ("b", b)):
        for name in names:
            out = exp / t / "eval" / f"{name}-test-{mode}"
            hyps, refs, these = _generations(out)
            if ids is not None and these != ids:
                raise ValueError(f"{out}: other test items than the first eval's")
            ids = these
            for run_hyps in hyps:
                stats, score = item_stats(metric, run_hyps, refs)
                lists[key].append(stats)
    result = paired_bootstrap(lists["a"], lists["b"], score, resamples=resamples)
    return {**result, "a": a, "b": b, "mode": mode, "metric": metric}


def _item_metrics(out: Path, metrics: list[str]) -> dict:
    """Per-item statistics of an eval's first run for each metric (``bootstrap.item_stats`` for
    BLEU and chrF; the sentence scores of ROUGE-L, METEOR and BERTScore, from the same rewards
    that ``rewardkit eval`` averaged, cached in ``item_scores.json`` beside the eval). Each is
    checked against the eval's own score."""
    from rewardkit.evaluate import DISPLAY, sentence_scores
    from rewardkit.registry import load_registry

    items = [json.loads(line) for line in (out / "generations.jsonl").read_text().splitlines()]
    hyps = [item["hypotheses"][0] for item in items]
    refs = [item["references"] for item in items]
    reported = json.loads((out / "results.json").read_text())["runs"][0]["metrics"]
    cache_path = out / "item_scores.json"
    cache = json.loads(cache_path.read_text()) if cache_path.is_file() else {}
    spec = {label: name for name, label in DISPLAY.items()}
    result = {}
    for metric in metrics:
        if metric in ("BLEU", "chrF"):
            result[metric] = item_stats(metric, hyps, refs)
        else:
            if metric not in cache:
                reward = load_registry().build_reward(spec[metric])
                sources = [item.get("source") for item in items]
                cache[metric] = [float(v) for v in sentence_scores(reward, hyps, refs, sources)]
                tmp = cache_path.with_suffix(".tmp")
                tmp.write_text(json.dumps(cache) + "\n")
                tmp.replace(cache_path)
            result[metric] = sentence_stats(cache[metric])
        stats, score = result[metric]
        mine, theirs = score(stats.sum(axis=0)), reported[metric]
        if abs(mine - theirs) > 1e-6 * max(1.0, abs(theirs)):
            raise ValueError(f"{out}: {metric} from the items is {mine}, the eval says {theirs}")
    return result


def _bench_ranking(results: dict, names: list[tuple[str, str]]) -> dict:
    """Per reward: the bench's three criteria (all-tie share of groups, mean monotonicity rho,
    mean share of probes that outscore a near-perfect answer; lower is better for each) and
    their mean rank (1 = best)."""
    rows = {}
    for label, spec in names:
        mono = [v for v in results["monotonicity"][spec].values() if v is not None]
        probes = [v["outscores_good"] for v in results["probes"][spec].values()]
        rows[label] = {
            "tie_share": results["discrimination"][spec]["all_tie_share"],
            "mean_spread": results["discrimination"][spec]["mean_spread"],
            "monotonicity": sum(mono) / len(mono),
            "hacking": sum(probes) / len(probes),
        }
    for key in ("tie_share", "monotonicity", "hacking"):
        for label, r in ranks({k: v[key] for k, v in rows.items()}).items():
            rows[label][f"rank_{key}"] = r
    for row in rows.values():
        row["bench_score"] = (
            row["rank_tie_share"] + row["rank_monotonicity"] + row["rank_hacking"]
        ) / 3
    for label, r in ranks({k: v["bench_score"] for k, v in rows.items()}).items():
        rows[label]["bench_rank"] = r
    return rows


def collect(exp: Path, settings: dict, results: Path = RESULTS) -> dict:
    from scipy.stats import spearmanr

    scale = SCALES[settings["scale"]]
    cells = build_cells(exp, settings)
    summary: dict = {
        "scale": settings["scale"],
        "sizes": dataclasses.asdict(scale),
        "start": settings["start"],
        "data_root": settings["data_root"],
        "runs": {},
        "evals": {},
        "cells": {},
        "sweeps": {},
        "bootstrap": {},
        "ablation": {},
    }
    for cell in cells:
        if cell.args is not None:
            summary["cells"][cell.name] = {
                "kind": cell.kind,
                "done": is_done(cell),
                "command": "rewardkit " + " ".join(cell.args),
                "records": _records(exp, cell.name),
            }
        if not is_done(cell):
            continue
        if cell.kind == "train":
            summary["runs"][cell.name] = _train_summary(cell.out)
        elif cell.kind == "eval":
            data = json.loads((cell.out / "results.json").read_text())
            summary["evals"][cell.name] = {
                "settings": data["settings"],
                "metrics": data["metrics"],
                "generation_seconds": data.get("generation_seconds"),
            }
    for t in scale.tasks:
        for arm in ("sft", "grpo"):
            lr, scores = chosen_lr(exp, t, arm, scale)
            summary["sweeps"][f"{t}/{arm}"] = {"chosen_lr": lr, "second_half_dev_bleu": scores}
        seeds = {
            "sft": [f"sft-seed{s}" for s in scale.seeds],
            "grpo-bleu": [f"grpo-bleu-seed{s}" for s in scale.seeds],
            "mpgrpo-bleu": [f"mpgrpo-bleu-seed{s}" for s in scale.mp_seeds],
        }
        # the paper's claims: GRPO beats SFT; MP-GRPO beats GRPO on translation, not on QA
        for a, b in (("grpo-bleu", "sft"), ("mpgrpo-bleu", "sft"), ("mpgrpo-bleu", "grpo-bleu")):
            for mode in ("greedy", "sampled"):
                for metric in ("BLEU", "chrF"):
                    got = bootstrap_arms(exp, t, seeds[a], seeds[b], mode, metric, scale.bootstrap)
                    if got is not None:
                        summary["bootstrap"][f"{t}/{a}-minus-{b}/{mode}/{metric}"] = got
    summary["step_costs"] = _step_costs(exp, cells)
    if "qa" in scale.tasks:
        summary["ablation"] = _ablation(exp, scale, summary, spearmanr)
    results.mkdir(parents=True, exist_ok=True)
    (results / "summary.json").write_text(json.dumps(summary, indent=1, default=str) + "\n")
    return summary


def _step_costs(exp: Path, cells: list[Cell]) -> dict:
    """Median seconds per training step per task and stage over every step logged in EXP
    (finished runs or not; a run's first step, which pays for warm-up, left out), with the
    load average at the starts of those cells (the machine is shared)."""
    groups: dict[str, dict] = {}
    for cell in cells:
        if cell.kind != "train" or not (cell.out / "metrics.jsonl").is_file():
            continue
        algo = json.loads((cell.out / "config.json").read_text())["algo"]
        rows = [json.loads(x) for x in (cell.out / "metrics.jsonl").read_text().splitlines()]
        train = [r for r in rows if r.get("split") == "train" and "step_time" in r][1:]
        group = groups.setdefault(
            _kind(cell.name, algo), {"times": [], "generate": [], "runs": 0, "load": []}
        )
        group["times"] += [r["step_time"] for r in train]
        group["generate"] += [r["time_generate"] for r in train if "time_generate" in r]
        group["runs"] += 1
        group["load"] += [r["load_start"] for r in _records(exp, cell.name) if "load_start" in r]
    return {
        k: {
            "median_s": _median(g["times"]),
            "median_generate_s": _median(g["generate"]),
            "steps": len(g["times"]),
            "runs": g["runs"],
            "load_average_at_start": sum(g["load"]) / len(g["load"]) if g["load"] else None,
        }
        for k, g in sorted(groups.items())
    }


def _ablation(exp: Path, scale: Scale, summary: dict, spearmanr) -> dict:
    rewards = [("bleu", "bleu"), *scale.ablation]
    trained: dict[str, dict] = {}
    for label, _ in rewards:
        ev = summary["evals"].get(f"qa/eval/grpo-{label}-seed0-test-greedy")
        if ev:
            trained[label] = {m: v["mean"] for m, v in ev["metrics"].items()}
    out: dict = {"rewards": dict(rewards), "trained": trained}
    bench_out = exp / "qa" / "bench" / "rewards" / "results.json"
    if bench_out.is_file():
        out["bench"] = _bench_ranking(json.loads(bench_out.read_text()), rewards)
    complete = [label for label, _ in rewards if label in trained]
    if complete and len(complete) == len(rewards):
        metrics = [m for m in EVAL_METRICS if all(m in trained[k] for k in complete)]
        mean = mean_ranks({k: {m: trained[k][m] for m in metrics} for k in complete})
        order = ranks(mean)
        for k in complete:
            trained[k]["trained_rank_score"] = mean[k]
            trained[k]["trained_rank"] = order[k]
        if "bench" in out:
            rho, p = spearmanr(
                [out["bench"][k]["bench_rank"] for k in complete],
                [trained[k]["trained_rank"] for k in complete],
            )
            out["spearman"] = {
                "rho": float(rho),
                "p": float(p),
                "n": len(complete),
                "trained_by": "mean rank over " + ", ".join(metrics),
            }
            items = {
                k: _item_metrics(exp / "qa" / "eval" / f"grpo-{k}-seed0-test-greedy", metrics)
                for k in complete
            }
            bench_ranks = {k: out["bench"][k]["bench_rank"] for k in complete}
            out["spearman"]["bootstrap"] = rank_bootstrap(items, bench_ranks, scale.bootstrap)
    return out


# ---------------------------------------------------------------------------------------------
# render: tables and plots from summary.json alone


def _fmt(value, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _seed_mean(summary: dict, t: str, names: list[str], mode: str, metric: str):
    values = []
    for name in names:  # the seeds evaluated so far; n says how many
        ev = summary["evals"].get(f"{t}/eval/{name}-test-{mode}")
        if ev is not None and metric in ev["metrics"]:
            values.append(ev["metrics"][metric]["mean"])
    if not values:
        return None
    mean = sum(values) / len(values)
    std = (
        (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5
        if len(values) > 1
        else 0.0
    )
    return mean, std, len(values)


def _table(title: str, columns: list[str], align: str) -> list[str]:
    """The lines that open a Markdown table: a blank line, its title, a blank line, the header
    and its rule (``align``: one letter per column, ``l`` left or ``r`` right)."""
    rule = "|" + "".join({"l": "---|", "r": "---:|"}[a] for a in align)
    return ["", title, "", "| " + " | ".join(columns) + " |", rule]


def render(results: Path = RESULTS) -> str:
    summary = json.loads((results / "summary.json").read_text())
    sizes = summary["sizes"]
    lines = [
        f"Scale `{summary['scale']}`: G = {sizes['group_size']}, "
        f"{sizes['max_new_tokens']} new tokens, {sizes['batch_size']} prompts per step, "
        f"LoRA r {sizes['lora_r']}, GRPO temperature {sizes['temperature']:g}.",
    ]
    lines += _table(
        "Median seconds per training step (one thread on the shared 2-core machine; every "
        "step logged, finished runs or not; `step_costs`):",
        ["task", "stage", "median s/step", "of which generation", "steps", "runs", "load avg"],
        "llrrrrr",
    )
    for key, cost in summary["step_costs"].items():
        t, algo = key.split("/")
        lines.append(
            f"| {t} | {algo} | {_fmt(cost['median_s'], 1)} | "
            f"{_fmt(cost['median_generate_s'], 1)} | {cost['steps']} | {cost['runs']} | "
            f"{_fmt(cost['load_average_at_start'], 1)} |"
        )
    lines += [
        "",
        f"Common SFT stage (dev BLEU, greedy, {sizes['eval_examples']} items, by step):",
        "",
    ]
    for t in sizes["tasks"]:
        run = summary["runs"].get(f"{t}/common/sft")
        if run:
            curve = ", ".join(f"{r['step']}: {r['bleu']:.2f}" for r in run["validation"])
            lines.append(f"* {t}: {curve}")
    lines += _table(
        "Learning-rate sweeps (mean dev BLEU over the second half of the validations; seed 0):",
        ["task", "arm", "lr", "dev BLEU", "chosen"],
        "llrrl",
    )
    for key, sweep in summary["sweeps"].items():
        t, arm = key.split("/")
        for lr, score in sweep["second_half_dev_bleu"].items():
            chosen = "yes" if sweep["chosen_lr"] == float(lr) else ""
            lines.append(f"| {t} | {arm} | {lr} | {score:.2f} | {chosen} |")
    seeds, mp = sizes["seeds"], sizes["mp_seeds"]
    arms = [
        ("start (common SFT)", ["start"]),
        ("SFT", [f"sft-seed{s}" for s in seeds]),
        ("GRPO, BLEU reward", [f"grpo-bleu-seed{s}" for s in seeds]),
        ("MP-GRPO, BLEU reward", [f"mpgrpo-bleu-seed{s}" for s in mp]),
    ]
    limit = sizes["test_limit"]
    for t in sizes["tasks"]:
        for mode in ("greedy", "sampled"):
            how = (
                "greedy"
                if mode == "greedy"
                else f"sampled T 0.9, top-p 0.9, {sizes['sampled_runs']} runs"
            )
            items = f"first {limit}" if limit else "all"
            lines += _table(
                f"{TASK_LABELS[t]}, test split ({items} items), {how}; "
                "mean over seeds ± std between seeds (n):",
                ["arm", *EVAL_METRICS[:5]],
                "l" + "r" * 5,
            )
            for label, names in arms:
                cells = []
                for metric in EVAL_METRICS[:5]:
                    got = _seed_mean(summary, t, names, mode, metric)
                    if got is None:
                        cells.append("-")
                    elif got[2] == 1:
                        cells.append(f"{got[0]:.2f} (1)")
                    else:
                        cells.append(f"{got[0]:.2f} ± {got[1]:.2f} ({got[2]})")
                lines.append(f"| {label} | " + " | ".join(cells) + " |")
    boot = summary["bootstrap"]
    if boot:
        lines += _table(
            "Paired bootstrap over test items, 95% interval of the difference "
            "(corpus score recomputed on each resample; mean over seeds and runs):",
            ["task", "comparison", "seeds", "decoding", "metric", "difference", "95% interval"],
            "llrllrl",
        )
        for key, b in boot.items():
            t, comp, mode, metric = key.split("/")
            comp = comp.replace("-bleu", "").replace("-minus-", " − ")  # grpo-bleu-minus-sft
            seeds = f"{len(b['a'])} vs {len(b['b'])}"
            lines.append(
                f"| {t} | {comp} | {seeds} | {mode} | {metric} | {b['difference']:+.2f} | "
                f"[{b['low']:+.2f}, {b['high']:+.2f}] |"
            )
    abl = summary.get("ablation") or {}
    if abl.get("trained") or abl.get("bench"):
        bench = ["bench ties", "bench monotonicity", "bench hacking", "bench rank"]
        lines += _table(
            "Reward ablation on spoken QA (GRPO seed 0, test greedy) and what "
            "`rewardkit bench` says of each reward on the QA dev references:",
            ["reward", *EVAL_METRICS[:5], "trained rank", *bench],
            "l" + "r" * 10,
        )
        for label in abl["rewards"]:
            tr = abl["trained"].get(label, {})
            be = (abl.get("bench") or {}).get(label, {})
            cells = [_fmt(tr.get(m)) for m in EVAL_METRICS[:5]]
            cells += [
                _fmt(tr.get("trained_rank"), 1),
                _fmt(be.get("tie_share")),
                _fmt(be.get("monotonicity")),
                _fmt(be.get("hacking")),
                _fmt(be.get("bench_rank"), 1),
            ]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        if "spearman" in abl:
            s = abl["spearman"]
            lines += [
                "",
                f"Spearman rank correlation, bench rank vs trained rank: "
                f"{s['rho']:+.2f} (p {s['p']:.2f}, n = {s['n']}).",
            ]
            if "bootstrap" in s:
                b = s["bootstrap"]
                lines[-1] += (
                    f" Resampling the {b['items']} test items ({b['resamples']} times, the "
                    f"trained ranking recomputed each time): {b['level']:.0%} interval of rho "
                    f"[{b['low']:+.2f}, {b['high']:+.2f}]; the trained ranking's first "
                    f"({b['top']}) stays first in {b['top_share']:.0%} of the resamples."
                )
    done = sum(1 for c in summary["cells"].values() if c["done"])
    lines += ["", f"Cells completed: {done} of {len(summary['cells'])} with a command."]
    text = "\n".join(lines) + "\n"
    (results / "tables.md").write_text(text)
    _plots(summary, results)
    return text


def _plots(summary: dict, results: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for t in summary["sizes"]["tasks"]:
        for part, key, label in (
            ("main", "bleu", "dev BLEU (greedy)"),
            ("sweep", "bleu", "dev BLEU (greedy)"),
            ("ablation", "reward_mean", "dev reward of the run's own reward (greedy)"),
        ):
            group = {k: v for k, v in summary["runs"].items() if k.startswith(f"{t}/{part}/")}
            if not group:
                continue
            fig, ax = plt.subplots(figsize=(7, 4))
            for name, run in sorted(group.items()):
                rows = [r for r in run["validation"] if key in r]
                ax.plot(
                    [r["step"] for r in rows],
                    [r[key] for r in rows],
                    marker=".",
                    label=name.split("/", 2)[2],
                )
            ax.set_xlabel("step")
            ax.set_ylabel(label)
            ax.set_title(f"{TASK_LABELS[t]}: dev curves ({part})")
            ax.legend(fontsize=7)
            fig.tight_layout()
            fig.savefig(results / f"{t}-{part}-dev-curves.png", dpi=100)
            plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exp", type=Path, default=Path("runs/paper"))
    parser.add_argument("--start", help="the aligned model (first call only)")
    parser.add_argument("--data-root", help="folder with speech_translation/, spoken_qa/")
    parser.add_argument("--scale", choices=sorted(SCALES))
    parser.add_argument("--run", nargs="+", metavar="CELL_PATTERN")
    parser.add_argument("--list", action="store_true")
    parser.add_argument("--commands", action="store_true", help="with --list: each command")
    parser.add_argument("--collect", action="store_true")
    parser.add_argument("--render", action="store_true")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--in-process", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    rc = 0
    if args.run or args.list or args.collect:
        settings = load_settings(args.exp, args.start, args.data_root, args.scale)
        if args.run:
            rc = run(args.exp, settings, args.run, args.in_process)
        if args.list:
            print(list_cells(args.exp, settings, args.commands))
        if args.collect:
            collect(args.exp, settings, args.results)
    if args.render:
        print(render(args.results), end="")
    return rc


if __name__ == "__main__":
    sys.exit(main())
