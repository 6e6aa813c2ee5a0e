"""``rewardkit data make``: voice the template text data sets with eSpeak NG, offline.

Two tasks, each with train/dev/test splits (``size`` / ``size // 10`` / ``size // 10`` items):

* ``speech_translation``: an English sentence spoken -> its German reference translation;
* ``spoken_qa``: a short English passage spoken -> a text question about it -> a short answer
  (as in LibriSQA: the passage is audio, the question is text).

Layout (read by the task adapters; keep it stable)::

    OUT/manifest.json                         settings, sizes, durations, versions
    OUT/README.md
    OUT/speech_translation/{train,dev,test}.jsonl
    OUT/speech_translation/audio/{split}/{id}.wav
    OUT/spoken_qa/{train,dev,test}.jsonl
    OUT/spoken_qa/audio/{split}/{id}.wav

Audio is 16 kHz mono 16-bit PCM wav; a manifest's ``audio`` path is relative to its folder. Each
item gets an accent, a voice variant, a speed and a pitch drawn from a hash of (seed, item id),
so the same seed gives byte-identical files whatever the worker count or order.

Nothing is lost, nothing is half-written. A task whose folder is complete (manifest.json records
the same settings and every file exists) is reused; only the missing tasks are built, in
``OUT.tmp-*``, and each task folder is renamed into OUT, so OUT never holds a half-written set
and a second ``--task`` into the same OUT keeps the first. An OUT that holds a set of other
settings (size, seed, generator or eSpeak NG version) is replaced only with ``force``.
Concurrent builders each build in their own temporary folder; the installing step runs under a
lock on OUT, and a task that another builder installed meanwhile is kept (ours is discarded).

The cache (no ``--out``; what ``rewardkit train`` and ``eval`` use): one folder per (task,
size, seed, settings), side by side under :func:`default_out`, e.g.
``speech_data/speech_translation-2000-seed0-1a2b3c4d/speech_translation``. A folder there is
never replaced or deleted once complete (``--force`` excepted), so a run reading one is never
disturbed by another run or another ``data make``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import multiprocessing
import os
import random
import secrets
import shutil
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click

from rewardkit.errors import RewardkitError

__all__ = [
    "DEFAULT_SIZE",
    "GENERATOR",
    "GENERATOR_VERSION",
    "SAMPLE_RATE",
    "TASKS",
    "data_group",
    "default_out",
    "make_datasets",
]

GENERATOR = "rewardkit data make"
GENERATOR_VERSION = 1  # bump whenever the output for the same settings changes
DEFAULT_SIZE = 2000
MIN_SIZE = 10
SAMPLE_RATE = 16000
#: --task value -> folder name
TASKS = {"st": "speech_translation", "qa": "spoken_qa"}
SPLITS = ("train", "dev", "test")

#: eSpeak NG accents x voice variants ("" = the accent's own voice), speeds (wpm) and pitch.
ACCENTS = ("en-us", "en", "en-GB-x-rp", "en-GB-scotland", "en-US-nyc", "en-029")
VARIANTS = ("", "f1", "f2", "f3", "f4", "f5", "m1", "m2", "m3", "m4", "m5", "m6", "m7")
SPEEDS = (140, 190)
PITCHES = (30, 70)

Progress = Callable[[int, int], None]  # (done, total) utterances
Job = tuple[str, str, str, int, int]  # (wav path, text, voice, speed, pitch)


def default_out() -> Path:
    """Where ``rewardkit data make`` writes by default: ``<rewardkit cache>/speech_data``."""
    from rewardkit.wheels import cache_dir

    return cache_dir() / "speech_data"


def split_sizes(size: int) -> dict[str, int]:
    """Items per split for a train size: ``{"train": size, "dev": size // 10, "test": ...}``."""
    return {"train": size, "dev": size // 10, "test": size // 10}


# ---------------------------------------------------------------------------------------------
# Items


def _voice(seed: int, item_id: str) -> tuple[str, int, int]:
    """(voice, speed, pitch) for one item, from a hash of the seed and its id."""
    digest = hashlib.sha256(f"rewardkit.speech|{seed}|{item_id}".encode()).digest()
    r = random.Random(int.from_bytes(digest[:8], "big"))
    accent, variant = r.choice(ACCENTS), r.choice(VARIANTS)
    voice = f"{accent}+{variant}" if variant else accent
    return voice, r.randint(*SPEEDS), r.randint(*PITCHES)


def _rows(task: str, split: str, n: int, seed: int) -> list[dict[str, Any]]:
    """Manifest rows without duration; ``_text`` holds what is spoken."""
    from rewardkit import textdata

    rows: list[dict[str, Any]] = []
    if task == "speech_translation":
        for pair in textdata.translation_pairs(n, seed, split):
            voice, speed, pitch = _voice(seed, pair.id)
            rows.append(
                {
                    "id": pair.id,
                    "audio": f"audio/{split}/{pair.id}.wav",
                    "transcript": pair.source,
                    "translation": pair.reference,
                    "src_lang": "en",
                    "tgt_lang": "de",
                    "voice": voice,
                    "speed": speed,
                    "pitch": pitch,
                    "_text": pair.source,
                }
            )
    else:
        for item in textdata.qa_items(n, seed, split):
            voice, speed, pitch = _voice(seed, item.id)
            rows.append(
                {
                    "id": item.id,
                    "audio": f"audio/{split}/{item.id}.wav",
                    "question": item.question,
                    "answer": item.answer,
                    "transcript": item.passage,
                    "voice": voice,
                    "speed": speed,
                    "pitch": pitch,
                    "_text": item.passage,
                }
            )
    return rows


# ---------------------------------------------------------------------------------------------
# Workers: synthesise, resample to 16 kHz, write one wav


_FILTERS: dict[tuple[int, int], Any] = {}


def _render(text: str, voice: str, speed: int, pitch: int) -> Any:
    """int16 samples at 16 kHz."""
    from math import gcd

    import numpy as np
    from scipy.signal import firwin, resample_poly

    from rewardkit.speech import espeak

    engine = espeak.default()
    audio = engine.synthesize(text, voice, speed, pitch)
    g = gcd(SAMPLE_RATE, engine.sample_rate)
    up, down = SAMPLE_RATE // g, engine.sample_rate // g
    if (up, down) not in _FILTERS:  # resample_poly's own default filter, designed once
        _FILTERS[up, down] = firwin(20 * max(up, down) + 1, 1 / max(up, down), window=("kaiser", 5))
    audio = resample_poly(audio, up, down, window=_FILTERS[up, down])
    return np.clip(np.rint(audio * 32768), -32768, 32767).astype(np.int16)


def _speak(job: tuple[int, Job]) -> tuple[int, int]:
    """(job index, samples written)."""
    import soundfile

    index, (path, text, voice, speed, pitch) = job
    audio = _render(text, voice, speed, pitch)
    soundfile.write(path, audio, SAMPLE_RATE, subtype="PCM_16", format="WAV")
    return index, len(audio)


def _worker_init() -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and cleans up


def _synthesise(jobs: list[Job], workers: int, progress: Progress | None) -> list[int]:
    """Samples per job, in job order."""
    samples = [0] * len(jobs)
    total = len(jobs)
    if workers <= 1:
        if progress:
            progress(0, total)
        for done, job in enumerate(enumerate(jobs), 1):
            index, n = _speak(job)
            samples[index] = n
            if progress:
                progress(done, total)
        return samples
    # fork is fastest; only fork a single-threaded process (a thread holding a lock at fork time
    # can deadlock the child). The progress callback starts no thread before its first call.
    method = "fork" if sys.platform == "linux" and threading.active_count() == 1 else "spawn"
    context = multiprocessing.get_context(method)
    chunksize = max(1, min(16, total // (8 * workers)))
    with context.Pool(workers, initializer=_worker_init) as pool:
        if progress:
            progress(0, total)
        for done, (index, n) in enumerate(
            pool.imap_unordered(_speak, enumerate(jobs), chunksize), 1
        ):
            samples[index] = n
            if progress:
                progress(done, total)
    return samples


# ---------------------------------------------------------------------------------------------
# The data set


def _settings(size: int, seed: int, espeak_version: str) -> dict[str, Any]:
    return {
        "generator": GENERATOR,
        "generator_version": GENERATOR_VERSION,
        "espeak_version": espeak_version,
        "seed": seed,
        "size": size,
        "sample_rate": SAMPLE_RATE,
    }


def _read_manifest(out: Path) -> dict[str, Any] | None:
    try:
        manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


def _complete_tasks(out: Path, manifest: dict[str, Any] | None) -> list[str]:
    """The tasks of ``manifest`` whose folder in OUT is complete (every manifest line's wav)."""
    done = []
    tasks = manifest.get("tasks") if manifest else None
    for task in tasks if isinstance(tasks, dict) else {}:
        try:
            for split in SPLITS:
                path = out / task / f"{split}.jsonl"
                lines = path.read_text(encoding="utf-8").splitlines()
                if len(lines) != tasks[task]["items"][split]:
                    break
                if not all((path.parent / json.loads(line)["audio"]).is_file() for line in lines):
                    break
            else:
                done.append(task)
        except (OSError, ValueError, KeyError, TypeError):
            pass
    return done


def _same_settings(manifest: dict[str, Any] | None, settings: dict[str, Any]) -> bool:
    return manifest is not None and all(manifest.get(k) == v for k, v in settings.items())


def _check_out(out: Path, settings: dict[str, Any], force: bool) -> None:
    """Refuse to write into anything but an earlier ``rewardkit data make`` set, and to replace
    a set of other settings without ``force``."""
    if out.exists() and not out.is_dir():
        raise RewardkitError(f"--out {out} is a file; give a folder")
    if not out.is_dir() or not any(out.iterdir()):
        return
    manifest = _read_manifest(out)
    if manifest is None or manifest.get("generator") != GENERATOR:
        raise RewardkitError(
            f"--out {out} already holds files that `rewardkit data make` did not write; "
            f"give a new or empty folder"
        )
    if not force and not _same_settings(manifest, settings):
        theirs = ", ".join(
            f"{k} {manifest.get(k)}" for k in settings if manifest.get(k) != settings[k]
        )
        raise RewardkitError(
            f"--out {out} holds a set made with other settings ({theirs}); give another --out, "
            "or --force to replace it"
        )


README = "README.md"


def _remove_stale(out: Path) -> None:
    """Remove OUT.tmp-<pid>-* / OUT.old-<pid>-* left by processes that no longer run."""
    if os.name != "posix":  # os.kill(pid, 0) probes a process only on POSIX
        return
    for path in out.parent.glob(f"{out.name}.tmp-*"):
        _remove_if_orphan(path)
    for path in out.parent.glob(f"{out.name}.old-*"):
        _remove_if_orphan(path)


def _remove_if_orphan(path: Path) -> None:
    try:
        pid = int(path.name.rsplit("-", 2)[-2])
        os.kill(pid, 0)
    except ProcessLookupError:
        shutil.rmtree(path, ignore_errors=True)
    except (ValueError, IndexError, PermissionError, OSError):
        pass  # not ours to judge, or the process is alive


def _readme(manifest: dict[str, Any]) -> str:
    command = f"rewardkit data make --size {manifest['size']} --seed {manifest['seed']}"
    if len(manifest["tasks"]) == 1:
        command += " --task " + {v: k for k, v in TASKS.items()}[next(iter(manifest["tasks"]))]
    rows = []
    for task, info in manifest["tasks"].items():
        items, seconds = info["items"], info["duration_s"]
        rows.append(
            f"| {task} | {items['train']} / {items['dev']} / {items['test']} "
            f"| {sum(seconds.values()) / 3600:.2f} h |"
        )
    table = "\n".join(rows)
    return f"""# rewardkit embedded spoken data

Synthetic spoken data for rewardkit, made offline by `{command}`
(generator version {manifest["generator_version"]}).

* `speech_translation/`: an English sentence, spoken; the target is its German reference
  translation (`transcript` = English source, `translation` = German reference).
* `spoken_qa/`: a short English passage, spoken; a question about it as text; a short answer
  (as in LibriSQA). `transcript` is the passage.

| task | train / dev / test items | audio |
|---|---|---|
{table}

## How it was made

The text comes from rewardkit's templates (`rewardkit.textdata`: word lists, grammar rules for
German agreement; splits never share a sentence or passage). Each English text was spoken by
eSpeak NG {manifest["espeak_version"]} ({manifest["espeak_library"]}) with an accent
({", ".join(ACCENTS)}), a voice variant (the accent's own or one of
{", ".join(v for v in VARIANTS if v)}), a speed ({SPEEDS[0]}-{SPEEDS[1]} words per minute) and a
pitch ({PITCHES[0]}-{PITCHES[1]} on eSpeak's 0-100 scale), drawn per item from a hash of the seed
and the item id; then resampled from 22.05 kHz to 16 kHz (scipy `resample_poly`) and stored as
16-bit mono PCM wav. The same seed and eSpeak NG version give byte-identical files.

Manifests are JSON lines, one per item; `audio` is relative to the manifest's folder. Fields:
`id`, `audio`, `transcript`, `voice` (eSpeak NG voice[+variant]), `speed` (wpm), `pitch`,
`duration` (seconds); speech translation adds `translation`, `src_lang`, `tgt_lang`; spoken QA
adds `question` and `answer`.

## License

The text is generated by rewardkit (Apache-2.0). eSpeak NG and its voice data are licensed
under the GNU GPL version 3 or later (https://github.com/espeak-ng/espeak-ng); the audio here is
the program's output, which the GPL does not normally cover (see the GNU GPL FAQ on program
output). Synthetic speech: clean, robotic, no background noise; useful for tests, pipelines and
small learning experiments, not a substitute for recorded speech.
"""


def _build(
    tmp: Path,
    tasks: Sequence[str],
    size: int,
    seed: int,
    workers: int,
    progress: Progress | None,
) -> dict[str, Any]:
    """Synthesise ``tasks`` into ``tmp/<task>/``; returns each task's items and durations."""
    plan: list[tuple[str, str, list[dict[str, Any]]]] = []
    jobs: list[Job] = []
    for task in tasks:
        for split, n in split_sizes(size).items():
            rows = _rows(task, split, n, seed)
            (tmp / task / "audio" / split).mkdir(parents=True, exist_ok=True)
            for row in rows:
                path = str(tmp / task / row["audio"])
                jobs.append((path, row.pop("_text"), row["voice"], row["speed"], row["pitch"]))
            plan.append((task, split, rows))
    samples = iter(_synthesise(jobs, workers, progress))

    info: dict[str, Any] = {}
    for task, split, rows in plan:
        lines = []
        for row in rows:
            row["duration"] = round(next(samples) / SAMPLE_RATE, 3)
            lines.append(json.dumps(row, ensure_ascii=False) + "\n")
        (tmp / task / f"{split}.jsonl").write_text("".join(lines), encoding="utf-8")
        entry = info.setdefault(task, {"items": {}, "duration_s": {}})
        entry["items"][split] = len(rows)
        entry["duration_s"][split] = round(sum(row["duration"] for row in rows), 3)
    return info


def _manifest(settings: dict[str, Any], library: str, info: dict[str, Any]) -> dict[str, Any]:
    total = sum(sum(entry["duration_s"].values()) for entry in info.values())
    return {
        **settings,
        "espeak_library": library,
        "voices": {"accents": list(ACCENTS), "variants": [v for v in VARIANTS if v]},
        "speed_wpm": list(SPEEDS),
        "pitch": list(PITCHES),
        "tasks": {task: info[task] for task in TASKS.values() if task in info},
        "total_duration_s": round(total, 3),
    }


class _Locked:
    """An exclusive lock on a directory (flock on the directory itself: no lock file is made
    in the user's folder); a no-op where flock does not exist."""

    def __init__(self, path: Path) -> None:
        self.path, self.fd = path, None

    def __enter__(self) -> _Locked:
        try:
            import fcntl
        except ImportError:
            return self
        self.fd = os.open(self.path, os.O_RDONLY)
        with contextlib.suppress(OSError):  # no flock on some network mounts: go on unlocked
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.fd is not None:
            os.close(self.fd)  # releases the lock


def _install(
    staged: Path,
    out: Path,
    built: dict[str, Any],
    settings: dict[str, Any],
    library: str,
    force: bool,
) -> dict[str, Any]:
    """Move the task folders built in ``staged`` into OUT and rewrite its manifest and README,
    under OUT's lock; returns the new manifest. A task another builder installed meanwhile
    (complete, same settings) is kept unless ``force``; with other settings OUT's earlier
    tasks are dropped (``force`` only: :func:`_check_out` refused otherwise)."""
    from rewardkit.textio import fsync_dir, write_atomic

    out.mkdir(parents=True, exist_ok=True)
    with _Locked(out):
        _check_out(out, settings, force)  # again: another process may have written meanwhile
        current = _read_manifest(out)
        same = _same_settings(current, settings)
        info = {t: current["tasks"][t] for t in _complete_tasks(out, current)} if same else {}
        drop = [] if same else [t for t in TASKS.values() if (out / t).exists()]
        for task, entry in built.items():
            if task in info and not force:
                continue  # installed by another builder meanwhile: keep theirs
            if (out / task).exists() and task not in drop:
                drop.append(task)
            info[task] = entry
        for task in drop:  # renamed aside first: OUT never shows a half-deleted folder
            (out / task).rename(staged / f".old-{task}")
        for task in built:
            if (staged / task).exists() and not (out / task).exists():
                (staged / task).rename(out / task)
        manifest = _manifest(settings, library, info)
        write_atomic(out / README, _readme(manifest))
        text = json.dumps(manifest, indent=2, ensure_ascii=False) + "\n"
        write_atomic(out / "manifest.json", text)  # last: it says which tasks are complete
        fsync_dir(out)
    return manifest


def make_datasets(
    out: Path | None = None,
    size: int = DEFAULT_SIZE,
    seed: int = 0,
    progress: Progress | None = None,
    *,
    task: str = "all",
    force: bool = False,
    workers: int | None = None,
) -> dict[str, Any]:
    """Build (or reuse) the spoken data sets under ``out`` (None: the cache, one folder per
    task and settings, see the module docstring); returns manifest.json's content plus ``out``,
    ``folders`` (task -> its folder), ``cached`` (True: nothing was synthesised) and
    ``seconds``.

    ``task`` is "st", "qa" or "all"; ``workers`` defaults to the usable CPUs (at most 8);
    ``progress(done, total)`` is called as utterances finish (first after the worker processes
    have started).
    """
    from rewardkit.speech import espeak

    start = time.perf_counter()
    if size < MIN_SIZE:
        raise RewardkitError(f"--size must be at least {MIN_SIZE} (dev and test get size // 10)")
    if task not in (*TASKS, "all"):
        raise RewardkitError(f"unknown --task {task!r}; choose st, qa or all")
    tasks = list(TASKS.values()) if task == "all" else [TASKS[task]]
    if workers is None:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        workers = min(cpus or 1, 8)

    engine = espeak.default()  # fails early, with the install hint, when eSpeak NG is missing
    settings = _settings(size, seed, engine.version)
    library = engine.library.origin
    if out is None:  # the cache: each task in its own folder, side by side
        parts = [
            _make(cache_folder(t, settings), [t], settings, library, force, workers, progress)
            for t in tasks
        ]
        manifest = {**parts[0], "tasks": {k: v for p in parts for k, v in p["tasks"].items()}}
        manifest.pop("total_duration_s", None)
        folders = {t: str(cache_folder(t, settings) / t) for t in tasks}
        cached = all(p["cached"] for p in parts)
        out = default_out()
    else:
        if Path(out).is_symlink() and not Path(out).exists():
            raise RewardkitError(f"--out {out} is a dangling symbolic link; give a folder")
        out = Path(out).expanduser().resolve()
        manifest = _make(out, tasks, settings, library, force, workers, progress)
        folders = {t: str(out / t) for t in tasks}
        cached = manifest["cached"]
    seconds = time.perf_counter() - start
    return {**manifest, "out": str(out), "folders": folders, "cached": cached, "seconds": seconds}


def cache_folder(task: str, settings: dict[str, Any]) -> Path:
    """The cache's folder for one task (a folder name such as ``speech_translation``) and
    settings: ``<default_out()>/speech_translation-2000-seed0-<hash of the settings>``."""
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]
    return default_out() / f"{task}-{settings['size']}-seed{settings['seed']}-{key}"


def embedded_data(
    task: str, size: int = DEFAULT_SIZE, seed: int = 0, progress: Progress | None = None
) -> Path:
    """The folder of the embedded data set of ``task`` ("st" or "qa") in the cache, built when
    missing: what ``rewardkit train`` and ``rewardkit eval`` read without ``--data``."""
    summary = make_datasets(None, size, seed, progress, task=task)
    return Path(summary["folders"][TASKS[task]])


def _make(
    out: Path,
    tasks: list[str],
    settings: dict[str, Any],
    library: str,
    force: bool,
    workers: int,
    progress: Progress | None,
) -> dict[str, Any]:
    """Build the tasks OUT lacks (all of ``tasks`` with ``force``) and install them."""
    manifest = _read_manifest(out)
    have = _complete_tasks(out, manifest) if _same_settings(manifest, settings) else []
    todo = tasks if force else [t for t in tasks if t not in have]
    if not todo:
        return {**manifest, "cached": True}
    if out.is_dir() and not out.is_symlink():
        with _Locked(out):  # not while another builder installs
            _check_out(out, settings, force)
    else:
        _check_out(out, settings, force)

    tag = f"{os.getpid()}-{secrets.token_hex(4)}"
    tmp = out.parent / f"{out.name}.tmp-{tag}"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale(out)
        tmp.mkdir()
    except OSError as exc:
        raise RewardkitError(
            f"cannot write to {out.parent} ({exc.strerror or exc}); choose another --out"
        ) from None
    try:
        try:
            built = _build(tmp, todo, settings["size"], settings["seed"], workers, progress)
            manifest = _install(tmp, out, built, settings, library, force)
        except OSError as exc:
            from rewardkit.textio import os_error

            raise os_error(exc, out, "write the data set into") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {**manifest, "cached": False}


# ---------------------------------------------------------------------------------------------
# CLI


@click.group("data")
def data_group() -> None:
    """Embedded data sets."""


@data_group.command("make")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Output folder [default: the cache, <rewardkit cache>/speech_data/<task>-<size>-"
    "seed<seed>-<hash>, one folder per task and settings].",
)
@click.option(
    "--size",
    type=int,
    default=DEFAULT_SIZE,
    show_default=True,
    help="Train items per task; dev and test get size // 10 each.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Text and voice seed.")
@click.option(
    "--task",
    type=click.Choice(["st", "qa", "all"]),
    default="all",
    show_default=True,
    help="Speech translation, spoken QA, or both.",
)
@click.option(
    "--force",
    is_flag=True,
    help="Rebuild even if OUT already holds this set, or replace a set of other settings.",
)
@click.option(
    "-j",
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="Worker processes [default: the usable CPUs, at most 8].",
)
def make_command(
    out: Path | None, size: int, seed: int, task: str, force: bool, workers: int | None
) -> None:
    """Synthesise the spoken data sets offline with eSpeak NG (16 kHz wav + JSONL manifests).

    Speech translation (English speech -> German text) and spoken QA (spoken passage + text
    question -> answer), train/dev/test. Deterministic for a seed; an existing identical set
    is reused.
    """
    from rich.console import Console
    from rich.progress import MofNCompleteColumn, Progress, TimeElapsedColumn

    bar = Progress(
        *Progress.get_default_columns(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    bar_task = bar.add_task("synthesising", total=None)

    def progress(done: int, total: int) -> None:
        if not bar.live.is_started:  # start the bar's thread only after the workers forked
            bar.start()
        bar.update(bar_task, completed=done, total=total)

    try:
        summary = make_datasets(out, size, seed, progress, task=task, force=force, workers=workers)
    finally:
        if bar.live.is_started:
            bar.stop()
    for name, info in summary["tasks"].items():
        items = info["items"]
        hours = sum(info["duration_s"].values()) / 3600
        click.echo(
            f"{name}: {items['train']}/{items['dev']}/{items['test']} train/dev/test items, "
            f"{hours:.2f} h of audio"
        )
    verb = "up to date" if summary["cached"] else f"written in {summary['seconds']:.1f} s"
    where = [summary["out"]] if out is not None else list(summary["folders"].values())
    click.echo("\n".join(f"{folder}: {verb}" for folder in where))
