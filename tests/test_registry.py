"""The plugin registry: built-ins as plugins, blocking, duplicates, broken plugins, hook typos."""

from __future__ import annotations

import types

import pytest

import rewardkit
from rewardkit import registry as registry_module

BUILTIN_REWARDS = {
    "bleu": "sacrebleu_rewards",
    "chrf": "sacrebleu_rewards",
    "ter": "sacrebleu_rewards",
    "rouge1": "rouge_rewards",
    "rouge2": "rouge_rewards",
    "rougel": "rouge_rewards",
    "meteor": "meteor_reward",
    "bertscore": "bertscore_reward",
    "comet": "comet_reward",
}


def reward_class(name: str) -> type[rewardkit.Reward]:
    class Constant(rewardkit.GroupwiseReward):
        """Always 1."""

        def prepare(self, references, source):
            return None

        def score_one(self, prepared, completion):
            return 1.0

    Constant.name = name
    return Constant


class RewardPlugin:
    def __init__(self, *classes):
        self.classes = classes

    @rewardkit.hookimpl
    def register_rewards(self, register):
        for cls in self.classes:
            register(cls)


def test_builtins_register_through_the_hooks(registry):
    owners = {e.name: e.plugin for e in registry.entries("reward")}
    assert owners == BUILTIN_REWARDS
    for name in set(BUILTIN_REWARDS.values()):
        status = registry.plugins[name]
        assert (status.origin, status.status, status.distribution) == ("builtin", "ok", "rewardkit")
    assert all(registry.pm.has_plugin(name) for name in set(BUILTIN_REWARDS.values()))


def test_each_load_is_a_fresh_manager():
    first = rewardkit.load_registry(
        entry_points=False, plugins={"x": RewardPlugin(reward_class("x"))}
    )
    second = rewardkit.load_registry(entry_points=False)
    assert "x" in first.names("reward")
    assert "x" not in second.names("reward")
    assert first.pm is not second.pm


def test_duplicate_names_raise_naming_both_plugins():
    with pytest.raises(rewardkit.RegistryError) as info:
        rewardkit.load_registry(
            entry_points=False, plugins={"mine": RewardPlugin(reward_class("bleu"))}
        )
    assert str(info.value).startswith(
        "reward 'bleu' is registered by both plugin 'sacrebleu_rewards' and plugin 'mine'"
    )


@pytest.mark.parametrize("name", ["Bad", "with-dash", "", "sp ace"])
def test_names_must_be_lowercase_identifiers(name):
    with pytest.raises(rewardkit.RegistryError, match=r"names must match \[a-z0-9_\]\+"):
        rewardkit.load_registry(
            builtins=False, entry_points=False, plugins={"p": RewardPlugin(reward_class(name))}
        )


def test_rewards_must_subclass_reward():
    class NotAReward:
        name = "fake"

    with pytest.raises(rewardkit.RegistryError, match=r"not a subclass of rewardkit\.Reward"):
        rewardkit.load_registry(
            builtins=False, entry_points=False, plugins={"p": RewardPlugin(NotAReward)}
        )


def test_disable_builtin_by_argument_and_environment(monkeypatch):
    reg = rewardkit.load_registry(["rouge_rewards"], entry_points=False)
    assert reg.plugins["rouge_rewards"].status == "disabled"
    assert "rouge1" not in reg.names("reward")
    assert "bleu" in reg.names("reward")

    monkeypatch.setenv(
        "REWARDKIT_DISABLE_PLUGINS",
        "sacrebleu_rewards, meteor_reward,bertscore_reward,comet_reward",
    )
    reg = rewardkit.load_registry(entry_points=False)
    assert reg.names("reward") == ["rouge1", "rouge2", "rougel"]
    with pytest.raises(
        rewardkit.RegistryError,
        match="reward 'bleu' belongs to plugin 'sacrebleu_rewards', which is disabled",
    ):  # not "unknown": the name is a disabled plugin's
        reg.build_reward("bleu")
    with pytest.raises(rewardkit.RegistryError, match="unknown reward 'blue'; available: rouge1"):
        reg.build_reward("blue")


class FakeEntryPoint:
    """Stands in for importlib.metadata.EntryPoint."""

    def __init__(self, name, obj, dist_name="fake-dist", version="9.9"):
        self.name, self._obj = name, obj
        self.dist = types.SimpleNamespace(name=dist_name, version=version)

    def load(self):
        if isinstance(self._obj, Exception):
            raise self._obj
        return self._obj


@pytest.fixture
def fake_entry_points(monkeypatch):
    found = []

    def entry_points(group):
        assert group == "rewardkit"
        return found

    monkeypatch.setattr(registry_module.importlib.metadata, "entry_points", entry_points)
    return found


def test_entry_points_load_after_builtins_and_autoload_can_be_disabled(
    fake_entry_points, monkeypatch
):
    fake_entry_points.append(FakeEntryPoint("extra", RewardPlugin(reward_class("extra"))))
    reg = rewardkit.load_registry()
    assert reg.get("reward", "extra").name == "extra"
    status = reg.plugins["extra"]
    assert (status.origin, status.distribution, status.version) == (
        "entry point",
        "fake-dist",
        "9.9",
    )
    assert list(reg.plugins)[-1] == "extra"

    monkeypatch.setenv("REWARDKIT_DISABLE_PLUGIN_AUTOLOAD", "1")
    reg = rewardkit.load_registry()
    assert "extra" not in reg.plugins
    assert "extra" not in reg.names("reward")


def test_entry_point_that_fails_to_import_is_recorded(fake_entry_points):
    fake_entry_points.append(FakeEntryPoint("broken", ImportError("No module named 'jiwerr'")))
    reg = rewardkit.load_registry()
    assert reg.plugins["broken"].status == "error"
    assert reg.plugins["broken"].error == "ImportError: No module named 'jiwerr'"
    assert "bleu" in reg.names("reward")  # the others still work
    with pytest.raises(rewardkit.RegistryError, match="plugins that failed to load: broken"):
        reg.get("reward", "wer")


def test_blocked_entry_point_is_never_imported(fake_entry_points):
    fake_entry_points.append(FakeEntryPoint("never", AssertionError("must not be loaded")))
    reg = rewardkit.load_registry(["never"])
    assert reg.plugins["never"].status == "disabled"


def test_plugin_name_clash_with_a_builtin_is_recorded(fake_entry_points):
    fake_entry_points.append(FakeEntryPoint("sacrebleu_rewards", RewardPlugin()))
    reg = rewardkit.load_registry()
    assert reg.plugins["sacrebleu_rewards"].status == "ok"
    clash = reg.plugins["sacrebleu_rewards (fake-dist)"]
    assert clash.status == "error" and "already loaded" in clash.error


def test_hook_that_raises_is_recorded_and_registers_nothing():
    class Raising:
        @rewardkit.hookimpl
        def register_rewards(self, register):
            register(reward_class("half_registered"))
            raise RuntimeError("no config")

    reg = rewardkit.load_registry(entry_points=False, plugins={"raising": Raising()})
    assert reg.plugins["raising"].error == "register_rewards raised RuntimeError: no config"
    assert "half_registered" not in reg.names("reward")
    assert "bleu" in reg.names("reward")


def test_hook_typo_is_caught_by_check_pending():
    class Typo:
        @rewardkit.hookimpl
        def register_reward(self, register):  # missing "s"
            register(reward_class("typo"))

    reg = rewardkit.load_registry(entry_points=False, plugins={"typo": Typo()})
    assert reg.plugins["typo"].status == "error"
    assert "unknown hook 'register_reward'" in reg.plugins["typo"].error
    assert not reg.pm.has_plugin("typo")


def test_hook_with_wrong_arguments_is_recorded():
    class WrongArgs:
        @rewardkit.hookimpl
        def register_rewards(self, add):
            pass

    reg = rewardkit.load_registry(entry_points=False, plugins={"wrong": WrongArgs()})
    assert reg.plugins["wrong"].status == "error"
    assert "add" in reg.plugins["wrong"].error


def test_backends_and_tasks_register_and_unknown_names_list_the_available():
    class Backend:
        """A policy backend."""

        name = "toy_backend"

    class Task:
        """A task."""

        name = "toy_task"

    class Plugin:
        @rewardkit.hookimpl
        def register_backends(self, register):
            register(Backend)

        @rewardkit.hookimpl
        def register_tasks(self, register):
            register(Task)

    reg = rewardkit.load_registry(builtins=False, entry_points=False, plugins={"toy": Plugin()})
    assert reg.get("backend", "toy_backend") is Backend
    assert reg.get("task", "toy_task") is Task
    assert [(e.kind, e.name, e.plugin, e.summary) for e in reg.entries()] == [
        ("backend", "toy_backend", "toy", "A policy backend"),
        ("task", "toy_task", "toy", "A task"),
    ]
    with pytest.raises(
        rewardkit.RegistryError, match="unknown backend 'hf'; available: toy_backend"
    ):
        reg.get("backend", "hf")
