"""rewardkit serve: the endpoints, OpenRLHF's protocol, errors, and the command line.

Everything runs on loopback. Requests go through a real uvicorn server (in a thread, or the
``rewardkit serve`` process) with the standard library's HTTP client.
"""

from __future__ import annotations

import http.client
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from urllib.parse import urlsplit

import pytest
import sacrebleu
from integration_helpers import WorkerReward, get, post

import rewardkit
from rewardkit.integrations.server import Limits, make_app, running

EN = "the cat sat on the mat"
DE = "der Hund lief schnell nach Hause"


@pytest.fixture(scope="module")
def server():
    """bleu (the default), a weighted bleu+chrf and a reward that fails on the word 'boom'."""

    class Fragile(rewardkit.Reward):
        """1.0, or an error if a completion says boom."""

        name = "fragile"

        def score(self, groups):
            if any("boom" in c for g in groups for c in g.completions):
                raise ValueError("boom")
            return rewardkit.RewardOutput([[1.0] * len(g.completions) for g in groups])

    registry = rewardkit.load_registry(entry_points=False)
    rewards = {
        "bleu": registry.build_reward("bleu"),
        "bleu=0.5,chrf=0.5": registry.build_reward("bleu=0.5,chrf=0.5"),
        "fragile": Fragile(),
    }
    limits = Limits(max_body_bytes=20_000, max_completions=50, max_batch=64)
    with running(make_app(rewards, limits)) as url:
        yield url, rewards


def bleu(c, refs):
    return sacrebleu.sentence_bleu(c, refs).score / 100


def test_health_and_info(server):
    url, rewards = server
    assert get(url, "/health")[1]["status"] == "ok"
    status, info = get(url, "/info")
    assert status == 200 and info["default_reward"] == "bleu"
    assert info["rewards"]["bleu"]["signature"] == rewards["bleu"].signature()
    assert "tok:13a" in info["rewards"]["bleu"]["signature"]
    weighted = info["rewards"]["bleu=0.5,chrf=0.5"]["components"]
    assert set(weighted) == {"bleu", "chrf"} and "nc:6" in weighted["chrf"]
    assert info["limits"]["max_completions"] == 50


def test_answers_are_not_held_back_by_nagle_and_delayed_acks(server):
    """Without TCP_NODELAY on accepted connections each answer waited ~40 ms on Linux."""
    url, _ = server
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    times = []
    for _ in range(15):
        started = time.perf_counter()
        post(url, "/score", {"groups": [{"reference": EN, "completions": [EN]}]}, conn=conn)
        times.append(time.perf_counter() - started)
    conn.close()
    assert statistics.median(times) < 0.025, times


def test_score_groups_with_components_and_signatures(server):
    url, rewards = server
    groups = [
        {"reference": EN, "completions": ["the cat sat on a mat", "a cat", ""]},
        {"references": [DE, "der Hund rannte heim"], "source": "x", "completions": ["Hund"]},
    ]
    status, out = post(url, "/score", {"groups": groups})
    assert status == 200 and out["reward"] == "bleu"
    assert out["scores"] == [
        pytest.approx([bleu(c, [EN]) for c in groups[0]["completions"]], abs=1e-12),
        pytest.approx([bleu("Hund", groups[1]["references"])], abs=1e-12),
    ]
    status, out = post(url, "/score", {"groups": groups, "reward": "bleu=0.5,chrf=0.5"})
    assert status == 200 and set(out["components"]) == {"bleu", "chrf"}
    chrf = [sacrebleu.sentence_chrf(c, [EN]).score / 100 for c in groups[0]["completions"]]
    assert out["components"]["chrf"][0] == pytest.approx(chrf, abs=1e-12)
    total = [0.5 * b + 0.5 * c for b, c in zip(out["components"]["bleu"][0], chrf)]
    assert out["scores"][0] == pytest.approx(total, abs=1e-12)
    assert out["signature"] == rewards["bleu=0.5,chrf=0.5"].signature()


def test_openrlhf_get_reward_as_its_client_sends_it(server):
    """OpenRLHF's SingleTurnAgentExecutor POSTs {"query", "prompts", "labels"} (query = the
    decoded prompt + response tokens, special tokens kept) and reads "rewards"."""
    url, _ = server
    prompt = "<|im_start|>user\nTranslate: Die Katze<|im_end|>\n<|im_start|>assistant\n"
    completions = ["the cat sat on a mat", "a cat", "the cat sat on the mat"]
    body = {
        "query": [prompt + c + "<|im_end|>" for c in completions] + ["Q: A: Hund </s>"],
        "prompts": [prompt] * 3 + ["Q: A:"],
        "labels": [EN] * 3 + [{"references": [DE], "source": "dog"}],
    }
    status, out = post(url, "/get_reward", body)
    assert status == 200
    expected = [bleu(c, [EN]) for c in completions] + [bleu("Hund", [DE])]
    assert out["rewards"] == pytest.approx(expected, abs=1e-12)
    assert out["scores"] == out["rewards"] and out["extra_logs"] == {}
    status, out = post(url, "/get_reward?reward=bleu%3D0.5%2Cchrf%3D0.5", body)
    assert status == 200 and set(out["extra_logs"]) == {"bleu", "chrf"}
    assert out["extra_logs"]["bleu"] == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize(
    ("path", "raw", "status", "message"),
    [
        ("/score", b"{not json", 400, "not valid JSON"),
        ("/score", b"[1, 2]", 400, "must be a JSON object"),
        ("/score", b"\xff\xfe", 400, "not valid JSON"),
        ("/score", b"{}", 422, "missing field 'groups'"),
        ("/score", b'{"groups": [{"completions": ["a"]}]}', 422, "groups[0].references"),
        ("/score", b'{"groups": [{"reference": "r", "completions": "a"}]}', 422, "list of str"),
        ("/score", b'{"groups": [{"reference": 5, "completions": ["a"]}]}', 422, "reference must"),
        ("/score", b'{"reward": "rouge1", "groups": []}', 422, "unknown reward 'rouge1'"),
        ("/get_reward", b'{"query": ["a"]}', 422, "missing field 'prompts'"),
        ("/get_reward", b'{"query": ["a"], "prompts": ["a"]}', 422, "missing field 'labels'"),
        ("/get_reward", b'{"query": ["ab"], "prompts": ["x"], "labels": ["r"]}', 422, "prompt"),
        ("/get_reward", b'{"query": ["a", "b"], "prompts": ["a"], "labels": ["r"]}', 422, "one"),
    ],
)
def test_bad_requests_get_a_clear_4xx(server, path, raw, status, message):
    url, _ = server
    got, out = post(url, path, raw=raw)
    assert got == status and message in out["error"], out


def test_limits_unknown_paths_and_scoring_failures(server):
    url, _ = server
    many = {"groups": [{"reference": "r", "completions": ["c"] * 51}]}
    status, out = post(url, "/score", many)
    assert status == 413 and "at most 50" in out["error"]
    status, out = post(url, "/score", raw=b'{"groups": "' + b"x" * 30_000 + b'"}')
    assert status == 413 and "limit" in out["error"]
    status, out = get(url, "/nowhere")
    assert status == 404 and "/score" in out["error"]
    assert get(url, "/score")[0] == 405
    status, out = post(url, "/score", {"reward": "fragile", "groups": [
        {"reference": "r", "completions": ["boom"]}]})  # fmt: skip
    assert status == 500 and "ValueError: boom" in out["error"]
    status, out = post(url, "/score", {"reward": "fragile", "groups": [
        {"reference": "r", "completions": ["fine"]}]})  # fmt: skip
    assert status == 200 and out["scores"] == [[1.0]]


def test_a_dead_worker_is_an_error_for_its_request_and_restarts_for_the_next():
    reward = WorkerReward(delay=0.5)
    try:
        with running(make_app({"worker": reward})) as url:
            body = {"groups": [{"reference": "r", "completions": ["abc", "de"]}]}
            status, out = post(url, "/score", body)
            assert status == 200 and out["scores"] == [[0.03, 0.02]]
            killer = threading.Thread(target=lambda: (reward.in_call.wait(10), reward.proc.kill()))
            killer.start()
            status, out = post(url, "/score", body)
            killer.join()
            assert status == 500 and "worker died" in out["error"]
            assert post(url, "/score", body)[1]["scores"] == [[0.03, 0.02]]
            assert reward.starts == 2
    finally:
        reward.close()


# --- the command line ---------------------------------------------------------------------------


def _serve(*args):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "rewardkit", "serve", *args],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def test_rewardkit_serve_starts_scores_and_stops_on_sigint():
    proc = _serve("--port", "0", "-r", "chrf")
    try:
        line = proc.stderr.readline()
        match = re.search(r"http://127\.0\.0\.1:(\d+)", line)
        assert match, line
        url = match.group(0)
        status, out = post(url, "/score", {"groups": [{"reference": EN, "completions": [EN]}]})
        assert status == 200 and out["scores"] == [[1.0]] and out["reward"] == "chrf"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-r", "bleuu"], "unknown reward 'bleuu'"),
        (["-r", "bleu", "-r", "bleu"], "given twice"),
        (["--port", "70000"], "not in the range"),
        (["--max-batch", "0"], "x>=1"),
        (["--host", "no-such-host.invalid"], "cannot resolve --host"),
    ],
)
def test_serve_options_are_checked_before_it_starts(args, message):
    proc = _serve(*args)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2, err
    assert message in err and "Traceback" not in err


def test_serve_says_when_the_port_is_taken():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        started = time.monotonic()
        proc = _serve("--port", str(taken.getsockname()[1]))
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "cannot listen on 127.0.0.1:" in err, err
    assert err.count("\n") == 1 and time.monotonic() - started < 60


@pytest.mark.parametrize("args", [["--help"], ["serve", "--help"]])
def test_help_imports_no_server_library_trainer_or_model(args):
    code = (
        "import sys\n"
        "from rewardkit.cli import main\n"
        "try:\n"
        f"    main({args!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = ('starlette', 'uvicorn', 'trl', 'torch', 'transformers', 'sacrebleu')\n"
        "print('HEAVY', sorted(m for m in heavy if m in sys.modules), file=sys.stderr)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "HEAVY []" in proc.stderr, proc.stderr
