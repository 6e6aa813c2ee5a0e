"""The plugin registry: one pluggy plugin manager, and the rewards, backends, tasks and commands
its plugins register.

Loading order: the built-in plugin modules (by short name), then entry points of group
``rewardkit``. Any plugin, built-in or not, can be blocked by name (``--disable-plugin NAME`` or
``REWARDKIT_DISABLE_PLUGINS=a,b``); ``REWARDKIT_DISABLE_PLUGIN_AUTOLOAD=1`` skips entry points.
A plugin that fails to import or to register is recorded with its error instead of breaking
the program; ``rewardkit plugins`` shows it.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pluggy

from rewardkit import hookspecs
from rewardkit.errors import RegistryError, RewardError, RewardkitError
from rewardkit.options import convert_options
from rewardkit.rewards import (
    NAME_PATTERN,
    Reward,
    RewardPart,
    WeightedSum,
    build_reward,
    parse_reward_spec,
)

ENTRY_POINT_GROUP = "rewardkit"
DISABLE_ENV = "REWARDKIT_DISABLE_PLUGINS"
NO_AUTOLOAD_ENV = "REWARDKIT_DISABLE_PLUGIN_AUTOLOAD"

#: Built-in plugins: short plugin name -> module. They register exactly like third-party plugins.
BUILTIN_PLUGINS: dict[str, str] = {
    "sacrebleu_rewards": "rewardkit.plugins.sacrebleu_rewards",
    "rouge_rewards": "rewardkit.plugins.rouge_rewards",
    "meteor_reward": "rewardkit.plugins.meteor_reward",
    "bertscore_reward": "rewardkit.plugins.bertscore_reward",
    "comet_reward": "rewardkit.plugins.comet_reward",
    "speech_tasks": "rewardkit.plugins.speech_tasks",
    "text_task": "rewardkit.plugins.text_task",
    "hf": "rewardkit.backends.hf",
    "deepspeed": "rewardkit.backends.deepspeed",
}

KINDS = ("reward", "backend", "task", "command")
_HOOKS = {"reward": "register_rewards", "backend": "register_backends", "task": "register_tasks"}


@dataclass
class PluginStatus:
    """What the registry knows about one plugin."""

    name: str
    origin: str  # "builtin", "entry point" or "given"
    distribution: str | None = None
    version: str | None = None
    status: str = "ok"  # "ok", "disabled" or "error"
    error: str | None = None


@dataclass(frozen=True)
class Entry:
    """One registered thing: a reward, backend, task or command."""

    kind: str
    name: str
    obj: Any
    plugin: str

    @property
    def summary(self) -> str:
        """The first sentence of the docstring (or of a command's help)."""
        doc = getattr(self.obj, "help", None) or getattr(self.obj, "__doc__", None) or ""
        first = " ".join(doc.strip().split("\n\n")[0].split())
        return first.split(". ")[0].rstrip(".")


class Registry:
    """Plugins and everything they registered. Build one with :func:`load_registry`."""

    def __init__(self, pm: pluggy.PluginManager, plugins: dict[str, PluginStatus]):
        self.pm = pm
        self.plugins = plugins
        self._entries: dict[str, dict[str, Entry]] = {kind: {} for kind in KINDS}
        #: (kind, name) -> the disabled built-in plugin that would register it
        self.disabled_names: dict[tuple[str, str], str] = {}

    # --- queries ---

    def entries(self, kind: str | None = None) -> list[Entry]:
        kinds = [kind] if kind else list(KINDS)
        return [e for k in kinds for e in self._entries[k].values()]

    def names(self, kind: str) -> list[str]:
        return sorted(self._entries[kind])

    def get(self, kind: str, name: str) -> Any:
        """The registered object, or an error listing the available names."""
        entry = self._entries[kind].get(name)
        if entry is None and (kind, name) in self.disabled_names:
            raise RegistryError(
                f"{kind} {name!r} belongs to plugin '{self.disabled_names[kind, name]}', which "
                f"is disabled (--disable-plugin or ${DISABLE_ENV})"
            )
        if entry is None:
            available = ", ".join(self.names(kind)) or "none"
            hint = ""
            broken = [p.name for p in self.plugins.values() if p.status == "error"]
            if broken:
                hint = (
                    f" (plugins that failed to load: {', '.join(broken)}; see `rewardkit plugins`)"
                )
            raise RegistryError(f"unknown {kind} {name!r}; available: {available}{hint}")
        return entry.obj

    def build_reward(self, spec: str) -> Reward:
        """Build a reward, or a weighted sum of rewards, from a spec like ``bleu=0.7,chrf=0.3``."""
        built = []
        for part in self.check_spec(spec):
            plugin = self._entries["reward"][part.name].plugin
            try:
                reward = build_reward(self.get("reward", part.name), part.options)
            except (RewardkitError, KeyboardInterrupt):
                raise
            except BaseException as exc:  # the plugin's own failure, sys.exit() too: say whose
                raise RewardError(
                    f"reward '{part.name}' (plugin '{plugin}') failed to start: {_failure(exc)}; "
                    "see `rewardkit plugins`, or use another reward"
                ) from exc
            reward.plugin = plugin
            reward.spec = part.label
            built.append((part, reward))
        if len(built) == 1 and built[0][0].weight == 1.0:
            return built[0][1]
        labels = [p.name for p, _ in built]
        if len(set(labels)) < len(labels):  # the same reward twice: tell them apart by options
            labels = [p.label for p, _ in built]
        combined = WeightedSum([(lab, p.weight, r) for lab, (p, r) in zip(labels, built)])
        combined.spec = spec
        return combined

    def check_spec(self, spec: str) -> list[RewardPart]:
        """Parse a spec and check its names and options without building anything (no model
        loads), so a typo fails before a long run starts."""
        known = set(self._entries["reward"]) | {n for k, n in self.disabled_names if k == "reward"}
        parts = parse_reward_spec(spec, lambda name: name in known)
        for part in parts:
            convert_options(self.get("reward", part.name), part.options)
        return parts

    def check_from_file(self, spec: str, where: str) -> None:
        """A spec read from a file (a config file, a resumed run's config) must not set an
        option that runs a program (``Reward.command_line_only``, e.g. comet:env=DIR)."""
        for part in self.check_spec(spec):
            cls = self.get("reward", part.name)
            for key in part.options:
                if key in getattr(cls, "command_line_only", ()):
                    raise RegistryError(
                        f"{where}: reward option {part.name}:{key}= runs a program, so it is "
                        f"taken from the command line (--reward) or an environment variable "
                        f"only, never from a file; remove it from {where}"
                    )

    # --- registration ---

    def _add(self, kind: str, obj: Any, plugin: str, name: str | None = None) -> None:
        name = name if name is not None else getattr(obj, "name", None)
        if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
            raise RegistryError(
                f"plugin '{plugin}' registered a {kind} named {name!r}; names must match [a-z0-9_]+"
            )
        if kind == "reward" and not (isinstance(obj, type) and issubclass(obj, Reward)):
            raise RegistryError(
                f"plugin '{plugin}' registered reward '{name}', "
                "which is not a subclass of rewardkit.Reward"
            )
        if name in self._entries[kind]:
            other = self._entries[kind][name].plugin
            raise RegistryError(
                f"{kind} '{name}' is registered by both plugin '{other}' and plugin '{plugin}'; "
                f"disable one with --disable-plugin NAME"
            )
        self._entries[kind][name] = Entry(kind, name, obj, plugin)

    def _collect(self, kind: str, hook_name: str, argument: Any = None) -> None:
        """Call one hook plugin by plugin, so each registration knows its owner and a failing
        plugin is recorded without losing the others."""
        for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
            plugin = self.pm.get_name(impl.plugin)
            status = self.plugins[plugin]
            if status.status != "ok":
                continue
            found: list[Any] = []
            arg = argument if argument is not None else found.append
            try:
                impl.function(*[arg for _ in impl.argnames])
            except KeyboardInterrupt:
                raise
            except BaseException as exc:
                status.status, status.error = "error", f"{hook_name} raised {_failure(exc)}"
                continue
            for obj in found:
                self._add(kind, obj, plugin)

    def add_commands(self, cli: Any) -> None:
        """Let plugins add click commands to ``cli`` (a click.Group)."""
        self._entries["command"].clear()  # entries describe the latest CLI built
        for impl in self.pm.hook.register_commands.get_hookimpls():
            plugin = self.pm.get_name(impl.plugin)
            status = self.plugins[plugin]
            if status.status != "ok":
                continue
            before = dict(cli.commands)
            try:
                impl.function(cli)
                replaced = [n for n in before if cli.commands.get(n) is not before[n]]
                if replaced:  # a plugin may add commands, never replace one
                    raise RegistryError(f"tried to replace command '{replaced[0]}'")
            except KeyboardInterrupt:
                raise
            except BaseException as exc:
                cli.commands.clear()
                cli.commands.update(before)
                status.status = "error"
                reason = str(exc) if isinstance(exc, RegistryError) else f"raised {exc!r}"
                status.error = f"register_commands {reason}"
                continue
            for name, command in list(cli.commands.items()):
                if name not in before:
                    self._add("command", command, plugin, name=name)


def _failure(exc: BaseException) -> str:
    """Why a plugin failed, on one line; a plugin that calls sys.exit() is broken, not a reason
    to stop every command."""
    if isinstance(exc, Exception):
        return f"{type(exc).__name__}: {exc}"
    return f"{type(exc).__name__}({exc}): the plugin tried to stop rewardkit while loading"


def disabled_from_env() -> set[str]:
    return {n.strip() for n in os.environ.get(DISABLE_ENV, "").split(",") if n.strip()}


def load_registry(
    disabled: Iterable[str] = (),
    *,
    plugins: Mapping[str, object] | None = None,
    builtins: bool = True,
    entry_points: bool | None = None,
) -> Registry:
    """Build a fresh registry.

    ``disabled``: plugin names to block (added to ``$REWARDKIT_DISABLE_PLUGINS``).
    ``plugins``: extra plugin objects by name, registered after the built-ins (for tests and
    embedding). ``entry_points``: load third-party plugins; defaults to true unless
    ``$REWARDKIT_DISABLE_PLUGIN_AUTOLOAD=1``.
    """
    blocked = set(disabled) | disabled_from_env()
    if entry_points is None:
        entry_points = os.environ.get(NO_AUTOLOAD_ENV, "") not in ("1", "true", "yes")
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    statuses: dict[str, PluginStatus] = {}
    from rewardkit import __version__

    def add(name: str, status: PluginStatus, load: Callable[[], object]) -> None:
        if name in statuses:
            status.status, status.error = "error", f"a plugin named '{name}' is already loaded"
            statuses[f"{name} ({status.distribution or status.origin})"] = status
            return
        statuses[name] = status
        if name in blocked:
            status.status = "disabled"
            return
        try:
            pm.register(load(), name=name)
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # an import error, a bad hook signature, even sys.exit():
            status.status, status.error = "error", _failure(exc)  # record, don't crash

    if builtins:
        for name, module in BUILTIN_PLUGINS.items():
            add(
                name,
                PluginStatus(name, "builtin", "rewardkit", __version__),
                lambda module=module: importlib.import_module(module),
            )
    for name, obj in (plugins or {}).items():
        add(name, PluginStatus(name, "given"), lambda obj=obj: obj)
    if entry_points:
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            dist = getattr(ep, "dist", None)
            add(
                ep.name,
                PluginStatus(ep.name, "entry point", dist and dist.name, dist and dist.version),
                ep.load,
            )
            status = statuses.get(ep.name)
            value = getattr(ep, "value", None)  # name the entry point: NAME = module:attr
            if status is not None and status.status == "error" and value:
                status.error = f"{status.error} (entry point {ep.name} = {value})"

    _check_pending(pm, statuses)
    registry = Registry(pm, statuses)
    for kind, hook_name in _HOOKS.items():
        registry._collect(kind, hook_name)
    for name, status in statuses.items():
        if builtins and status.status == "disabled" and name in BUILTIN_PLUGINS:
            registry.disabled_names.update(_names_of(BUILTIN_PLUGINS[name], name))
    return registry


def _names_of(module_name: str, plugin: str) -> dict[tuple[str, str], str]:
    """What a built-in plugin would register (its module is light to import), so a disabled
    plugin's reward is reported as disabled rather than unknown."""
    module = importlib.import_module(module_name)
    names: dict[tuple[str, str], str] = {}
    for kind, hook_name in _HOOKS.items():
        hook = getattr(module, hook_name, None)
        if hook is not None:
            found: list[Any] = []
            hook(found.append)
            names.update({(kind, obj.name): plugin for obj in found})
    return names


def _check_pending(pm: pluggy.PluginManager, statuses: dict[str, PluginStatus]) -> None:
    """Unregister plugins that implement hooks that do not exist (typos), recording why."""
    while True:
        try:
            pm.check_pending()
            return
        except pluggy.PluginValidationError as exc:
            name = pm.get_name(exc.plugin)
            pm.unregister(exc.plugin)
            statuses[name].status, statuses[name].error = "error", str(exc)
