"""The README's measured tables are the ones the benchmark scripts render from the committed
result files (no number typed by hand)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_the_aligned_start_table_is_rendered_from_the_result_files():
    rendered = _script("aligned_start").render()
    assert rendered == (ROOT / "benchmarks/results/aligned_start/table.md").read_text()
    assert rendered in (ROOT / "README.md").read_text()


@pytest.mark.parametrize("task", ["speech_translation", "spoken_qa"])
def test_the_default_run_tables_are_rendered_from_the_result_files(task):
    """The default run's and spoken QA's curves and evaluations (benchmarks/default_run.py)."""
    script = _script("default_run")
    study = script.STUDIES[task]
    tables = script.render(study)
    assert "\n".join(tables.values()) == (study.results / "table.md").read_text()
    readme = (ROOT / "README.md").read_text()
    for table in tables.values():
        assert table in readme
