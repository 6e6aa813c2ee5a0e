"""The ``rewardkit`` command line.

Plugins are loaded before the arguments are parsed (they may add commands), so ``main`` reads the
``--disable-plugin`` options ahead of click. User mistakes raise :class:`RewardkitError`; the group
turns them into a one-line ``Error: ...`` and exit code 2 (``--debug`` shows the traceback).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import textwrap
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from rewardkit import __version__
from rewardkit.assemble import model_group
from rewardkit.errors import RewardkitError
from rewardkit.evaluate import eval_command, export_command
from rewardkit.integrations.server import serve_command
from rewardkit.plots import plot_command
from rewardkit.registry import Registry, load_registry
from rewardkit.speech.make import data_group
from rewardkit.train import train_command

SAMPLE_DIR = Path(__file__).parent / "data" / "sample"


class UserError(click.ClickException):
    exit_code = 2


class InternalError(click.ClickException):
    exit_code = 1


class RewardkitGroup(click.Group):
    """A click group that turns errors into one line unless ``--debug`` was given."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except RewardkitError as exc:
            if ctx.meta.get("rewardkit.debug"):
                raise
            raise UserError(_rank_prefix() + str(exc)) from exc
        except Exception as exc:
            if ctx.meta.get("rewardkit.debug"):
                raise
            raise InternalError(
                f"{_rank_prefix()}{type(exc).__name__}: {exc} (run `rewardkit --debug ...` for "
                "the traceback)"
            ) from exc


def _rank_prefix() -> str:
    """``rank N: `` in a multi-process run (set by torchrun / the deepspeed launcher): the
    launcher stops every rank when one fails, and this says which one did."""
    world = os.environ.get("WORLD_SIZE", "1")
    return f"rank {os.environ.get('RANK', '?')}: " if world.isdigit() and int(world) > 1 else ""


def build_cli(registry: Registry) -> click.Group:
    """The command group, with the core commands and those plugins register."""

    @click.group(cls=RewardkitGroup, context_settings={"help_option_names": ["-h", "--help"]})
    @click.version_option(__version__, "-V", "--version", prog_name="rewardkit")
    @click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
    @click.option(
        "--threads",
        type=click.IntRange(min=1),
        metavar="N",
        help="CPU threads for torch (sets OMP_NUM_THREADS). Default: $OMP_NUM_THREADS if set, "
        "else 1 on CPU.",
    )
    @click.option(
        "--disable-plugin",
        "disabled",
        multiple=True,
        metavar="NAME",
        help="Do not load this plugin (repeatable; also $REWARDKIT_DISABLE_PLUGINS=a,b).",
    )
    @click.pass_context
    def cli(
        ctx: click.Context, debug: bool, threads: int | None, disabled: tuple[str, ...]
    ) -> None:
        """rewardkit: GRPO for speech-aware language models with text-similarity rewards."""
        ctx.meta["rewardkit.debug"] = debug
        ctx.obj = registry

    cli.add_command(plugins_command)
    cli.add_command(score_command)
    cli.add_command(bench_command)
    model_group.add_command(export_command)
    cli.add_command(model_group)
    cli.add_command(data_group)
    cli.add_command(plot_command)
    cli.add_command(train_command)
    cli.add_command(eval_command)
    cli.add_command(serve_command)
    registry.add_commands(cli)
    return cli


# --- rewardkit plugins --------------------------------------------------------------------------


@click.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_obj
def plugins_command(registry: Registry, as_json: bool) -> None:
    """List plugins and the rewards, backends, tasks and commands they register."""
    rows = plugin_rows(registry)
    if as_json:
        plugins = [vars(p) for p in registry.plugins.values()]
        click.echo(json.dumps({"entries": rows, "plugins": plugins}, indent=2))
    elif sys.stdout.isatty():
        click.echo(plugins_table(rows, shutil.get_terminal_size().columns))
    else:  # piped: plain tab-separated rows, one per line, for grep, cut and awk
        click.echo("\t".join(PLUGIN_COLUMNS))
        for row in rows:
            click.echo("\t".join(row[k] or "-" for k in PLUGIN_COLUMNS))


#: The columns of ``rewardkit plugins`` when piped (tab-separated) and the keys of its rows.
PLUGIN_COLUMNS = ("name", "kind", "plugin", "version", "status", "summary")


def plugins_table(rows: list[dict[str, Any]], width: int = 80) -> str:
    """The terminal table: one block per plugin (its name, version and status), then one line
    per thing it registers (name, kind, description), cut to ``width`` columns."""
    width = max(width, 40)
    name_width = max([len(r["name"] or "") for r in rows] + [4])
    styles = {"ok": "green", "disabled": "yellow", "error": "red"}
    lines: list[str] = []
    for plugin in dict.fromkeys(r["plugin"] for r in rows):
        mine = [r for r in rows if r["plugin"] == plugin]
        status = next((r["status"] for r in mine if r["name"] is None), "ok")
        head = f"{plugin} {mine[0]['version'] or ''}".rstrip()
        lines.append(f"{click.style(head, bold=True)}  {click.style(status, fg=styles[status])}")
        for row in mine:
            if row["name"] is None:  # the plugin's own row: why it is disabled or broken
                for part in textwrap.wrap(row["summary"], width - 2):
                    lines.append(f"  {part}")
                continue
            text = f"  {row['name']:<{name_width}}  {row['kind']:<7}  {row['summary']}"
            lines.append(text if len(text) <= width else text[: width - 1] + "…")
    return "\n".join(lines)


def plugin_rows(registry: Registry) -> list[dict[str, Any]]:
    """One row per registered thing, plus one per plugin that is disabled, broken or empty."""
    rows = []
    for entry in registry.entries():
        rows.append(
            dict(
                name=entry.name,
                kind=entry.kind,
                plugin=entry.plugin,
                version=registry.plugins[entry.plugin].version,
                status="ok",
                summary=entry.summary,
            )
        )
    provides = {e.plugin for e in registry.entries()}
    for plugin in registry.plugins.values():
        if plugin.status != "ok" or plugin.name not in provides:
            rows.append(
                dict(
                    name=None,
                    kind=None,
                    plugin=plugin.name,
                    version=plugin.version,
                    status=plugin.status,
                    summary=plugin.error or "",
                )
            )
    return rows


# --- rewardkit score ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ScoreConfig:
    """Settings of ``rewardkit score``."""

    reward: str
    hyp: Path
    refs: tuple[Path, ...]
    src: Path | None = None
    group_size: int = 1
    format: str = "tsv"
    output: str = "-"


@click.command("score")
@click.option(
    "--reward",
    "-r",
    default="bleu",
    show_default=True,
    help="Reward spec, e.g. bleu, bleu:tokenize=intl or bleu=0.7,chrf=0.3.",
)
@click.option("--hyp", type=click.Path(path_type=Path), help="Completions, one per line.")
@click.option(
    "--ref",
    "refs",
    multiple=True,
    type=click.Path(path_type=Path),
    help="References, one per group (repeat for several references).",
)
@click.option("--src", type=click.Path(path_type=Path), help="Source texts, one per group.")
@click.option(
    "--group-size",
    "-g",
    default=1,
    show_default=True,
    type=click.IntRange(min=1),
    help="Consecutive completions that share one reference line.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["tsv", "jsonl"]),
    default="tsv",
    show_default=True,
    help="Format of the per-completion scores.",
)
@click.option(
    "--output",
    "-o",
    default="-",
    show_default=True,
    help="Where to write per-completion scores (- for stdout).",
)
@click.option(
    "--sample",
    is_flag=True,
    help="Score the embedded English->German sample (6 groups of 4) instead of files.",
)
@click.pass_obj
def score_command(
    registry: Registry,
    reward: str,
    hyp: Path | None,
    refs: tuple[Path, ...],
    src: Path | None,
    group_size: int,
    fmt: str,
    output: str,
    sample: bool,
) -> None:
    """Score completions against references; print per-completion scores and corpus scores.

    Per-completion scores go to --output (TSV or JSONL); the corpus score of each component
    (sacrebleu BLEU/chrF/TER with their signatures, else the mean) goes to stderr.
    """
    if sample and (hyp is not None or refs or src is not None):
        raise RewardkitError(
            "--sample scores the embedded sample; drop --hyp/--ref/--src (or drop --sample)"
        )
    if sample:
        hyp, refs, src, group_size = (
            SAMPLE_DIR / "hyp.txt",
            (SAMPLE_DIR / "ref.txt",),
            SAMPLE_DIR / "src.txt",
            4,
        )
    if hyp is None or not refs:
        raise RewardkitError("give --hyp FILE and --ref FILE (or --sample for the embedded sample)")
    run_score(registry, ScoreConfig(reward, hyp, refs, src, group_size, fmt, output))


def run_score(registry: Registry, config: ScoreConfig) -> None:
    from rewardkit.rewards import Group, WeightedSum
    from rewardkit.textio import read_lines, write_text

    registry.check_spec(config.reward)  # a typo fails before files are read or models load
    if config.output != "-":  # a bad --output fails before the work, not after it
        target = Path(config.output)
        if target.is_dir():
            raise RewardkitError(f"--output {target} is a directory; give a file name")
        if not target.parent.is_dir():
            raise RewardkitError(
                f"--output {target}: directory {target.parent} does not exist; create it first"
            )
    hyps = read_lines(config.hyp)
    ref_columns = [read_lines(path) for path in config.refs]
    src = read_lines(config.src) if config.src else None
    n_groups = len(ref_columns[0])
    g = config.group_size
    if not hyps and not n_groups:
        raise RewardkitError(
            f"{config.hyp} and {config.refs[0]} are empty; give at least one completion and "
            "its reference"
        )
    for path, column in zip(config.refs[1:], ref_columns[1:]):
        if len(column) != n_groups:
            raise RewardkitError(
                f"{path} has {len(column)} lines but {config.refs[0]} has {n_groups}; "
                "every --ref file needs one line per group"
            )
    if src is not None and len(src) != n_groups:
        raise RewardkitError(
            f"{config.src} has {len(src)} lines but the references have {n_groups}"
        )
    if len(hyps) != n_groups * g:
        raise RewardkitError(
            f"{config.hyp} has {len(hyps)} lines but {n_groups} reference lines x group size {g} "
            f"need {n_groups * g}; check --group-size or the files"
        )
    groups = [
        Group(
            references=tuple(col[i] for col in ref_columns),
            completions=tuple(hyps[i * g : (i + 1) * g]),
            source=src[i] if src is not None else None,
        )
        for i in range(n_groups)
    ]
    reward = registry.build_reward(config.reward)
    out = reward(groups)

    lines = []
    names = list(out.components)
    if config.format == "tsv":
        lines.append("\t".join(["group", "completion", "reward", *names]))
    for i, row in enumerate(out.scores):
        for j, value in enumerate(row):
            parts = {name: out.components[name][i][j] for name in names}
            if config.format == "tsv":
                lines.append(
                    "\t".join(
                        [str(i), str(j), f"{value:.6f}", *(f"{v:.6f}" for v in parts.values())]
                    )
                )
            else:
                lines.append(
                    json.dumps({"group": i, "completion": j, "reward": value, "components": parts})
                )
    flat_refs = [g.references for g in groups for _ in g.completions]
    parts = reward.parts if isinstance(reward, WeightedSum) else [(reward.name, 1.0, reward)]
    summary = []  # computed before anything is written: an error leaves no partial output
    for label, _, component in parts:
        corpus = component.corpus_score(hyps, flat_refs)
        values = [v for row in out.components[label] for v in row]
        mean = sum(values) / len(values) if values else 0.0
        text = corpus.format() if corpus else f"mean {mean:.4f} (no corpus-level score)"
        summary.append(f"{label}: {text}")
    write_text(config.output, "\n".join(lines) + "\n")
    for line in summary:
        click.echo(line, err=True)
    total = [v for row in out.scores for v in row]
    click.echo(
        f"reward: mean {sum(total) / max(len(total), 1):.4f} over {len(total)} completions "
        f"in {n_groups} groups",
        err=True,
    )


# --- rewardkit bench ----------------------------------------------------------------------------


@click.command("bench")
@click.option(
    "--reward",
    "-r",
    "rewards",
    multiple=True,
    metavar="SPEC",
    help="A reward to compare (repeatable). Default: every available reward.",
)
@click.option(
    "--data",
    type=click.Path(path_type=Path),
    help="JSONL or TSV with id, reference and optional source, lang columns. "
    "Default: the embedded translation and spoken-QA items.",
)
@click.option(
    "--human",
    type=click.Path(path_type=Path),
    help="JSONL or TSV (a header row) of human judgments: id, system, hypothesis, score "
    "(higher is better; empty or NaN: unrated, left out). Runs the human agreement section.",
)
@click.option(
    "--aggregate",
    type=click.Choice(["mean", "median"]),
    help="Combine several judgments of one (id, system), e.g. several raters, by their mean or "
    "median. Without it such duplicates are an error.",
)
@click.option(
    "--sections",
    metavar="LIST",
    help="Comma-separated sections to run: cost, discrimination, ladders, probes, agreement, "
    "human. Default: all (human with --human). `--sections human` alone is fast and works for "
    "any language; the other sections corrupt references in de or en only.",
)
@click.option(
    "--items",
    default=120,
    show_default=True,
    type=click.IntRange(min=2),
    help="Embedded items to use when no --data is given.",
)
@click.option(
    "--steps",
    default=6,
    show_default=True,
    type=click.IntRange(min=1),
    help="Corruption edits per ladder.",
)
@click.option(
    "--group-size",
    "-g",
    default=8,
    show_default=True,
    type=click.IntRange(min=2),
    help="Completions per group (G) in the discrimination section.",
)
@click.option(
    "--bootstrap",
    default=1000,
    show_default=True,
    type=click.IntRange(min=10),
    help="Bootstrap resamples for confidence intervals (with --human).",
)
@click.option(
    "--seed",
    default=0,
    show_default=True,
    type=click.IntRange(min=0),
    help="Seed of every random choice.",
)
@click.option(
    "--output-dir",
    "-o",
    default="bench-report",
    show_default=True,
    type=click.Path(path_type=Path),
    help="Where results.json, report.md and PNGs go.",
)
@click.pass_obj
def bench_command(
    registry: Registry,
    rewards: tuple[str, ...],
    data: Path | None,
    human: Path | None,
    aggregate: str | None,
    sections: str | None,
    items: int,
    steps: int,
    group_size: int,
    bootstrap: int,
    seed: int,
    output_dir: Path,
) -> None:
    """Compare rewards as GRPO uses them: cost, ties, monotonicity, hacking probes, agreement,
    and with --human their agreement with human judgments (acc_eq with ties as WMT23 computes
    it, Kendall tau_b, system-level Pearson and Kendall)."""
    from rich.progress import Progress

    from rewardkit.bench.report import print_table, write_report
    from rewardkit.bench.run import BenchConfig, progress_total, run_bench
    from rewardkit.textio import claim_output_dir

    if not rewards:
        rewards = tuple(e.name for e in registry.entries("reward") if not e.obj.unavailable())
    sizes = tuple(sorted({4, group_size, 16}))
    config = BenchConfig(
        rewards=rewards,
        data=data,
        human=human,
        aggregate=aggregate,
        sections=None
        if sections is None
        else tuple(x.strip() for x in sections.split(",") if x.strip()),
        items=items,
        steps=steps,
        group_size=group_size,
        cost_group_sizes=sizes,
        bootstrap=bootstrap,
        seed=seed,
        output_dir=output_dir,
    )
    with Progress(transient=True) as progress:
        task = progress.add_task("bench", total=progress_total(config))

        def advance(stage: str) -> None:
            progress.update(task, advance=1, description=stage)

        # after the inputs, before the work: a user's folder or an unwritable place is refused
        results = run_bench(
            registry, config, advance, lambda: claim_output_dir(output_dir, "bench")
        )
    write_report(results, output_dir)
    print_table(results)
    click.echo(f"wrote {output_dir}/results.json, report.md and plots", err=True)


# --- entry point --------------------------------------------------------------------------------


def _disabled_in(argv: Sequence[str]) -> list[str]:
    """Values of --disable-plugin, read before click parses (plugins may add commands)."""
    names = []
    for i, arg in enumerate(argv):
        if arg == "--disable-plugin" and i + 1 < len(argv):
            names.append(argv[i + 1])
        elif arg.startswith("--disable-plugin="):
            names.append(arg.split("=", 1)[1])
    return names


#: Commands whose log mentions the thread setup rewardkit chose (the ones that run models).
COMPUTE_COMMANDS = ("train", "eval", "bench", "serve", "model")


def _option_in(argv: Sequence[str], name: str) -> str | None:
    """The last value of ``name VALUE`` or ``name=VALUE`` in argv, read before click parses."""
    value = None
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith(name + "="):
            value = arg.split("=", 1)[1]
    return value


def configure_threads(argv: Sequence[str]) -> str | None:
    """Set the CPU thread count before torch loads; returns the line to log, if any.

    ``--threads N`` (before the command) wins, then an explicit ``$OMP_NUM_THREADS``. With
    neither, a CPU run gets one thread: rewardkit's models are small, and with torch's default
    (one thread per core) OpenMP's busy-waiting made the README's training demo 21x slower on a
    2-core machine (benchmarks/results/threads.md). A run on another ``--device`` is left alone.
    """
    threads = _option_in(argv, "--threads")
    if threads is None:
        device = _option_in(argv, "--device") or "cpu"
        if "OMP_NUM_THREADS" in os.environ or not device.startswith("cpu"):
            return None
        threads = "1"
        note = "rewardkit: 1 CPU thread (OMP_NUM_THREADS is unset; more: rewardkit --threads N)"
    else:
        if not threads.isdigit() or int(threads) < 1:
            raise RewardkitError(f"--threads must be a positive integer, got {threads!r}")
        note = None
    os.environ["OMP_NUM_THREADS"] = threads
    if "torch" in sys.modules:  # too late for the variable (e.g. in tests): tell torch directly
        sys.modules["torch"].set_num_threads(int(threads))
    quiet = any(arg in ("-h", "--help") for arg in argv)
    return note if _command_in(argv) in COMPUTE_COMMANDS and not quiet else None


def _command_in(argv: Sequence[str]) -> str | None:
    """The command's name: the first argument that is not a group option or its value."""
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg in ("--threads", "--disable-plugin"):
            skip = True
        elif not arg.startswith("-"):
            return arg
    return None


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        note = configure_threads(argv)
    except RewardkitError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(2)
    if note:
        click.echo(note, err=True)
    warnings.formatwarning = lambda message, *args, **kwargs: f"warning: {message}\n"
    try:
        registry = load_registry(disabled=_disabled_in(argv))
    except RewardkitError as exc:
        if "--debug" in argv:
            raise
        click.echo(f"Error: {exc}", err=True)
        sys.exit(2)
    for plugin in registry.plugins.values():  # a broken third-party plugin: said, not fatal
        if plugin.status == "error" and plugin.origin == "entry point":
            click.echo(
                f"warning: plugin '{plugin.name}' is broken and was skipped: {plugin.error}; "
                f"`--disable-plugin {plugin.name}` silences this",
                err=True,
            )
    build_cli(registry).main(args=argv, prog_name="rewardkit")
