"""The command line: plugins, score, one-line errors with exit code 2, and light imports."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import sacrebleu
from click.testing import CliRunner

import rewardkit
from rewardkit.cli import SAMPLE_DIR, build_cli, main


def run(registry, *args):
    return CliRunner().invoke(build_cli(registry), list(args))


def test_version(registry):
    result = run(registry, "--version")
    assert result.exit_code == 0
    assert result.output == f"rewardkit, version {rewardkit.__version__}\n"


def test_plugins_json_lists_every_builtin(registry):
    result = run(registry, "plugins", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    rewards = {row["name"]: row for row in data["entries"] if row["kind"] == "reward"}
    assert sorted(rewards) == [
        "bertscore",
        "bleu",
        "chrf",
        "comet",
        "meteor",
        "rouge1",
        "rouge2",
        "rougel",
        "ter",
    ]
    assert rewards["bleu"]["plugin"] == "sacrebleu_rewards"
    assert rewards["bleu"]["version"] == rewardkit.__version__
    assert {p["name"]: p["status"] for p in data["plugins"]} == {
        "sacrebleu_rewards": "ok",
        "rouge_rewards": "ok",
        "meteor_reward": "ok",
        "bertscore_reward": "ok",
        "comet_reward": "ok",
        "speech_tasks": "ok",
        "text_task": "ok",
        "hf": "ok",
        "deepspeed": "ok",
    }
    tasks = {row["name"] for row in data["entries"] if row["kind"] == "task"}
    assert tasks == {"asr", "speech_translation", "spoken_qa", "text"}


def test_plugins_table_shows_disabled_and_broken_plugins():
    class Broken:
        @rewardkit.hookimpl
        def register_rewards(self, register):
            raise ValueError("missing config")

    reg = rewardkit.load_registry(
        ["rouge_rewards"], entry_points=False, plugins={"broken": Broken()}
    )
    result = CliRunner().invoke(build_cli(reg), ["plugins"])
    assert result.exit_code == 0
    assert f"-\t-\trouge_rewards\t{rewardkit.__version__}\tdisabled\t-" in result.output
    assert "-\t-\tbroken\t-\terror\tregister_rewards raised ValueError: missing config" in (
        result.output
    )


def test_score_sample_tsv_and_corpus_bleu(registry):
    result = run(registry, "score", "--sample", "--reward", "bleu=0.7,chrf=0.3")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "group\tcompletion\treward\tbleu\tchrf"
    assert len(lines) == 1 + 24
    hyps = (SAMPLE_DIR / "hyp.txt").read_text().splitlines()
    refs = (SAMPLE_DIR / "ref.txt").read_text().splitlines()
    group, completion, _, bleu, _ = lines[2].split("\t")
    expected = sacrebleu.sentence_bleu(hyps[1], [refs[0]]).score / 100
    assert (group, completion, float(bleu)) == ("0", "1", pytest.approx(expected, abs=1e-6))
    corpus = sacrebleu.corpus_bleu(hyps, [[r for r in refs for _ in range(4)]])
    assert f"bleu: BLEU = {corpus.score:.2f} (nrefs:1|case:mixed|eff:no|tok:13a" in result.stderr
    assert "chrf: chrF = " in result.stderr
    assert "reward: mean" in result.stderr


def test_score_files_jsonl_output_file_and_two_references(registry, tmp_path):
    (tmp_path / "hyp.txt").write_text("the cat sat\na dog\nhello world\nhello\n")
    (tmp_path / "ref1.txt").write_text("the cat sat on the mat\nhello world\n")
    (tmp_path / "ref2.txt").write_text("a dog sat\nhi world\n")
    (tmp_path / "src.txt").write_text("die Katze\nhallo Welt\n")
    out = tmp_path / "scores.jsonl"
    result = run(
        registry,
        "score",
        "-r",
        "rougeL",
        "--hyp",
        str(tmp_path / "hyp.txt"),
        "--ref",
        str(tmp_path / "ref1.txt"),
        "--ref",
        str(tmp_path / "ref2.txt"),
        "--src",
        str(tmp_path / "src.txt"),
        "-g",
        "2",
        "--format",
        "jsonl",
        "-o",
        str(out),
    )
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["group"], r["completion"]) for r in rows] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    # "a dog" vs "a dog sat" (the better reference): LCS 2, precision 1, recall 2/3, F = 0.8
    assert rows[1]["reward"] == pytest.approx(0.8)
    assert rows[1]["components"] == {"rougel": rows[1]["reward"]}
    assert rows[2]["reward"] == 1.0
    assert "rougel: mean" in result.stderr


def test_score_without_inputs_is_a_user_error(registry):
    result = run(registry, "score")
    assert result.exit_code == 2
    assert "give --hyp FILE and --ref FILE" in result.output


@pytest.fixture
def files(tmp_path):
    (tmp_path / "hyp.txt").write_text("a\nb\nc\n")
    (tmp_path / "ref.txt").write_text("a\nb\n")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9\n".encode("latin-1"))
    return tmp_path


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-r", "blue"], "unknown reward 'blue'; available: bertscore, bleu, chrf"),
        (["-r", "bleu:tokenize"], "malformed reward spec 'bleu:tokenize'"),
        (["-r", "bleu=heavy"], "bad weight 'heavy' for reward 'bleu'"),
        (
            ["--hyp", "{d}/hyp.txt", "--ref", "{d}/ref.txt"],
            "hyp.txt has 3 lines but 2 reference lines x group size 1 need 2",
        ),
        (["--hyp", "{d}/missing.txt", "--ref", "{d}/ref.txt"], "missing.txt: no such file"),
        (["--hyp", "{d}", "--ref", "{d}/ref.txt"], "it is a directory"),
        (
            ["--hyp", "{d}/latin1.txt", "--ref", "{d}/latin1.txt"],
            "latin1.txt is not valid UTF-8 (byte 0xe9 at offset 3)",
        ),
        (
            ["--hyp", "{d}/hyp.txt", "--ref", "{d}/ref.txt", "--ref", "{d}/hyp.txt"],
            "every --ref file needs one line per group",
        ),
    ],
)
def test_bad_input_is_one_line_exit_2(registry, files, args, message):
    args = [a.format(d=files) for a in args]
    if "--hyp" not in args:
        args += ["--sample"]
    result = run(registry, "score", *args)
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: ")
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output


class Exploding(rewardkit.GroupwiseReward):
    """Fails on purpose."""

    name = "exploding"

    def prepare(self, references, source):
        return None

    def score_one(self, prepared, completion):
        raise ZeroDivisionError("division by zero")


class ExplodingPlugin:
    @rewardkit.hookimpl
    def register_rewards(self, register):
        register(Exploding)


def test_plugin_raising_while_scoring_is_named_and_debug_shows_the_traceback():
    reg = rewardkit.load_registry(entry_points=False, plugins={"explosives": ExplodingPlugin()})
    result = run(reg, "score", "--sample", "-r", "bleu=0.5,exploding=0.5")
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "Error: reward 'exploding' (plugin 'explosives') failed while scoring: "
        "ZeroDivisionError: division by zero"
    )
    result = run(reg, "--debug", "score", "--sample", "-r", "exploding")
    assert isinstance(result.exception, rewardkit.RewardError)


def test_main_disable_plugin_is_read_before_parsing(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--disable-plugin", "sacrebleu_rewards", "score", "--sample", "-r", "bleu"])
    assert info.value.code == 2
    assert "reward 'bleu' belongs to plugin 'sacrebleu_rewards'" in capsys.readouterr().err


HEAVY = [
    "torch",
    "transformers",
    "deepspeed",
    "peft",
    "bert_score",
    "comet",
    "sacrebleu",
    "nltk",
    "rouge_score",
    "numpy",
]


@pytest.mark.parametrize("args", [["--help"], ["plugins"], ["plugins", "--json"], ["--version"]])
def test_help_and_plugins_import_nothing_heavy(args):
    code = (
        "import sys\n"
        "from rewardkit.cli import main\n"
        "try:\n"
        f"    main({args!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        f"print('HEAVY', sorted(m for m in {HEAVY!r} if m in sys.modules), file=sys.stderr)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "HEAVY []" in proc.stderr, proc.stderr


def test_python_dash_m_runs_the_cli():
    proc = subprocess.run(
        [sys.executable, "-m", "rewardkit", "--version"], capture_output=True, text=True, check=True
    )
    assert proc.stdout.startswith("rewardkit, version ")


class CommandPlugin:
    @rewardkit.hookimpl
    def register_commands(self, cli):
        import click

        @cli.command()
        @click.argument("who")
        def greet(who):
            """Greet somebody."""
            click.echo(f"hello {who}")


class HijackPlugin:
    @rewardkit.hookimpl
    def register_commands(self, cli):
        import click

        @cli.command(name="score")
        def fake_score():
            click.echo("hijacked")


def test_plugin_commands_run_and_are_listed():
    reg = rewardkit.load_registry(entry_points=False, plugins={"greeter": CommandPlugin()})
    assert run(reg, "greet", "you").stdout == "hello you\n"
    data = json.loads(run(reg, "plugins", "--json").stdout)
    assert {
        "name": "greet",
        "kind": "command",
        "plugin": "greeter",
        "version": None,
        "status": "ok",
        "summary": "Greet somebody",
    } in data["entries"]


def test_plugin_may_not_replace_a_command():
    reg = rewardkit.load_registry(entry_points=False, plugins={"hijack": HijackPlugin()})
    result = run(reg, "score", "--sample")
    assert result.exit_code == 0 and "hijacked" not in result.output
    assert reg.plugins["hijack"].error == "register_commands tried to replace command 'score'"


# --- the thread setup, plugins table, help defaults, disabled plugins ---------------------------


@pytest.fixture
def threads(monkeypatch):
    """configure_threads with a clean OMP_NUM_THREADS; torch's thread count restored after."""
    from rewardkit.cli import configure_threads

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    torch = sys.modules.get("torch")
    before = torch.get_num_threads() if torch else None
    yield configure_threads
    if torch:
        torch.set_num_threads(before)


def test_unset_threads_become_one_and_the_log_says_so(threads):
    import os

    note = threads(["train", "--steps", "2"])
    assert os.environ["OMP_NUM_THREADS"] == "1"
    assert note.startswith("rewardkit: 1 CPU thread (OMP_NUM_THREADS is unset")
    assert threads(["plugins"]) is None  # set, but only commands that run models say so


def test_explicit_threads_are_honoured(threads, monkeypatch):
    import os

    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert threads(["train"]) is None and os.environ["OMP_NUM_THREADS"] == "3"
    assert threads(["--threads", "2", "train"]) is None and os.environ["OMP_NUM_THREADS"] == "2"
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert threads(["train", "--device", "cuda"]) is None  # not a CPU run: left alone
    assert "OMP_NUM_THREADS" not in os.environ
    with pytest.raises(rewardkit.RewardkitError, match="--threads must be a positive integer"):
        threads(["--threads", "0", "train"])


def test_main_logs_the_thread_setup_once(monkeypatch, capsys, tmp_path):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    torch = sys.modules.get("torch")
    before = torch.get_num_threads() if torch else None
    try:
        with pytest.raises(SystemExit):
            main(["train", "--data", str(tmp_path / "missing"), "--steps", "1"])
    finally:
        if torch:
            torch.set_num_threads(before)
    err = capsys.readouterr().err
    assert err.count("CPU thread") == 1


def test_plugins_piped_prints_tab_separated_rows(registry):
    result = run(registry, "plugins")  # CliRunner's stdout is not a terminal
    lines = result.stdout.splitlines()
    assert lines[0] == "name\tkind\tplugin\tversion\tstatus\tsummary"
    assert all(len(line.split("\t")) == 6 for line in lines)
    assert "bleu\treward\tsacrebleu_rewards\t" in result.stdout
    assert "│" not in result.stdout and "\x1b[" not in result.stdout


def test_plugins_table_fits_80_columns():
    import click

    from rewardkit.cli import plugin_rows, plugins_table

    class Broken:
        @rewardkit.hookimpl
        def register_rewards(self, register):
            raise ValueError("missing config " + "x" * 150)

    reg = rewardkit.load_registry(
        ["rouge_rewards"], entry_points=False, plugins={"broken": Broken()}
    )
    table = click.unstyle(plugins_table(plugin_rows(reg), 80))
    assert max(len(line) for line in table.splitlines()) <= 80
    assert "rouge_rewards 0.1.0  disabled" in table.replace(rewardkit.__version__, "0.1.0")
    assert "broken  error" in table and "missing config" in table
    assert any(line.split()[:2] == ["bleu", "reward"] for line in table.splitlines())


def test_a_disabled_plugins_reward_is_reported_as_disabled(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--disable-plugin", "sacrebleu_rewards", "score", "--sample", "-r", "bleu=0.5,chrf"])
    assert info.value.code == 2
    assert (
        "Error: reward 'bleu' belongs to plugin 'sacrebleu_rewards', which is disabled"
        in capsys.readouterr().err
    )


def _commands(group, prefix=()):
    import click

    for name, command in group.commands.items():
        yield (*prefix, name), command
        if isinstance(command, click.Group):
            yield from _commands(command, (*prefix, name))


def test_every_option_has_help_and_shows_its_default(registry):
    """Every option of every command says what it does and, where it has a default, shows it
    (train's options: always, as "[default: ...]")."""
    import click

    group = build_cli(registry)
    missing, no_default = [], []
    for path, command in _commands(group):
        ctx = click.Context(command, info_name=path[-1])
        for param in command.params:
            if not isinstance(param, click.Option) or param.name == "help":
                continue
            record = param.get_help_record(ctx)
            label = f"{' '.join(path)} {param.opts[0]}"
            if not param.help:
                missing.append(label)
            default = param.get_default(ctx, call=False)
            has_default = not (param.is_flag or param.multiple) and isinstance(
                default, (str, int, float)
            )  # click marks "no default" with a sentinel
            meaningful = has_default or path == ("train",)
            if meaningful and "[default:" not in record[1]:
                no_default.append(label)
    assert not missing, f"options without help: {missing}"
    assert not no_default, f"options whose default is not shown: {no_default}"
