"""Helpers for the reward-server tests: a plain HTTP client (http.client, loopback only) and a
reward whose scores come from a worker process that a test can kill."""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import threading
from urllib.parse import urlsplit

import rewardkit
from rewardkit.errors import RewardError


def request(url: str, method: str, path: str, body=None, raw: bytes | None = None, conn=None):
    """One HTTP request; returns (status, decoded JSON or None). ``conn`` reuses a connection."""
    own = conn is None
    if own:
        parts = urlsplit(url)
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    headers = {"Content-Type": "application/json"} if data is not None else {}
    conn.request(method, path, body=data, headers=headers)
    response = conn.getresponse()
    text = response.read()
    if own:
        conn.close()
    try:
        payload = json.loads(text) if text else None
    except json.JSONDecodeError:
        payload = None
    return response.status, payload


def post(url, path, body=None, raw=None, conn=None):
    return request(url, "POST", path, body, raw, conn)


def get(url, path):
    return request(url, "GET", path)


#: The worker: reads a JSON list of completions per line, waits, answers their lengths / 100.
WORKER = (
    "import json, sys, time\n"
    "delay = float(sys.argv[1])\n"
    "for line in sys.stdin:\n"
    "    texts = json.loads(line)\n"
    "    time.sleep(delay)\n"
    "    print(json.dumps([len(t) / 100 for t in texts]), flush=True)\n"
)


class WorkerReward(rewardkit.Reward):
    """len(completion) / 100, computed in a worker process (started on first use, and again on
    the call after it died). A call whose worker dies raises a RewardError, as COMET's reward
    does when its worker dies twice. ``in_call`` is set while the worker holds a request."""

    name = "worker_len"

    def __init__(self, delay: float = 0.0):
        self.delay = delay
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        self.in_call = threading.Event()

    def score(self, groups):
        if self.proc is None or self.proc.poll() is not None:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", WORKER, str(self.delay)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            self.starts += 1
        texts = [c for g in groups for c in g.completions]
        try:
            self.proc.stdin.write(json.dumps(texts) + "\n")
            self.proc.stdin.flush()
            self.in_call.set()
            line = self.proc.stdout.readline()
        except OSError:
            line = ""
        finally:
            self.in_call.clear()
        if not line:
            self.proc.wait()
            raise RewardError(f"the worker died (exit code {self.proc.returncode})")
        flat = iter(json.loads(line))
        return rewardkit.RewardOutput([[next(flat) for _ in g.completions] for g in groups])

    def close(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
