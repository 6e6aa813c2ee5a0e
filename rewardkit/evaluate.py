"""``rewardkit eval``: generate on a test split and score it with the usual MT/QA metrics.

What is evaluated (``--model``):

* a run directory (``rewardkit train --output-dir``): its best checkpoint (by the validation
  metric), else its latest; the run's ``config.json`` gives model, backend, task, task options,
  data, LoRA settings, seed and max new tokens;
* a checkpoint directory inside a run (``RUN/checkpoints/step-N`` or ``RUN/checkpoints/best``);
* a plain model: a named spec (``tiny-voxtral``), a ``save_pretrained`` directory or a hub id,
  evaluated as is.

Generation is sampled by default (temperature 0.9, top-p 0.9: the paper's evaluation); ``runs``
repeats it with seeds ``seed``, ``seed + 1``, ... and reports mean and sample std per metric;
``greedy`` is one deterministic run.

Metrics, all on a 0-100 scale: corpus BLEU and chrF (sacrebleu, through the rewards'
``corpus_score``, with their signatures), and for rewards without a corpus score the mean
sentence score x 100 (ROUGE-1/2/L F1, METEOR, BERTScore-F1, COMET). A metric is a reward spec
(``bleu``, ``bleu:tokenize=intl``); names match case-insensitively (``rougeL``).

Outputs (each written atomically) in ``output_dir``: ``results.json`` (settings, per-run and
aggregate metrics, signatures, package versions), ``results.md`` (a Markdown table) and
``generations.jsonl`` (id, prompt, one hypothesis per run, references, source).
"""

from __future__ import annotations

import hashlib
import json
import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from rewardkit.errors import RewardkitError

DEFAULT_METRICS = "bleu,chrf,rouge1,rouge2,rougeL,meteor"
RESULTS_JSON = "results.json"
RESULTS_MD = "results.md"
GENERATIONS = "generations.jsonl"
#: Display names of the built-in metrics (others show their spec).
DISPLAY = {
    "bleu": "BLEU",
    "chrf": "chrF",
    "ter": "TER",
    "rouge1": "ROUGE-1",
    "rouge2": "ROUGE-2",
    "rougel": "ROUGE-L",
    "meteor": "METEOR",
    "bertscore": "BERTScore-F1",
    "comet": "COMET",
}
#: The pip extra that provides a metric, for the error when it is unavailable.
EXTRAS = {"bertscore": "bertscore", "comet": "comet"}
PACKAGES = ("torch", "transformers", "peft", "sacrebleu", "rouge-score", "nltk", "bert-score")
_CHUNK_SEED = 1_000_003  # seed offset between generation chunks of one run


@dataclass(frozen=True)
class EvalConfig:
    """Settings of ``rewardkit eval`` (None: taken from the run's config, else the default)."""

    model: str
    task: str | None = None  # default: the run's task, else speech_translation
    data: str | None = None  # default: the run's data, else the embedded data set
    split: str = "test"
    task_options: str | None = None  # default: the run's
    backend: str | None = None  # default: the run's, else hf
    runs: int = 1
    greedy: bool = False
    temperature: float = 0.9
    top_p: float = 0.9
    max_new_tokens: int | None = None  # default: the run's, else 200
    metrics: str = DEFAULT_METRICS
    limit: int | None = None
    seed: int = 0
    batch_size: int = 8
    device: str | None = None  # default: the run's, else cpu
    output_dir: str | None = None  # default: RUN/eval/<ckpt>-<split>, else eval/<model>-<split>
    progress: bool = True

    def __post_init__(self) -> None:
        from rewardkit.checks import check_finite

        check_finite("--temperature", self.temperature)
        check_finite("--top-p", self.top_p)
        checks = [
            (bool(self.model.strip()), "--model is empty; give a run directory or a model"),
            (self.runs >= 1, f"--runs must be >= 1, got {self.runs}"),
            (self.seed >= 0, f"--seed must be >= 0, got {self.seed}"),
            (not (self.greedy and self.runs > 1),
             "--greedy is one deterministic run; drop --runs (or sample instead of --greedy)"),
            (self.temperature > 0, f"--temperature must be > 0, got {self.temperature}"),
            (0 < self.top_p <= 1, f"--top-p must be in (0, 1], got {self.top_p}"),
            (self.max_new_tokens is None or self.max_new_tokens >= 1,
             f"--max-new-tokens must be >= 1, got {self.max_new_tokens}"),
            (self.limit is None or self.limit >= 1, f"--limit must be >= 1, got {self.limit}"),
            (self.batch_size >= 1, f"--batch-size must be >= 1, got {self.batch_size}"),
            (bool(self.metrics.strip()), "--metrics is empty; e.g. --metrics bleu,chrf"),
        ]  # fmt: skip
        for ok, message in checks:
            if not ok:
                raise RewardkitError(message)


# ---------------------------------------------------------------------------------------------
# What to evaluate


@dataclass(frozen=True)
class ModelSource:
    """A resolved ``--model``: the model spec to build, the checkpoint to load into it (if any),
    the run directory and its config (empty for a plain model)."""

    model: str
    kind: str  # "run", "checkpoint" or "model"
    checkpoint: Path | None = None
    run_dir: Path | None = None
    config: dict[str, Any] = field(default_factory=dict)


def resolve_model(spec: str) -> ModelSource:
    """Work out what ``--model`` names (see the module docstring)."""
    from rewardkit.checks import looks_local
    from rewardkit.rundir import CHECKPOINTS_DIR, CONFIG_FILE, RunDir

    path = Path(spec).expanduser()
    if path.is_dir():
        run = RunDir(path)
        if run.is_run_dir() or (path / CHECKPOINTS_DIR).is_dir():
            checkpoint = run.best_checkpoint() or run.latest_checkpoint()
            if checkpoint is None:
                raise RewardkitError(
                    f"run directory {spec} has no complete checkpoint to evaluate "
                    "(did the run save one?)"
                )
            config = _run_config(path)
            return ModelSource(config["model"], "run", checkpoint, path, config)
        if (path / "backend.json").is_file() or path.parent.name == CHECKPOINTS_DIR:
            run_dir = path.resolve().parent.parent
            if path.parent.name != CHECKPOINTS_DIR or not (run_dir / CONFIG_FILE).is_file():
                raise RewardkitError(
                    f"checkpoint {spec} is not inside a run directory (RUN/checkpoints/step-N); "
                    "give the run directory or the checkpoint inside it"
                )
            complete = {c.path.resolve() for c in RunDir(run_dir).checkpoints()}
            if path.resolve() not in complete:
                raise RewardkitError(
                    f"checkpoint {spec} is incomplete (no COMPLETE marker); "
                    f"evaluate the run directory {run_dir} instead"
                )
            config = _run_config(run_dir)
            return ModelSource(config["model"], "checkpoint", path.resolve(), run_dir, config)
        return ModelSource(spec, "model")
    if path.exists():
        raise RewardkitError(f"--model {spec} is a file, not a run, checkpoint or model directory")
    if looks_local(spec):  # never sent to a hub: a typo must not wait on network retries
        raise RewardkitError(
            f"--model {spec} does not exist (no such run, checkpoint or model directory; a local "
            "path is never looked up on a model hub)"
        )
    return ModelSource(spec, "model")  # a named spec or a hub id: the backend checks it


def _run_config(run_dir: Path) -> dict[str, Any]:
    from rewardkit.rundir import CONFIG_FILE

    try:
        config = json.loads((run_dir / CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RewardkitError(f"cannot read the config of run {run_dir}: {exc}") from None
    if not isinstance(config, dict) or "model" not in config:
        raise RewardkitError(f"{run_dir / CONFIG_FILE} is not a rewardkit train config")
    return config


# ---------------------------------------------------------------------------------------------
# Metrics


@dataclass
class Metric:
    """One requested metric: its spec, display name and the built reward."""

    spec: str
    name: str
    reward: Any


def parse_metrics(registry: Any, text: str) -> list[Metric]:
    """Check and build the comma-separated metrics (before any model loads): unknown names list
    the available ones; an unavailable one (a missing extra) is a one-line error."""
    names = {n.lower(): n for n in registry.names("reward")}
    metrics: list[Metric] = []
    seen: set[str] = set()
    for item in (s.strip() for s in text.split(",")):
        if not item:
            continue
        base, sep, options = item.partition(":")
        key = base.strip().lower()
        if key not in names:
            available = ", ".join(_shown(n) for n in registry.names("reward"))
            raise RewardkitError(f"unknown metric {base!r}; available: {available}")
        name = names[key]
        spec = name + (sep + options if sep else "")
        if spec in seen:
            continue
        seen.add(spec)
        cls = registry.get("reward", name)
        why = None if options else cls.unavailable()
        if why is not None:
            extra = EXTRAS.get(name)
            hint = f"; install it with pip install 'rewardkit[{extra}]'" if extra else ""
            raise RewardkitError(f"metric {base} is unavailable: {why}{hint}")
        label = DISPLAY.get(name, name) + (f" ({options})" if options else "")
        metrics.append(Metric(spec, label, None))
    if not metrics:
        raise RewardkitError("--metrics is empty; e.g. --metrics bleu,chrf")
    for metric in metrics:
        metric.reward = registry.build_reward(metric.spec)
    return metrics


def _shown(name: str) -> str:
    return {"rougel": "rougeL"}.get(name, name)


def sentence_scores(
    reward: Any,
    hyps: Sequence[str],
    refs: Sequence[Sequence[str]],
    sources: Sequence[str | None],
) -> list[float]:
    """Each hypothesis's score by ``reward`` against its references (one group per item)."""
    from rewardkit.rewards import Group

    groups = [Group(references=tuple(r), completions=(h,), source=s)
              for h, r, s in zip(hyps, refs, sources)]  # fmt: skip
    return [row[0] for row in reward(groups).scores]


def score(metrics: Sequence[Metric], examples: Sequence[Any], hyps: Sequence[str]) -> dict:
    """``{display name: {"score", "kind", "signature"}}`` for one run's hypotheses."""
    refs = [list(e.references) for e in examples]
    out: dict[str, dict[str, Any]] = {}
    for metric in metrics:
        reward = metric.reward
        corpus = reward.corpus_score(list(hyps), refs)
        if corpus is not None:
            out[metric.name] = {
                "score": float(corpus.score),
                "kind": "corpus",
                "signature": corpus.signature,
            }
            continue
        values = sentence_scores(reward, hyps, refs, [e.source for e in examples])
        out[metric.name] = {
            "score": 100.0 * sum(values) / len(values),
            "kind": "mean sentence score x 100",
            "signature": reward.signature(),
        }
    return out


def aggregate(per_run: Sequence[dict[str, dict[str, Any]]]) -> dict[str, dict[str, float]]:
    """Mean and sample standard deviation (0 for one run) of each metric over the runs."""
    result = {}
    for name in per_run[0]:
        values = [run[name]["score"] for run in per_run]
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        result[name] = {"mean": statistics.fmean(values), "std": std, "n": len(values)}
    return result


# ---------------------------------------------------------------------------------------------
# The evaluation


@dataclass
class EvalResult:
    """What :func:`evaluate` wrote (``results`` is the content of results.json)."""

    output_dir: Path
    results: dict[str, Any]
    generations: list[dict[str, Any]]


def evaluate(
    cfg: EvalConfig, registry: Any = None, echo: Callable[[str], None] | None = None
) -> EvalResult:
    """Resolve the model, load the split, generate ``cfg.runs`` times, score, write the files."""
    from rewardkit.options import convert_options
    from rewardkit.policy import SamplingConfig

    if registry is None:
        from rewardkit.registry import load_registry

        registry = load_registry()
    source = resolve_model(cfg.model)
    run_cfg = source.config
    task_name = cfg.task or run_cfg.get("task", "speech_translation")
    task_cls = registry.get("task", task_name)
    backend_cls = registry.get("backend", cfg.backend or run_cfg.get("backend", "hf"))
    if cfg.backend is None and getattr(backend_cls, "eval_backend", None):  # e.g. deepspeed -> hf
        backend_cls = registry.get("backend", backend_cls.eval_backend)
    metrics = parse_metrics(registry, cfg.metrics)  # fail on a typo before data or models load

    task_options = cfg.task_options
    if task_options is None:
        task_options = run_cfg.get("task_options", "") if task_name == run_cfg.get("task") else ""
    options: dict[str, str] = {}
    for item in (s for s in task_options.split(",") if s.strip()):
        key, sep, value = item.partition("=")
        if not sep:
            raise RewardkitError(f"--task-options: expected KEY=VALUE, got {item!r}")
        options[key.strip()] = value.strip()
    task = task_cls(**convert_options(task_cls, options))

    data = cfg.data or (run_cfg.get("data") if task_name == run_cfg.get("task") else None)
    data = _resolve_data(task_name, data)
    examples = task.load(data, cfg.split).examples
    if cfg.limit is not None:
        examples = examples[: cfg.limit]
    if not examples:
        raise RewardkitError(f"the {cfg.split} split of {data} has no examples to evaluate")

    max_new_tokens = cfg.max_new_tokens or int(run_cfg.get("max_new_tokens", 200))
    device = cfg.device or run_cfg.get("device", "cpu")
    seeds = [cfg.seed + r for r in range(cfg.runs)]
    settings = {
        "model": cfg.model,
        "model_kind": source.kind,
        "base_model": source.model,
        "checkpoint": str(source.checkpoint) if source.checkpoint else None,
        "run_dir": str(source.run_dir) if source.run_dir else None,
        "backend": backend_cls.name,
        "task": task_name,
        "task_options": task_options,
        "data": str(data),
        "split": cfg.split,
        "num_examples": len(examples),
        "limit": cfg.limit,
        "runs": cfg.runs,
        "seeds": seeds,
        "greedy": cfg.greedy,
        "temperature": None if cfg.greedy else cfg.temperature,
        "top_p": None if cfg.greedy else cfg.top_p,
        "max_new_tokens": max_new_tokens,
        "batch_size": cfg.batch_size,
        "device": device,
        "metrics": [m.spec for m in metrics],
    }
    output_dir = _claim_output(cfg, source, settings)  # before the work: never after it
    backend = _build_backend(backend_cls, source, device)

    prompts = [task.prompt(e) for e in examples]
    hyps_per_run: list[list[str]] = []
    lengths_per_run: list[float] = []
    t0 = time.perf_counter()
    with _progress(cfg.progress) as progress:
        bar = progress.add_task("eval", total=cfg.runs * len(prompts))
        for seed in seeds:
            hyps: list[str] = []
            lengths: list[int] = []
            for chunk, start in enumerate(range(0, len(prompts), cfg.batch_size)):
                batch = prompts[start : start + cfg.batch_size]
                sampling = SamplingConfig(
                    num_samples=1,
                    temperature=cfg.temperature,
                    top_p=cfg.top_p,
                    max_new_tokens=max_new_tokens,
                    greedy=cfg.greedy,
                    seed=seed + _CHUNK_SEED * chunk,
                )
                out = backend.generate(batch, sampling)
                hyps.extend(t[0] for t in out.text)
                lengths.extend(int(x) for x in out.mask[:, 0].sum(-1).tolist())
                progress.update(bar, advance=len(batch))
            hyps_per_run.append(hyps)
            lengths_per_run.append(sum(lengths) / len(lengths))
    generation_time = time.perf_counter() - t0

    per_run = [score(metrics, examples, hyps) for hyps in hyps_per_run]
    summary = aggregate(per_run)
    results = {
        "settings": settings,
        "metrics": summary,
        "runs": [
            {
                "seed": seed,
                "metrics": {name: value["score"] for name, value in run.items()},
                "completion_length_mean": length,
            }
            for seed, run, length in zip(seeds, per_run, lengths_per_run)
        ],
        "metric_info": {
            m.name: {
                "spec": m.spec,
                "kind": per_run[0][m.name]["kind"],
                "signature": per_run[0][m.name]["signature"],
            }
            for m in metrics
        },
        "generation_seconds": generation_time,
        "versions": _versions(registry, metrics),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    generations = [
        {
            "id": e.id,
            "prompt": p.text,
            "hypotheses": [hyps[i] for hyps in hyps_per_run],
            "references": list(e.references),
            "source": e.source,
        }
        for i, (e, p) in enumerate(zip(examples, prompts))
    ]
    write_outputs(output_dir, results, generations)
    return EvalResult(output_dir, results, generations)


def _resolve_data(task: str, data: str | None) -> str:
    """``--data``, or the embedded data set of the task (built when missing)."""
    from rewardkit.train import TASK_DATA

    if data is not None:
        if "://" not in data and "/" in data and not Path(data).exists():
            raise RewardkitError(f"data {data} does not exist (give --data PATH or a hub name)")
        return data
    from rewardkit.speech import make

    if task not in TASK_DATA:
        raise RewardkitError(
            f"task {task!r} has no embedded data set; give --data PATH_OR_HUB_NAME"
        )
    return str(make.embedded_data(TASK_DATA[task]))


def _build_backend(backend_cls: Any, source: ModelSource, device: str) -> Any:
    """The backend: built from the run's settings with its checkpoint loaded, or the plain
    model with the fewest trainable tensors the backend allows (nothing is trained)."""
    from rewardkit.policy import ModelSpec, OptimizerConfig

    cfg = source.config
    if source.checkpoint is not None:
        spec = ModelSpec(
            cfg["model"],
            lora_r=int(cfg.get("lora_r", 8)),
            lora_alpha=int(cfg.get("lora_alpha", 16)),
            train_encoder=bool(cfg.get("train_encoder", False)),
            bf16=bool(cfg.get("bf16", False)),
            seed=int(cfg.get("seed", 0)),
            device=device,
            extra={} if cfg.get("train_lm") is None else {"train_lm": bool(cfg["train_lm"])},
        )
        backend = backend_cls.build(spec, OptimizerConfig())
        load = getattr(backend, "load_weights", backend.load)  # no optimizer state needed
        load(source.checkpoint)
    else:
        light = ModelSpec(source.model, lora_r=0, device=device, extra={"train_lm": False})
        try:
            backend = backend_cls.build(light, OptimizerConfig())
        except RewardkitError as exc:
            if "nothing to train" not in str(exc):
                raise
            backend = backend_cls.build(ModelSpec(source.model, device=device), OptimizerConfig())
    backend.train(False)
    return backend


def _claim_output(cfg: EvalConfig, source: ModelSource, settings: dict[str, Any]) -> Path:
    """The output directory, checked (and marked ours) before the work: ``--output-dir`` must
    be new, empty, or an earlier ``rewardkit eval`` output of the same settings (results of
    other settings are never replaced). The default directory falls back to a sibling named by
    the settings' hash when it holds other settings or files not ours, so each settings'
    results stay apart."""
    from rewardkit.textio import claim_output_dir

    if cfg.output_dir:
        return claim_output_dir(Path(cfg.output_dir), "eval", settings)
    default = _default_output(source, cfg.split)
    try:
        return claim_output_dir(default, "eval", settings)
    except RewardkitError:
        key = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
        return claim_output_dir(default.with_name(f"{default.name}-{key.hexdigest()[:8]}"),
                                "eval", settings)  # fmt: skip


def _default_output(source: ModelSource, split: str) -> Path:
    if source.run_dir is not None and source.checkpoint is not None:
        return source.run_dir / "eval" / f"{source.checkpoint.name}-{split}"
    name = Path(source.model).name or "model"
    return Path("eval") / f"{name}-{split}"


def _progress(enabled: bool) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        disable=not enabled,
        transient=True,
    )


def _versions(registry: Any, metrics: Sequence[Metric]) -> dict[str, Any]:
    import platform
    from importlib import metadata

    import rewardkit

    packages = {"rewardkit": rewardkit.__version__, "python": platform.python_version()}
    for name in PACKAGES:
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    plugins = {}
    for m in metrics:
        plugin = getattr(m.reward, "plugin", None)
        if plugin and plugin in registry.plugins:
            plugins[plugin] = registry.plugins[plugin].version
    return {"packages": packages, "plugins": plugins}


# ---------------------------------------------------------------------------------------------
# Outputs


def _fmt(mean: float, std: float, n: int) -> str:
    return f"{mean:.2f} ± {std:.2f}" if n > 1 else f"{mean:.2f}"


def markdown(results: dict[str, Any]) -> str:
    """results.md: the settings line, the metrics table and the signatures."""
    s = results["settings"]
    mode = "greedy" if s["greedy"] else f"sampled (T={s['temperature']}, top-p={s['top_p']})"
    lines = [
        f"# Evaluation of {s['model']}",
        "",
        f"{s['task']} on the {s['split']} split of {s['data']} ({s['num_examples']} examples); "
        f"{mode}, {s['runs']} run(s), max {s['max_new_tokens']} new tokens.",
        "",
    ]
    runs = results["runs"]
    header = ["Metric", "Score" + (" (mean ± std)" if len(runs) > 1 else "")]
    if len(runs) > 1:
        header += [f"seed {r['seed']}" for r in runs]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, agg in results["metrics"].items():
        row = [name, _fmt(agg["mean"], agg["std"], agg["n"])]
        if len(runs) > 1:
            row += [f"{r['metrics'][name]:.2f}" for r in runs]
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "Signatures:", ""]
    for name, info in results["metric_info"].items():
        lines.append(f"- {name} ({info['kind']}): `{info['signature']}`")
    return "\n".join(lines) + "\n"


def write_outputs(
    output_dir: Path, results: dict[str, Any], generations: Sequence[dict[str, Any]]
) -> None:
    """Write results.json, results.md and generations.jsonl, each atomically."""
    from rewardkit.textio import write_atomic

    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        gens = "".join(json.dumps(g, ensure_ascii=False) + "\n" for g in generations)
        write_atomic(output_dir / GENERATIONS, gens)
        write_atomic(output_dir / RESULTS_MD, markdown(results))
        text = json.dumps(_finite(results), indent=2, ensure_ascii=False, allow_nan=False)
        write_atomic(output_dir / RESULTS_JSON, text + "\n")
    except OSError as exc:
        raise RewardkitError(f"cannot write to {output_dir}: {exc.strerror or exc}") from None


def _finite(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def print_table(results: dict[str, Any]) -> None:
    """The metrics as a rich table on stdout."""
    from rich.console import Console
    from rich.table import Table

    s = results["settings"]
    mode = "greedy" if s["greedy"] else f"T={s['temperature']}, top-p={s['top_p']}"
    table = Table(title=f"{s['model']}: {s['split']} ({s['num_examples']} examples, {mode})")
    table.add_column("metric")
    runs = results["runs"]
    table.add_column("mean ± std" if len(runs) > 1 else "score", justify="right")
    for name, agg in results["metrics"].items():
        table.add_row(name, _fmt(agg["mean"], agg["std"], agg["n"]))
    Console().print(table)


# ---------------------------------------------------------------------------------------------
# rewardkit eval


@click.command("eval")
@click.option(
    "--model",
    required=True,
    help="A run directory (its best checkpoint, else its latest), a checkpoint inside one, or a "
    "model (named spec such as tiny-voxtral, save_pretrained directory, hub id).",
)
@click.option(
    "--task", default=None, help="Task adapter (default: the run's, else speech_translation)."
)
@click.option("--task-options", default=None, help="KEY=VALUE,... (default: the run's).")
@click.option(
    "--data",
    default=None,
    help="Data directory, file or hub name (default: the run's, else the embedded data set).",
)
@click.option("--split", default="test", show_default=True, help="Split to evaluate.")
@click.option(
    "--runs",
    default=1,
    show_default=True,
    type=int,
    help="Sampled runs with seeds seed, seed+1, ...; mean ± std per metric.",
)
@click.option("--greedy", is_flag=True, help="One deterministic greedy run.")
@click.option(
    "--temperature", default=0.9, show_default=True, type=float, help="Sampling temperature."
)
@click.option("--top-p", default=0.9, show_default=True, type=float, help="Nucleus sampling.")
@click.option("--max-new-tokens", default=None, type=int, help="Default: the run's, else 200.")
@click.option(
    "--metrics",
    default=DEFAULT_METRICS,
    show_default=True,
    help="Comma-separated; also bertscore, comet, ter (or any reward spec).",
)
@click.option("--limit", default=None, type=int, help="Evaluate the first N examples only.")
@click.option(
    "--seed", default=0, show_default=True, type=int, help="Seed of the first run (then +1, ...)."
)
@click.option(
    "--batch-size", default=8, show_default=True, type=int, help="Prompts generated at once."
)
@click.option("--backend", default=None, help="Policy backend (default: the run's, else hf).")
@click.option("--device", default=None, help="Default: the run's, else cpu.")
@click.option(
    "--output-dir",
    "-o",
    default=None,
    help="Default: RUN/eval/<checkpoint>-<split>, else eval/<model>-<split>.",
)
@click.option(
    "--progress/--no-progress", default=True, show_default=True, help="Show a progress bar."
)
@click.pass_obj
def eval_command(registry: Any, **options: Any) -> None:
    """Evaluate a model or a training run on a split: BLEU, chrF, ROUGE, METEOR, ..."""
    cfg = EvalConfig(**options)
    result = evaluate(cfg, registry)
    print_table(result.results)
    click.echo(
        f"wrote {result.output_dir}/{RESULTS_JSON}, {RESULTS_MD} and {GENERATIONS}", err=True
    )


# ---------------------------------------------------------------------------------------------
# rewardkit model export


def export_model(source_spec: str, out: Path, registry: Any, overwrite: bool = False) -> Path:
    """Write a run's best checkpoint (or the given checkpoint) as a standalone model directory:
    the policy with LoRA merged, its tokenizer and audio preprocessing (``save_pretrained``).
    Built in a staging directory beside ``out`` and renamed into place. An existing ``out`` is
    replaced only with ``overwrite`` and only when it is a model directory (an earlier export,
    or ``config.json`` plus weights and no subfolders): a folder of anything else is refused.
    Where it cannot write is found before the model is built."""
    import shutil

    from rewardkit import textio

    source = resolve_model(source_spec)
    if source.checkpoint is None:
        raise RewardkitError(
            f"{source_spec} is not a run or a checkpoint inside one; export takes what "
            "`rewardkit train` wrote (a model directory is already exported)"
        )
    out = Path(out).expanduser().resolve()  # "." has a name and a parent to stage beside
    if out.exists() and not (out.is_dir() and not any(out.iterdir())):
        if not overwrite:
            raise RewardkitError(f"{out} exists; give --overwrite to replace it")
        if not _is_model_dir(out):
            raise RewardkitError(
                f"{out} is not a model directory (no earlier `rewardkit model export`, or it "
                "holds other files); --overwrite replaces only models: choose another --out"
            )
    try:
        textio.remove_orphans(out.parent, out.name)  # staging of killed exports
        tmp = textio.staging_dir(out.parent, out.name)
    except OSError as exc:
        raise textio.os_error(exc, out.parent, "write to") from None
    try:
        backend = _build_backend(registry.get("backend", "hf"), source, "cpu")
        backend.save_pretrained(tmp)
        marker = {"command": "model export", "settings": None}
        textio.write_json_atomic(tmp / textio.OUTPUT_MARKER, marker)
        textio.replace_dir(tmp, out)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise textio.os_error(exc, out, "write the model to") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return source.checkpoint


def _is_model_dir(path: Path) -> bool:
    """An earlier export, or what save_pretrained writes: flat, config.json and weights."""
    from rewardkit.textio import OUTPUT_MARKER, read_marker

    if not path.is_dir() or path.is_symlink():
        return False
    record = read_marker(path / OUTPUT_MARKER)
    if record is not None:
        return record.get("command") == "model export"
    entries = list(path.iterdir())
    weights = any(
        e.name.startswith(("model", "pytorch_model")) and e.suffix in (".safetensors", ".bin")
        for e in entries
    )
    flat = all(e.is_file() and not e.is_symlink() for e in entries)
    return flat and weights and (path / "config.json").is_file()


@click.command("export")
@click.argument("source")
@click.option(
    "--out", required=True, type=click.Path(path_type=Path), help="Directory to write the model to."
)
@click.option("--overwrite", is_flag=True, help="Replace --out if it exists.")
@click.pass_obj
def export_command(registry: Any, source: str, out: Path, overwrite: bool) -> None:
    """Export a training run (its best checkpoint, else its latest) or one of its checkpoints as
    a standalone model directory that --model and from_pretrained load."""
    checkpoint = export_model(source, out, registry, overwrite)
    click.echo(f"wrote {out} (from {checkpoint})", err=True)


__all__ = [
    "EvalConfig",
    "EvalResult",
    "ModelSource",
    "aggregate",
    "eval_command",
    "evaluate",
    "export_command",
    "export_model",
    "markdown",
    "parse_metrics",
    "resolve_model",
    "score",
    "write_outputs",
]
