"""The hooks a rewardkit plugin can implement.

A plugin is a module or object with functions marked ``@rewardkit.hookimpl``. Built-in plugins
(``rewardkit.plugins.*``, ``rewardkit.backends.*``) and third-party ones (entry points of group
``rewardkit``) use exactly the same hooks. Each hook receives a ``register`` callback; call it once
per thing you provide. Names must match ``[a-z0-9_]+`` and be unique across all plugins.

The examples below run as doctests (``pytest --doctest-modules rewardkit/hookspecs.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

PROJECT = "rewardkit"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_rewards(register: Callable[[type], None]) -> None:
    """Register reward classes (subclasses of ``rewardkit.Reward``) by calling ``register(cls)``.

    Example:

    >>> import rewardkit
    >>> class Length(rewardkit.GroupwiseReward):
    ...     '''Shorter completions score higher: 1 / (1 + number of words).'''
    ...     name = "brevity"
    ...     def prepare(self, references, source):
    ...         return None
    ...     def score_one(self, prepared, completion):
    ...         return 1.0 / (1 + len(completion.split()))
    >>> class MyPlugin:
    ...     @rewardkit.hookimpl
    ...     def register_rewards(self, register):
    ...         register(Length)
    >>> registry = rewardkit.load_registry(plugins={"my_plugin": MyPlugin()}, builtins=False)
    >>> reward = registry.build_reward("brevity")
    >>> reward([rewardkit.Group(references=["a b"], completions=["a", "a b c"])]).scores
    [[0.5, 0.25]]
    """


@hookspec
def register_backends(register: Callable[[type], None]) -> None:
    """Register policy backends (classes with a ``name``) by calling ``register(cls)``.

    Example:

    >>> import rewardkit
    >>> class EchoBackend:
    ...     '''A backend that returns its prompt (for illustration only).'''
    ...     name = "echo"
    >>> class MyPlugin:
    ...     @rewardkit.hookimpl
    ...     def register_backends(self, register):
    ...         register(EchoBackend)
    >>> registry = rewardkit.load_registry(plugins={"my_plugin": MyPlugin()}, builtins=False)
    >>> registry.get("backend", "echo") is EchoBackend
    True
    """


@hookspec
def register_tasks(register: Callable[[type], None]) -> None:
    """Register task adapters (classes with a ``name``) by calling ``register(cls)``.

    Example:

    >>> import rewardkit
    >>> class Dictation:
    ...     '''Audio in, its transcript out.'''
    ...     name = "dictation"
    >>> class MyPlugin:
    ...     @rewardkit.hookimpl
    ...     def register_tasks(self, register):
    ...         register(Dictation)
    >>> registry = rewardkit.load_registry(plugins={"my_plugin": MyPlugin()}, builtins=False)
    >>> registry.get("task", "dictation") is Dictation
    True
    """


@hookspec
def register_commands(cli: Any) -> None:
    """Add click commands to the ``rewardkit`` command group (``cli`` is a ``click.Group``).

    Example:

    >>> import click
    >>> from click.testing import CliRunner
    >>> import rewardkit
    >>> from rewardkit.cli import build_cli
    >>> class MyPlugin:
    ...     @rewardkit.hookimpl
    ...     def register_commands(self, cli):
    ...         @cli.command()
    ...         def hello():
    ...             '''Say hello.'''
    ...             click.echo("hello from a plugin")
    >>> registry = rewardkit.load_registry(plugins={"my_plugin": MyPlugin()}, builtins=False)
    >>> CliRunner().invoke(build_cli(registry), ["hello"]).output
    'hello from a plugin\\n'
    """
