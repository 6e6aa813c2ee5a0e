"""rewardkit: GRPO for speech-aware language models with text-similarity rewards.

The public API for plugin authors lives here; importing it stays light (no torch, no metric
libraries), so ``rewardkit --help`` and ``rewardkit plugins`` start fast.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("rewardkit")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

from rewardkit.errors import RegistryError, RewardError, RewardkitError
from rewardkit.hookspecs import hookimpl
from rewardkit.registry import Registry, load_registry
from rewardkit.rewards import CorpusScore, Group, GroupwiseReward, Reward, RewardOutput

__all__ = [
    "CorpusScore",
    "Group",
    "GroupwiseReward",
    "Registry",
    "RegistryError",
    "Reward",
    "RewardError",
    "RewardOutput",
    "RewardkitError",
    "__version__",
    "hookimpl",
    "load_registry",
]
