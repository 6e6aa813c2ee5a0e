"""Every hook is documented (docstring example that runs, README section) and tested."""

from __future__ import annotations

import doctest
import inspect
from pathlib import Path

import pytest

from rewardkit import hookspecs

ROOT = Path(__file__).resolve().parent.parent
HOOKS = sorted(
    name
    for name, fn in vars(hookspecs).items()
    if inspect.isfunction(fn) and hasattr(fn, f"{hookspecs.PROJECT}_spec")
)


def test_the_hooks():
    assert HOOKS == ["register_backends", "register_commands", "register_rewards", "register_tasks"]


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_docstring_has_a_runnable_example(hook):
    doc = inspect.getdoc(getattr(hookspecs, hook)) or ""
    assert ">>>" in doc, f"{hook} has no example in its docstring"
    test = doctest.DocTestFinder().find(getattr(hookspecs, hook), hook, globs={})[0]
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    result = runner.run(test)
    assert result.attempted > 0 and result.failed == 0, f"{hook}'s example fails"


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_is_documented_in_the_readme(hook):
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert f"### {hook}" in readme, f"README.md has no '### {hook}' section"


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_has_a_test(hook):
    """A test outside this file implements the hook (``def {hook}(``)."""
    sources = [
        p.read_text(encoding="utf-8")
        for p in (ROOT / "tests").rglob("test_*.py")
        if p.name != Path(__file__).name
    ]
    assert any(f"def {hook}(" in source for source in sources), f"no test implements {hook}"
