"""The README's measured tables are the ones the benchmark scripts render from the committed
result files (no number typed by hand)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_aligned_start_table_is_rendered_from_the_result_files():
    rendered = _script("aligned_start").render()
    assert rendered == (ROOT / "benchmarks/results/aligned_start/table.md").read_text()
    assert rendered in (ROOT / "README.md").read_text()


def test_the_default_run_tables_are_rendered_from_the_result_files():
    rendered = _script("default_run").render()
    assert rendered == (ROOT / "benchmarks/results/default_run/table.md").read_text()
    readme = (ROOT / "README.md").read_text()
    curves, evaluation = rendered.split("\n\nCorpus BLEU of the warm start", 1)
    assert curves in readme
    assert evaluation[evaluation.index("| model |") :] in readme
