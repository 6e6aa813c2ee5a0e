"""The worked example third-party plugin (docs/examples/rewardkit-wer), installed for real.

A module fixture pip-installs the example from its own pyproject into a temporary directory (a
real ``.dist-info`` with ``entry_points.txt``); the tests put that directory on ``sys.path`` or
``PYTHONPATH`` and check discovery, the CLI, disabling, and a broken neighbour plugin.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import rewardkit

jiwer = pytest.importorskip("jiwer", reason="the example plugin needs jiwer (rewardkit[test])")

EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "examples" / "rewardkit-wer"
MODULE = "rewardkit_wer"
ENV_VARS = ("REWARDKIT_DISABLE_PLUGINS", "REWARDKIT_DISABLE_PLUGIN_AUTOLOAD")
BROKEN_MESSAGE = "rewardkit_broken needs the package 'not_installed_anywhere'"

# One reference per line, group size 1: a substitution, case and punctuation, WER > 1 (clipped),
# and a perfect match.
REFS = ["the cat sat on the mat", "Hello, World!", "a b c", "one two three four"]
HYPS = ["the cat sat on a mat", "hello world", "x y z w v u", "one two three four"]


def expected(reference: str, hypothesis: str) -> float:
    """The reference implementation: 1 - min(WER, 1), straight from jiwer."""
    return 1.0 - min(jiwer.wer(reference, hypothesis), 1.0)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example installed with pip (no dependencies) into a temporary target directory."""
    work = tmp_path_factory.mktemp("rewardkit_wer")
    # pip builds in the source tree (build/, *.egg-info): build a copy to keep the repository clean.
    source = work / "source"
    shutil.copytree(
        EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__")
    )
    target = work / "site"
    command = [
        *(sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation"),
        *("--no-index", "--disable-pip-version-check", "--quiet", "--target", str(target)),
        str(source),
    ]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"pip install failed:\n{proc.stdout}\n{proc.stderr}"
    assert (target / "rewardkit_wer-0.1.0.dist-info" / "entry_points.txt").is_file()
    return target


@pytest.fixture(scope="module")
def broken_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A hand-made distribution whose plugin module raises ImportError when imported."""
    root = tmp_path_factory.mktemp("rewardkit_broken")
    (root / "rewardkit_broken.py").write_text(f"raise ImportError({BROKEN_MESSAGE!r})\n")
    info = root / "rewardkit_broken-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: rewardkit-broken\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[rewardkit]\nbroken = rewardkit_broken\n")
    return root


@pytest.fixture
def on_path(site: Path, monkeypatch: pytest.MonkeyPatch):
    """The installed example on sys.path of this process (conftest clears the plugin variables)."""
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    yield site
    sys.modules.pop(MODULE, None)


def run_cli(
    *args: str, paths: tuple[Path, ...], env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m rewardkit ARGS`` with PYTHONPATH set to ``paths``."""
    environ = {k: v for k, v in os.environ.items() if k not in ENV_VARS}
    environ.update(PYTHONPATH=os.pathsep.join(map(str, paths)), OMP_NUM_THREADS="1", COLUMNS="250")
    environ.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "rewardkit", *args],
        capture_output=True,
        text=True,
        env=environ,
        timeout=60,
    )


def plugins_json(*args: str, paths: tuple[Path, ...], env: dict[str, str] | None = None) -> dict:
    proc = run_cli(*args, "plugins", "--json", paths=paths, env=env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


# --- (a) discovery in this process --------------------------------------------------------------


def test_load_registry_finds_the_installed_entry_point(on_path: Path):
    registry = rewardkit.load_registry()
    [entry] = [e for e in registry.entries("reward") if e.name == "wer"]
    assert entry.plugin == "wer"
    assert entry.summary.startswith("Word accuracy: 1 - min(WER, 1)")
    status = registry.plugins["wer"]
    assert (status.origin, status.status, status.error) == ("entry point", "ok", None)
    assert status.distribution == "rewardkit-wer"
    assert status.version == importlib.metadata.version("rewardkit-wer") == "0.1.0"
    # The installed copy was loaded, not the source in docs/examples.
    assert Path(sys.modules[MODULE].__file__).parent == on_path


def test_scores_match_jiwer_and_define_the_edge_cases(on_path: Path):
    reward = rewardkit.load_registry().build_reward("wer")
    groups = [rewardkit.Group(references=[r], completions=[h]) for r, h in zip(REFS, HYPS)]
    scores = [row[0] for row in reward(groups).scores]
    assert scores == pytest.approx([expected(r, h) for r, h in zip(REFS, HYPS)])
    assert scores == pytest.approx([5 / 6, 0.0, 0.0, 1.0])

    edge = reward(
        [
            # Empty reference (also whitespace-only): only an empty completion is right.
            rewardkit.Group(references=[""], completions=["", "  ", "a"]),
            rewardkit.Group(references=["   "], completions=["", "a"]),
            # Several references: the lowest WER counts; an empty completion deletes everything.
            rewardkit.Group(references=["a b c d", "a b"], completions=["a b", "a b c", ""]),
        ]
    )
    assert edge.scores == [[1.0, 1.0, 0.0], [1.0, 0.0], [1.0, pytest.approx(0.75), 0.0]]
    assert edge.diagnostics["unique_fraction"] == 1.0

    duplicated = reward([rewardkit.Group(references=["a b"], completions=["a", "a", "a b"])])
    assert duplicated.scores == [[0.5, 0.5, 1.0]]
    assert duplicated.diagnostics["unique_fraction"] == pytest.approx(2 / 3)


@pytest.mark.parametrize(
    ("options", "reference", "completion", "score"),
    [
        ("", "Hello, World!", "hello world", 0.0),
        (":lowercase=true", "Hello, World!", "hello world", 0.0),
        (":remove_punctuation=true", "Hello, World!", "hello world", 0.0),
        (":lowercase=true,remove_punctuation=true", "Hello, World!", "hello world", 1.0),
        (":remove_punctuation=true", "Don't stop.", "Dont stop", 1.0),
        (":remove_punctuation=true", "?!", "...", 1.0),  # both empty after normalisation
        (":remove_punctuation=true", "?!", "no", 0.0),
    ],
)
def test_options_normalise_both_sides(
    on_path: Path, options: str, reference: str, completion: str, score: float
):
    reward = rewardkit.load_registry().build_reward("wer" + options)
    group = rewardkit.Group(references=[reference], completions=[completion])
    assert reward([group]).scores == [[score]]


def test_bad_option_value_is_a_one_line_error(on_path: Path):
    with pytest.raises(rewardkit.RewardError, match=r"lowercase='maybe'.*expected true or false"):
        rewardkit.load_registry().build_reward("wer:lowercase=maybe")


# --- (b) rewardkit plugins ----------------------------------------------------------------------


def test_plugins_json_lists_wer(site: Path):
    data = plugins_json(paths=(site,))
    [row] = [e for e in data["entries"] if e["name"] == "wer"]
    assert row == {
        "name": "wer",
        "kind": "reward",
        "plugin": "wer",
        "version": "0.1.0",
        "status": "ok",
        "summary": "Word accuracy: 1 - min(WER, 1) against the best reference (jiwer)",
    }
    [plugin] = [p for p in data["plugins"] if p["name"] == "wer"]
    assert plugin == {
        "name": "wer",
        "origin": "entry point",
        "distribution": "rewardkit-wer",
        "version": "0.1.0",
        "status": "ok",
        "error": None,
    }


def test_listing_plugins_does_not_import_jiwer(site: Path):
    code = "import sys, rewardkit; rewardkit.load_registry(); print('jiwer' in sys.modules)"
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(site)},
        timeout=60,
    )
    assert (proc.returncode, proc.stdout.strip()) == (0, "False"), proc.stderr


# --- (c) rewardkit score ------------------------------------------------------------------------


def test_score_prints_one_jiwer_score_per_line(site: Path, tmp_path: Path):
    hyp = write_lines(tmp_path / "hyp.txt", HYPS)
    ref = write_lines(tmp_path / "ref.txt", REFS)
    proc = run_cli("score", "--reward", "wer", "--hyp", str(hyp), "--ref", str(ref), paths=(site,))
    assert proc.returncode == 0, proc.stderr
    header, *rows = [line.split("\t") for line in proc.stdout.splitlines()]
    assert header == ["group", "completion", "reward", "wer"]
    assert [(int(g), int(c)) for g, c, *_ in rows] == [(i, 0) for i in range(len(REFS))]
    for (_, _, total, wer), r, h in zip(rows, REFS, HYPS, strict=True):
        assert float(total) == float(wer) == pytest.approx(expected(r, h), abs=1e-6)
    assert "wer: mean" in proc.stderr


def test_score_weighted_with_bleu_in_groups(site: Path, tmp_path: Path):
    refs = ["the cat sat on the mat", "one two three four"]
    hyps = ["the cat sat on a mat", "the cat", "one two three four", "four three two one"]
    hyp = write_lines(tmp_path / "hyp.txt", hyps)
    ref = write_lines(tmp_path / "ref.txt", refs)
    proc = run_cli(
        *("score", "--reward", "wer=0.5,bleu=0.5", "--group-size", "2", "--format", "jsonl"),
        *("--hyp", str(hyp), "--ref", str(ref)),
        paths=(site,),
    )
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [(row["group"], row["completion"]) for row in rows] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    for k, row in enumerate(rows):
        parts = row["components"]
        assert set(parts) == {"wer", "bleu"}
        assert parts["wer"] == pytest.approx(expected(refs[k // 2], hyps[k]))
        # sacrebleu gives 100.00000000000004 for a perfect match, so BLEU / 100 may exceed 1.
        assert 0.0 <= parts["bleu"] <= 1.0 + 1e-9
        assert row["reward"] == pytest.approx(0.5 * parts["wer"] + 0.5 * parts["bleu"])
    assert "wer: mean" in proc.stderr and "bleu: BLEU =" in proc.stderr


# --- (d) disabling ------------------------------------------------------------------------------


def test_autoload_off_hides_the_plugin(site: Path, tmp_path: Path):
    off = {"REWARDKIT_DISABLE_PLUGIN_AUTOLOAD": "1"}
    data = plugins_json(paths=(site,), env=off)
    assert "wer" not in {p["name"] for p in data["plugins"]}
    assert "wer" not in {e["name"] for e in data["entries"]}

    hyp = write_lines(tmp_path / "hyp.txt", HYPS[:1])
    ref = write_lines(tmp_path / "ref.txt", REFS[:1])
    proc = run_cli(
        "score", "-r", "wer", "--hyp", str(hyp), "--ref", str(ref), paths=(site,), env=off
    )
    assert proc.returncode == 2
    assert "unknown reward 'wer'" in proc.stderr


@pytest.mark.parametrize(
    ("args", "env"),
    [(("--disable-plugin", "wer"), None), ((), {"REWARDKIT_DISABLE_PLUGINS": "wer"})],
    ids=["option", "environment"],
)
def test_disabled_plugin_is_listed_as_disabled(site: Path, args: tuple[str, ...], env):
    data = plugins_json(*args, paths=(site,), env=env)
    [plugin] = [p for p in data["plugins"] if p["name"] == "wer"]
    assert (plugin["status"], plugin["distribution"]) == ("disabled", "rewardkit-wer")
    [row] = [e for e in data["entries"] if e["plugin"] == "wer"]
    assert (row["name"], row["status"]) == (None, "disabled")


# --- (e) a broken neighbour ---------------------------------------------------------------------


def test_broken_plugin_is_reported_and_the_rest_still_works(site: Path, broken_site: Path):
    paths = (site, broken_site)
    data = plugins_json(paths=paths)
    plugins = {p["name"]: p for p in data["plugins"]}
    assert plugins["broken"]["status"] == "error"
    assert plugins["broken"]["error"] == (
        f"ImportError: {BROKEN_MESSAGE} (entry point broken = rewardkit_broken)"
    )
    assert plugins["broken"]["distribution"] == "rewardkit-broken"
    assert plugins["wer"]["status"] == "ok"

    table = run_cli("plugins", paths=paths)
    assert table.returncode == 0, table.stderr
    [line] = [line for line in table.stdout.splitlines() if " broken " in line]
    assert "error" in line and f"ImportError: {BROKEN_MESSAGE}" in line

    for reward in ("bleu", "wer"):
        proc = run_cli("score", "--sample", "--reward", reward, paths=paths)
        assert proc.returncode == 0, proc.stderr
        assert len(proc.stdout.splitlines()) == 1 + 24  # header + 6 groups of 4
