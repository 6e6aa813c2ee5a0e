"""rewardkit serve under load and faults, on loopback, with bounded client counts and time.

* 48 concurrent clients x 6 requests each, good and malformed mixed: every good response equals
  sacrebleu, every malformed one is a 400, none is lost;
* concurrent requests are merged into fewer reward calls;
* clients that disconnect mid-body or before the answer do not stall the server;
* the reward's worker process is killed under load: every request is answered (scores or a JSON
  error), the worker restarts, later requests are served. The worker is a small test process
  (see integration_helpers.WorkerReward), standing in for COMET's: the COMET environment takes
  minutes and 1.4 GB to build, too much for this test set.
"""

from __future__ import annotations

import http.client
import random
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import sacrebleu
from integration_helpers import WorkerReward, get, post

import rewardkit
from rewardkit.integrations.server import Limits, make_app, running

WORDS = ["the", "a", "cat", "dog", "sat", "ran", "on", "under", "mat", "house"]
WORDS += ["quickly", "slowly", "big", "small", "red"]


def random_group(rng: random.Random) -> dict:
    ref = " ".join(rng.choices(WORDS, k=rng.randint(3, 9)))
    completions = [" ".join(rng.choices(WORDS, k=rng.randint(0, 9))) for _ in range(4)]
    return {"reference": ref, "completions": completions}


def bleu(completion: str, reference: str) -> float:
    return sacrebleu.sentence_bleu(completion, [reference]).score / 100


class Slow(rewardkit.Reward):
    """1.0 per completion after a pause per call; counts calls and their sizes."""

    name = "slow"

    def __init__(self, pause: float):
        self.pause = pause
        self.sizes: list[int] = []

    def score(self, groups):
        time.sleep(self.pause)
        self.sizes.append(sum(len(g.completions) for g in groups))
        return rewardkit.RewardOutput([[1.0] * len(g.completions) for g in groups])


def test_many_concurrent_clients_all_answered_correctly_with_malformed_ones_mixed_in():
    reward = rewardkit.load_registry(entry_points=False).build_reward("bleu")
    clients, per_client = 48, 6
    started = time.monotonic()
    with running(make_app({"bleu": reward})) as url:
        parts = urlsplit(url)

        def client(k: int) -> list[tuple[str, bool]]:
            rng = random.Random(k)
            conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
            results = []
            for i in range(per_client):
                if (k + i) % 7 == 0:  # malformed among good ones
                    status, out = post(url, "/score", raw=b'{"groups": [', conn=conn)
                    results.append(("bad", status == 400 and "JSON" in out["error"]))
                    continue
                groups = [random_group(rng) for _ in range(rng.randint(1, 3))]
                if i % 2:
                    status, out = post(url, "/score", {"groups": groups}, conn=conn)
                    got = out["scores"]
                else:  # OpenRLHF's shape, one row per completion
                    rows = [(g["reference"], c) for g in groups for c in g["completions"]]
                    body = {
                        "query": ["Q:" + c for _, c in rows],
                        "prompts": ["Q:"] * len(rows),
                        "labels": [r for r, _ in rows],
                    }
                    status, out = post(url, "/get_reward", body, conn=conn)
                    flat = iter(out["rewards"])
                    got = [[next(flat) for _ in g["completions"]] for g in groups]
                expected = [[bleu(c, g["reference"]) for c in g["completions"]] for g in groups]
                results.append(("good", status == 200 and got == expected))  # exact, as JSON
            conn.close()
            return results

        with ThreadPoolExecutor(clients) as pool:
            results = [r for rs in pool.map(client, range(clients)) for r in rs]
        stats = get(url, "/info")[1]["rewards"]["bleu"]["stats"]
    assert len(results) == clients * per_client  # none dropped
    assert all(ok for _, ok in results), [r for r in results if not r[1]][:3]
    bad = sum(kind == "bad" for kind, _ in results)
    assert 0 < bad < len(results)
    assert stats["requests"] == len(results) - bad and stats["errors"] == 0
    assert time.monotonic() - started < 60


def test_concurrent_requests_are_merged_into_few_reward_calls():
    reward = Slow(pause=0.2)
    with running(make_app({"slow": reward}, Limits(max_batch=40))) as url:
        body = {"groups": [{"reference": "r", "completions": ["a", "b"]}]}
        with ThreadPoolExecutor(30) as pool:
            answers = list(pool.map(lambda _: post(url, "/score", body), range(30)))
    assert all(a[0] == 200 and a[1]["scores"] == [[1.0, 1.0]] for a in answers)
    assert sum(reward.sizes) == 60
    assert len(reward.sizes) < 10  # 30 requests, merged
    assert max(reward.sizes) <= 40  # max_batch


def test_clients_that_disconnect_mid_request_do_not_stall_the_server():
    reward = Slow(pause=0.3)
    with running(make_app({"slow": reward})) as url:
        parts = urlsplit(url)
        address = (parts.hostname, parts.port)
        # 1: sends half a body, then goes away
        with socket.create_connection(address) as sock:
            sock.sendall(
                b"POST /score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: 1000\r\n\r\n" + b'{"groups": ['
            )
        # 2: sends a whole request, then goes away before the answer
        whole = b'{"groups": [{"reference": "r", "completions": ["a"]}]}'
        for _ in range(3):
            with socket.create_connection(address) as sock:
                sock.sendall(
                    b"POST /score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    + f"Content-Length: {len(whole)}\r\n\r\n".encode()
                    + whole
                )
        # the server still answers, promptly, and so do the requests that follow
        started = time.monotonic()
        body = {"groups": [{"reference": "r", "completions": ["x", "y", "z"]}]}
        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda _: post(url, "/score", body), range(8)))
        assert [a[0] for a in answers] == [200] * 8
        assert all(a[1]["scores"] == [[1.0, 1.0, 1.0]] for a in answers)
        assert time.monotonic() - started < 10
        assert get(url, "/health")[0] == 200


def test_the_worker_dying_under_load():
    reward = WorkerReward(delay=0.05)
    try:
        with running(make_app({"worker": reward})) as url:
            killed = threading.Event()

            def kill_once():
                if reward.in_call.wait(20):
                    time.sleep(0.01)
                    reward.proc.kill()
                    killed.set()

            def client(k: int):
                texts = ["x" * (k % 5), "y" * (k % 3 + 1)]
                body = {"groups": [{"reference": "r", "completions": texts}]}
                status, out = post(url, "/score", body)
                if status == 200:
                    return out["scores"] == [[len(t) / 100 for t in texts]]
                return status == 500 and "worker died" in out["error"]

            killer = threading.Thread(target=kill_once)
            killer.start()
            with ThreadPoolExecutor(16) as pool:
                answers = list(pool.map(client, range(64)))
            killer.join()
            assert killed.is_set()
            assert len(answers) == 64 and all(answers)  # every one answered, rightly
            assert reward.starts >= 2  # restarted
            later = {"groups": [{"reference": "r", "completions": ["abcd"]}]}
            status, out = post(url, "/score", later)
            assert status == 200 and out["scores"] == [[0.04]]
    finally:
        reward.close()
