"""Bad input, one table per command: (arguments, exit code, message fragment, files to set up).

Every case runs the real command line (click's CliRunner) in an empty working directory holding
only the case's files, and checks the exit code, that the message names the problem, that no
traceback leaks, and that nothing in the directory was created, changed or removed. Errors are
caught before any work: these cases load no model and synthesise no speech.
"""

from __future__ import annotations

import hashlib
import io
import types
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import rewardkit
from rewardkit import registry as registry_module
from rewardkit.cli import build_cli, main


@dataclass
class Case:
    args: str  # split on spaces; "" is an empty argument
    code: int
    fragment: str
    files: dict[str, str | bytes] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.args


def wav(samples: list[float], subtype: str = "FLOAT") -> bytes:
    """A 16 kHz mono wav file's bytes."""
    import soundfile

    buffer = io.BytesIO()
    soundfile.write(buffer, np.asarray(samples, dtype=np.float32), 16_000, subtype, format="WAV")
    return buffer.getvalue()


GOOD = [0.01 * (i % 7) for i in range(1600)]
NAN = [*GOOD[:800], float("nan"), *GOOD[801:]]
ROW = '{{"id": "{id}", "audio": "{audio}", "transcript": "a cat", "translation": "eine Katze"}}\n'
HYP, REF = {"h.txt": "a b c\n"}, {"r.txt": "a b c\n"}
LATIN1 = "steps = 3\n# caf\xe9\n".encode("latin-1")


def snapshot(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "/"
        for p in sorted(root.rglob("*"))
    }


def check(registry, tmp_path, monkeypatch, case: Case) -> None:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("REWARDKIT_CACHE", str(tmp_path / "cache"))
    for name, value in case.env.items():
        monkeypatch.setenv(name, value)
    for name, content in case.files.items():
        path = work / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    before = snapshot(work)
    args = [a if a != '""' else "" for a in case.args.split(" ")]
    result = CliRunner().invoke(build_cli(registry), args)
    assert result.exit_code == case.code, result.output
    assert case.fragment in result.output, result.output
    assert "Traceback" not in result.output
    if case.code == 2 and not result.output.startswith("Usage:"):  # ours: exactly one line
        assert len(result.output.strip().splitlines()) == 1, result.output
    assert snapshot(work) == before, "the command changed files"


def table(cases: list[Case]):
    return pytest.mark.parametrize("case", cases, ids=str)


# --- rewardkit train ----------------------------------------------------------------------------

TRAIN = [
    Case("train --max-grad-norm nan", 2, "--max-grad-norm must be a finite number"),
    Case("train --max-grad-norm -1", 2, "--max-grad-norm must be >= 0"),
    Case("train --learning-rate inf", 2, "--learning-rate must be a finite number"),
    Case("train --learning-rate 0", 2, "--learning-rate must be > 0"),
    Case("train --temperature 0", 2, "--temperature must be > 0"),
    Case("train --temperature -inf", 2, "--temperature must be a finite number"),
    Case("train --top-p 1.5", 2, "--top-p must be in (0, 1]"),
    Case("train --top-p 0", 2, "--top-p must be in (0, 1]"),
    Case("train --eval-top-p nan", 2, "--eval-top-p must be a finite number"),
    Case("train --beta -0.1", 2, "--beta must be >= 0"),
    Case("train --beta nan", 2, "--beta must be a finite number"),
    Case("train --epsilon-low 1", 2, "--epsilon-low must be in [0, 1)"),
    Case("train --epsilon-high -0.2", 2, "--epsilon-high must be >= 0"),
    Case("train --std-floor 0", 2, "--std-floor must be > 0"),
    Case("train --weight-decay -1", 2, "--weight-decay must be >= 0"),
    Case("train --steps 0", 2, "--steps must be >= 1"),
    Case("train --epochs 0", 2, "--epochs must be >= 1"),
    Case("train --epochs 2 --steps 5", 2, "give --epochs or --steps"),
    Case("train --group-size 1", 2, "--group-size must be >= 2"),
    Case("train --batch-size 0", 2, "--batch-size must be >= 1"),
    Case("train --grad-accum 9", 2, "--grad-accum must be between 1 and --batch-size"),
    Case("train --max-new-tokens 0", 2, "--max-new-tokens must be >= 1"),
    Case("train --warmup-steps -1", 2, "--warmup-steps must be >= 0"),
    Case("train --data-size 5", 2, "--data-size must be >= 10"),
    Case("train --seed -1", 2, "--seed must be >= 0"),
    Case("train --lora-r 8 --lora-alpha 0", 2, "--lora-alpha must be >= 1"),
    Case("train --log-samples -1", 2, "--log-samples must be >= 0"),
    Case("train --keep-last 0", 2, "--keep-last must be >= 1"),
    Case("train --num-iterations 0", 2, "--num-iterations (mu) must be >= 1"),
    Case("train --off-policy-k 3", 2, "--off-policy-k needs --off-policy reference"),
    Case("train --off-policy reference --off-policy-k 8", 2, "--off-policy-k must be between"),
    Case("train --no-save --save-interval 5", 2, "--save-interval needs checkpoints"),
    Case("train --zero-stage 3", 2, "need --backend deepspeed"),
    Case("train --steps 2.5", 2, "'2.5' is not a valid integer"),
    Case("train --loss-type nope", 2, "'nope' is not one of"),
    Case("train --reward bleu=0.5,bleu=0.5", 2, "'bleu' appears twice"),
    Case("train --reward bleu=nan", 2, "bad weight 'nan'"),
    Case("train --reward bleu:smooth=nope", 2, "choose one of exp, floor"),
    Case("train --reward nosuch", 2, "unknown reward 'nosuch'; available:"),
    Case("train --reward comet:timeout=nan", 2, "expected a finite number"),
    Case("train --task nosuch", 2, "unknown task 'nosuch'"),
    Case("train --resume nowhere", 2, "cannot resume nowhere: it is not a run directory"),
]


@table(TRAIN)
def test_train(registry, tmp_path, monkeypatch, case):
    check(registry, tmp_path, monkeypatch, case)


# --- rewardkit train --config -------------------------------------------------------------------

CONFIG = [
    Case("train --config c.toml", 2, "c.toml is not valid UTF-8", {"c.toml": LATIN1}),
    Case("train --config c.yaml", 2, "c.yaml is not valid UTF-8", {"c.yaml": LATIN1}),
    Case(
        "train --config c.toml",
        2,
        "c.toml: max_grad_norm = nan is not a finite number",
        {"c.toml": "max_grad_norm = nan\n"},
    ),
    Case(
        "train --config c.toml",
        2,
        "c.toml: temperature = inf is not a finite number",
        {"c.toml": "temperature = inf\n"},
    ),
    Case(
        "train --config c.yaml",
        2,
        "c.yaml: top_p = nan is not a finite number",
        {"c.yaml": "top_p: .nan\n"},
    ),
    Case("train --config c.toml", 2, "unknown key 'stepz'", {"c.toml": "stepz = 3\n"}),
    Case(
        "train --config c.toml",
        2,
        "c.toml: steps = True is not a valid int",
        {"c.toml": "steps = true\n"},
    ),
    Case("train --config c.toml", 2, "is not valid TOML", {"c.toml": "steps = = 3\n"}),
    Case("train --config c.json", 2, "must end in .toml, .yaml or .yml", {"c.json": "{}"}),
    Case("train --config c.yaml", 2, "must hold a table of settings", {"c.yaml": "- 1\n"}),
    Case(
        "train --config c.toml",
        2,
        "comet:env= runs a program",
        {"c.toml": 'reward = "comet:env=/tmp/x"\n'},
    ),
    Case("train --config c.toml --steps 0", 2, "--steps must be >= 1", {"c.toml": "steps = 3\n"}),
]


@table(CONFIG)
def test_train_config_file(registry, tmp_path, monkeypatch, case):
    check(registry, tmp_path, monkeypatch, case)


def test_a_resumed_run_config_cannot_run_a_program(registry, tmp_path, monkeypatch):
    stored = '{"reward": "comet:env=/tmp/x", "steps": 3}'
    case = Case("train --resume run", 2, "comet:env= runs a program", {"run/config.json": stored})
    check(registry, tmp_path, monkeypatch, case)


# --- rewardkit train: data (checked when it loads, before the model is built) -------------------

_ST = "--task speech_translation --data d --model nosuch-model"
MANIFEST = [
    Case(
        f"train {_ST}",
        2,
        "samples are NaN or infinite",
        {
            "d/train.jsonl": ROW.format(id="a", audio="a.wav") + ROW.format(id="b", audio="b.wav"),
            "d/a.wav": wav(GOOD),
            "d/b.wav": wav(NAN),
        },
    ),
    Case(
        f"train {_ST}",
        2,
        "samples are NaN or infinite",
        {
            "d/train.jsonl": ROW.format(id="a", audio="a.wav"),
            "d/a.wav": wav([float("inf")] * 1600, "DOUBLE"),
        },
    ),
    Case(
        f"train {_ST}",
        2,
        "audio path '../x.wav' leaves the manifest's directory",
        {"d/train.jsonl": ROW.format(id="a", audio="../x.wav"), "x.wav": wav(GOOD)},
    ),
    Case(
        f"train {_ST}",
        2,
        "REWARDKIT_ALLOW_AUDIO_OUTSIDE=1",
        {"d/train.jsonl": ROW.format(id="a", audio="/etc/passwd.wav")},
    ),
    Case(
        f"train {_ST}",
        2,
        "field 'translation' must be text, got dict",
        {
            "d/train.jsonl": '{"id": "a", "audio": "a.wav", "translation": {"x": 1}}\n',
            "d/a.wav": wav(GOOD),
        },
    ),
    Case(f"train {_ST}", 2, "d/train.jsonl line 1: not valid JSON", {"d/train.jsonl": "{\n"}),
    Case(
        "train --task text --data t.jsonl --model nosuch-model",
        2,
        "t.jsonl line 2 (id 'b'): field 'prompt' must be text, got list",
        {
            "t.jsonl": '{"id": "a", "prompt": "p", "reference": "r"}\n'
            '{"id": "b", "prompt": [1], "reference": "r"}\n'
        },
    ),
    Case(
        "train --task text --data t.jsonl --model nosuch-model",
        2,
        "t.jsonl is not UTF-8",
        {"t.jsonl": LATIN1},
    ),
    Case("train --data runs/nothing", 2, "data runs/nothing does not exist", {"runs/x": ""}),
]


@table(MANIFEST)
def test_train_data(registry, tmp_path, monkeypatch, case):
    check(registry, tmp_path, monkeypatch, case)


def test_audio_outside_the_manifest_loads_when_allowed(registry, tmp_path, monkeypatch):
    (tmp_path / "d").mkdir()
    (tmp_path / "x.wav").write_bytes(wav(GOOD))
    (tmp_path / "d" / "train.jsonl").write_text(ROW.format(id="a", audio="../x.wav"))
    task = registry.get("task", "speech_translation")()
    with pytest.raises(rewardkit.RewardkitError, match="leaves the manifest's directory"):
        task.load(str(tmp_path / "d"), "train")
    monkeypatch.setenv("REWARDKIT_ALLOW_AUDIO_OUTSIDE", "1")
    [example] = task.load(str(tmp_path / "d"), "train").examples
    assert Path(example.audio).resolve() == (tmp_path / "x.wav").resolve()


def test_a_nan_row_is_skipped_at_load_with_skip_bad_rows(registry, tmp_path):
    (tmp_path / "train.jsonl").write_text(
        ROW.format(id="a", audio="a.wav") + ROW.format(id="b", audio="b.wav")
    )
    (tmp_path / "a.wav").write_bytes(wav(GOOD))
    (tmp_path / "b.wav").write_bytes(wav(NAN))
    task = registry.get("task", "speech_translation")()
    result = task.load(str(tmp_path), "train", skip_bad_rows=True)
    assert [e.id for e in result.examples] == ["a"] and result.skipped == {"corrupt_audio": 1}


# --- rewardkit eval -----------------------------------------------------------------------------

EVAL = [
    Case("eval --model runs/none", 2, "never looked up on a model hub", {"runs/other": ""}),
    Case("eval --model ./none", 2, "--model ./none does not exist"),
    Case("eval --model ../none", 2, "--model ../none does not exist"),
    Case("eval --model /no/such/model", 2, "--model /no/such/model does not exist"),
    Case("eval --model ~/no-such-model-dir", 2, "does not exist"),
    Case("eval --model a/b/c", 2, "--model a/b/c does not exist"),
    Case("eval --model f.txt", 2, "is a file, not a run", {"f.txt": "x"}),
    Case("eval --model x --temperature nan", 2, "--temperature must be a finite number"),
    Case("eval --model x --temperature 0", 2, "--temperature must be > 0"),
    Case("eval --model x --top-p 2", 2, "--top-p must be in (0, 1]"),
    Case("eval --model x --runs 0", 2, "--runs must be >= 1"),
    Case("eval --model x --greedy --runs 3", 2, "--greedy is one deterministic run"),
    Case("eval --model x --batch-size 0", 2, "--batch-size must be >= 1"),
    Case("eval --model x --limit 0", 2, "--limit must be >= 1"),
    Case("eval --model x --seed -2", 2, "--seed must be >= 0"),
    Case("eval --model x --max-new-tokens 0", 2, "--max-new-tokens must be >= 1"),
    Case('eval --model x --metrics ""', 2, "--metrics is empty"),
    Case('eval --model ""', 2, "--model is empty"),
]


@table(EVAL)
def test_eval(registry, tmp_path, monkeypatch, case):
    check(registry, tmp_path, monkeypatch, case)


# --- rewardkit bench ----------------------------------------------------------------------------

_DATA = '{"id": "1", "reference": "a b c"}\n'
BENCH = [
    Case(
        "bench --data d.jsonl",
        2,
        "d.jsonl:2: field 'reference' must be text, got int 123",
        {"d.jsonl": _DATA + '{"id": "2", "reference": 123}\n'},
    ),
    Case(
        "bench --data d.jsonl",
        2,
        "d.jsonl:3: field 'source' must be text, got list",
        {"d.jsonl": _DATA + "\n" + '{"id": "2", "reference": "x", "source": [1]}\n'},
    ),
    Case(
        "bench --data d.jsonl",
        2,
        "d.jsonl:1: field 'id' must be text or an integer",
        {"d.jsonl": '{"id": {"a": 1}, "reference": "x"}\n'},
    ),
    Case(
        "bench --data d.jsonl",
        2,
        "d.jsonl:1: field 'lang' must be text, got bool",
        {"d.jsonl": '{"id": 1, "reference": "x", "lang": true}\n'},
    ),
    Case("bench --data d.jsonl", 2, "d.jsonl:1 lacks reference", {"d.jsonl": '{"id": "1"}\n'}),
    Case("bench --data d.jsonl", 2, "d.jsonl:1 is not valid JSON", {"d.jsonl": "{\n"}),
    Case("bench --data d.jsonl", 2, "d.jsonl:1 is not a JSON object", {"d.jsonl": "[1]\n"}),
    Case("bench --data d.jsonl", 2, "d.jsonl is not valid UTF-8", {"d.jsonl": LATIN1}),
    Case("bench --data d.jsonl", 2, "d.jsonl has no rows", {"d.jsonl": ""}),
    Case(
        "bench --data d.jsonl --human h.jsonl",
        2,
        "h.jsonl:1: field 'hypothesis' must be text",
        {"d.jsonl": _DATA, "h.jsonl": '{"id": "1", "system": "s", "hypothesis": 5, "score": 1}\n'},
    ),
    Case("bench --data nofile.jsonl", 2, "cannot read nofile.jsonl: no such file"),
    Case("bench --sections nosuch", 2, "unknown section 'nosuch'"),
    Case("bench -r nosuch", 2, "unknown reward 'nosuch'"),
    Case("bench -r bleu=1,bleu=1", 2, "'bleu' appears twice"),
    Case("bench --items 1", 2, "1 is not in the range x>=2"),
    Case("bench --bootstrap 5", 2, "5 is not in the range x>=10"),
    Case("bench --seed -1", 2, "-1 is not in the range x>=0"),
    Case("bench --group-size 1", 2, "1 is not in the range x>=2"),
]


@table(BENCH)
def test_bench(registry, tmp_path, monkeypatch, case):
    check(registry, tmp_path, monkeypatch, case)


# --- rewardkit score ----------------------------------------------------------------------------

SCORE = [
    Case(
        "score --hyp h.txt --ref r.txt -o out.tsv",
        2,
        "h.txt and r.txt are empty",
        {"h.txt": "", "r.txt": ""},
    ),
    Case(
        "score --hyp h.txt --ref r.txt", 2, "h.txt and r.txt are empty", {"h.txt": "", "r.txt": ""}
    ),
    Case(
        "score --hyp h.txt --ref r.txt -r bleu=0.5,bleu=0.5",
        2,
        "'bleu' appears twice",
        {**HYP, **REF},
    ),
    Case(
        "score --hyp h.txt --ref r.txt -r bleu:tokenize=intl,bleu:tokenize=intl",
        2,
        "'bleu:tokenize=intl' appears twice",
        {**HYP, **REF},
    ),
    Case("score --sample --hyp h.txt --ref r.txt", 2, "drop --hyp/--ref/--src", {**HYP, **REF}),
    Case("score --sample --src h.txt", 2, "drop --hyp/--ref/--src", HYP),
    Case("score --hyp h.txt", 2, "give --hyp FILE and --ref FILE", HYP),
    Case(
        "score --hyp h.txt --ref r.txt -o nodir/out.tsv",
        2,
        "directory nodir does not exist",
        {**HYP, **REF},
    ),
    Case(
        "score --hyp h.txt --ref r.txt -o sub",
        2,
        "--output sub is a directory",
        {**HYP, **REF, "sub/keep": ""},
    ),
    Case("score --hyp h.txt --ref r.txt -g 2", 2, "need 2; check --group-size", {**HYP, **REF}),
    Case("score --hyp h.txt --ref r.txt -g 0", 2, "0 is not in the range x>=1", {**HYP, **REF}),
    Case(
        "score --hyp h.txt --ref r.txt --ref r2.txt",
        2,
        "r2.txt has 2 lines",
        {**HYP, **REF, "r2.txt": "a\nb\n"},
    ),
    Case("score --hyp h.txt --ref r.txt", 2, "h.txt is not valid UTF-8", {"h.txt": LATIN1, **REF}),
    Case("score --hyp nofile --ref r.txt", 2, "cannot read nofile: no such file", REF),
    Case("score --hyp h.txt --ref r.txt -r bleu=-1", 2, "bad weight '-1'", {**HYP, **REF}),
    Case("score --hyp h.txt --ref r.txt -r bleu=inf", 2, "bad weight 'inf'", {**HYP, **REF}),
    Case(
        "score --hyp h.txt --ref r.txt -r bertscore:num_layers=nan",
        2,
        "expected int",
        {**HYP, **REF},
    ),
    Case(
        "score --hyp h.txt --ref r.txt -r comet:batch_size=inf", 2, "expected int", {**HYP, **REF}
    ),
    Case("score --hyp h.txt --ref r.txt -r bleu,", 2, "empty item", {**HYP, **REF}),
    Case("score --hyp h.txt --ref r.txt --format xml", 2, "'xml' is not one of", {**HYP, **REF}),
    Case(
        "score --hyp h.txt --ref r.txt -r bertscore:model=runs/none",
        2,
        "model path 'runs/none' does not exist",
        {**HYP, **REF, "runs/x": ""},
    ),
    Case(
        "score --hyp h.txt --ref r.txt --src s.txt -r comet:model=./none.ckpt",
        2,
        "no such checkpoint file",
        {**HYP, **REF, "s.txt": "x\n"},
    ),
    Case(
        "score --hyp h.txt --ref r.txt --src s.txt -r comet",
        2,
        "env=./noenv: no bin/python there",
        {**HYP, **REF, "s.txt": "x\n"},
        {"REWARDKIT_COMET_ENV": "./noenv"},
    ),
    Case(
        "score --hyp h.txt --ref r.txt --src s.txt -r comet:env=./noenv",
        2,
        "no bin/python there",
        {**HYP, **REF, "s.txt": "x\n"},
    ),
]


@table(SCORE)
def test_score(registry, tmp_path, monkeypatch, case):
    check(registry, tmp_path, monkeypatch, case)


def test_score_two_weightings_of_one_reward_keep_their_own_columns(registry, tmp_path):
    (tmp_path / "h.txt").write_text("a b c\n")
    (tmp_path / "r.txt").write_text("a b d\n")
    spec = "0.5*bleu,0.5*bleu:smooth=floor"
    args = ["score", "--hyp", str(tmp_path / "h.txt"), "--ref", str(tmp_path / "r.txt"), "-r", spec]
    result = CliRunner().invoke(build_cli(registry), args)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0].split("\t")[3:] == ["bleu", "bleu:smooth=floor"]
    assert result.stderr.count("bleu: BLEU") == 1


# --- rewardkit data make, model assemble / export, serve, plot ----------------------------------

OTHER = [
    Case("data make --size 0 --out d", 2, "--size must be at least 10"),
    Case("data make --size 5 --out d", 2, "--size must be at least 10"),
    Case("data make --task xx --out d", 2, "'xx' is not one of"),
    Case("data make -j 0 --out d", 2, "0 is not in the range x>=1"),
    Case("data make --out f.txt", 2, "is a file", {"f.txt": "x"}),
    Case("model assemble --out o", 2, "pass --encoder and --llm"),
    Case(
        "model assemble --encoder runs/none --llm runs/x --out o",
        2,
        "--encoder runs/none: no such directory (a local path is never looked up",
        {"runs/x": ""},
    ),
    Case("model assemble --encoder ./enc --llm ./lm --out o", 2, "--encoder ./enc: no such"),
    Case("model assemble --from-wheels --whisper huge --out o", 2, "'huge' is not one of"),
    Case("model assemble --from-wheels --seed -3 --out o", 2, "-3 is not in the range x>=0"),
    Case("model export runs/none --out o", 2, "never looked up on a model hub", {"runs/x": ""}),
    Case("model export", 2, "Missing argument 'SOURCE'"),
    Case("serve --port 70000", 2, "70000 is not in the range"),
    Case("serve --max-batch 0", 2, "0 is not in the range x>=1"),
    Case("serve -r bleu -r bleu", 2, "the same --reward is given twice"),
    Case("serve -r nosuch", 2, "unknown reward 'nosuch'"),
    Case("serve -r bleu=1,bleu=1", 2, "'bleu' appears twice"),
    Case("plot nosuch", 2, "nosuch does not exist"),
]


@table(OTHER)
def test_other_commands(registry, tmp_path, monkeypatch, case):
    check(registry, tmp_path, monkeypatch, case)


# --- plugins ------------------------------------------------------------------------------------


class _Boom(rewardkit.Reward):
    """Fails to start."""

    name = "boom"

    def __init__(self) -> None:
        raise RuntimeError("no GPU here")

    def score(self, groups):
        raise AssertionError


class _Quit(_Boom):
    """Calls sys.exit() when built."""

    name = "quit"

    def __init__(self) -> None:
        raise SystemExit(4)


class _BoomPlugin:
    @rewardkit.hookimpl
    def register_rewards(self, register):
        register(_Boom)
        register(_Quit)


class _EntryPoint:
    def __init__(self, name: str, exc: BaseException):
        self.name, self.value, self._exc = name, f"{name}_module:plugin", exc
        self.dist = types.SimpleNamespace(name=f"{name}-dist", version="1.0")

    def load(self):
        raise self._exc


PLUGIN_REWARDS = [
    Case("score --sample -r boom", 2, "reward 'boom' (plugin 'boomer') failed to start: Runtime"),
    Case("score --sample -r chrf,quit", 2, "reward 'quit' (plugin 'boomer') failed to start: Sys"),
    Case("train --reward boom --task nosuch", 2, "unknown task 'nosuch'"),  # names before building
]


@table(PLUGIN_REWARDS)
def test_a_reward_that_raises_in_init_is_named(tmp_path, monkeypatch, case):
    registry = rewardkit.load_registry(entry_points=False, plugins={"boomer": _BoomPlugin()})
    check(registry, tmp_path, monkeypatch, case)


def test_non_finite_decoded_or_embedded_audio_is_found_when_its_header_is_read():
    from rewardkit.audio import AudioError, audio_info

    with pytest.raises(AudioError, match="NaN or infinite"):
        audio_info((np.array(NAN, dtype=np.float32), 16_000), where="row 3")
    with pytest.raises(AudioError, match=r"row 4: embedded audio .* NaN or infinite"):
        audio_info(wav(NAN), where="row 4")
    assert audio_info(wav(GOOD, "PCM_16")).frames == 1600  # integer audio: the header only


@pytest.mark.parametrize("exc", [SystemExit(3), SystemExit("bye"), GeneratorExit()], ids=repr)
def test_a_plugin_that_exits_at_import_is_reported_and_the_rest_works(monkeypatch, capsys, exc):
    monkeypatch.setattr(
        registry_module.importlib.metadata, "entry_points", lambda group: [_EntryPoint("bye", exc)]
    )
    registry = rewardkit.load_registry()
    status = registry.plugins["bye"]
    assert status.status == "error" and type(exc).__name__ in status.error
    assert "entry point bye = bye_module:plugin" in status.error
    for args in (["--help"], ["plugins"], ["score", "--sample"]):
        with pytest.raises(SystemExit) as stop:
            main(args)
        assert stop.value.code in (0, None)
        err = capsys.readouterr().err
        assert "warning: plugin 'bye' is broken and was skipped" in err
        assert "--disable-plugin bye" in err


def test_keyboard_interrupt_in_a_plugin_still_stops(monkeypatch):
    monkeypatch.setattr(
        registry_module.importlib.metadata,
        "entry_points",
        lambda group: [_EntryPoint("ctrl", KeyboardInterrupt())],
    )
    with pytest.raises(KeyboardInterrupt):
        rewardkit.load_registry()


@pytest.mark.parametrize(
    "source", ["runs/none", "./none", "../none", "/no/such", "~/no-such", "a/b/c"]
)
def test_a_local_looking_data_source_is_never_a_hub_name(tmp_path, monkeypatch, source):
    from rewardkit.tasks import DataError, resolve_source

    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    with pytest.raises(DataError, match="does not exist; check the path"):
        resolve_source(source, "train")
    assert resolve_source("owner/name", "train").kind == "hub"  # owner is no local directory
