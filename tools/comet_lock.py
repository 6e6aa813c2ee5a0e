"""Write plugins/comet-lock.txt: the COMET environment, every package pinned with its sha256.

    python tools/comet_lock.py

pip resolves TOP_LEVEL without installing (``pip install --dry-run --report``, binary wheels
only, reading the wheels' metadata from the index) for the running Python and platform, and the
report gives each chosen file's sha256. The environment builder installs the lock with
``--require-hashes --only-binary :all: --no-deps``: nothing is resolved at install time.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

#: What COMET needs; everything else in the lock is what pip resolves for these.
TOP_LEVEL = (
    "torch==2.13.0+cpu",  # the CPU build (download.pytorch.org/whl/cpu)
    "unbabel-comet==2.2.7",
    "transformers==4.57.6",  # unbabel-comet 2.2.7 needs transformers<5
    "huggingface-hub==0.36.2",  # <1
    "numpy==1.26.4",  # <2
    "setuptools==80.10.2",  # <81: pkg_resources at run time
    "pytorch-lightning==2.6.6",
)
LOCK = Path(__file__).resolve().parents[1] / "plugins" / "comet-lock.txt"


def _normal(name: str) -> str:
    """A project name as PEP 503 normalises it."""
    return re.sub(r"[-_.]+", "-", name).lower()


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed",
             "--only-binary", ":all:", "--extra-index-url", "https://download.pytorch.org/whl/cpu",
             "--report", str(report), *TOP_LEVEL],
            check=True,
        )  # fmt: skip
        installs = json.loads(report.read_text())["install"]
    tag = f"CPython {sys.version_info[0]}.{sys.version_info[1]}, {sys.platform}"
    lines = [
        f"# The COMET environment ({tag}): written by tools/comet_lock.py, do not edit.",
        "# Installed with --require-hashes --only-binary :all: --no-deps.",
    ]
    for item in sorted(installs, key=lambda i: _normal(i["metadata"]["name"])):
        name, version = _normal(item["metadata"]["name"]), item["metadata"]["version"]
        sha = item["download_info"]["archive_info"]["hashes"]["sha256"]
        lines.append(f"{name}=={version} \\\n    --hash=sha256:{sha}")
    LOCK.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {LOCK} ({len(installs)} packages)")


if __name__ == "__main__":
    main()
