"""Benchmark: rewardkit's rewards inside TRL's calling convention, and ``rewardkit serve``.

1. **TRL step.** One GRPO step as TRL hands it to a reward function (``--prompts`` prompts x
   ``--group-size`` completions, one row per completion, prompt and reference repeated on each
   row; the completions and references of ``text_rewards.py``'s step with repeats) is scored by

   * ``rewardkit``: ``rewardkit.integrations.trl.reward_func(reward)(prompts=..., completions=...,
     reference=...)``, the reward built anew before each timed run (fresh caches; not timed);
   * ``sacrebleu loop``: the reward function users write, ``[sacrebleu.sentence_bleu(c, [r])
     .score / 100 for c, r in zip(completions, reference)]`` (``sentence_chrf`` likewise).

   Every score must be identical (``==``) or the script exits with status 1. Best and median of
   ``--repeats`` runs, the methods interleaved.

2. **Server.** ``rewardkit serve -r bleu`` runs as a separate process (``OMP_NUM_THREADS=1``);
   1, 4 and 16 client threads in this process send requests over loopback for a fixed total of
   completions: ``/score`` with one group of ``--group-size`` completions per request (a GRPO
   prompt), and ``/get_reward`` with one completion per request (OpenRLHF's single-turn executor
   sends one row per request). Every answer is checked against sacrebleu. Reported:
   completions/s, and how many reward calls the server made for how many requests (concurrent
   requests are merged). Client and server share the machine's cores.

Run: ``OMP_NUM_THREADS=1 python benchmarks/integrations.py``. Results go to
``benchmarks/results/integrations.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import datetime
import http.client
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import sacrebleu
from grpo_text import cpu_model
from text_rewards import make_steps

import rewardkit
from rewardkit.integrations.trl import reward_func

SEED = 1234
METRICS = {"bleu": sacrebleu.sentence_bleu, "chrf": sacrebleu.sentence_chrf}


def trl_rows(groups: list[rewardkit.Group]) -> dict[str, list]:
    """A step as TRL passes it: one row per completion, prompt and reference repeated."""
    rows: dict[str, list] = {"prompts": [], "completions": [], "reference": []}
    for k, group in enumerate(groups):
        for completion in group.completions:
            rows["prompts"].append(f"prompt {k}")
            rows["completions"].append(completion)
            rows["reference"].append(group.references[0])
    return rows


def time_trl(rows: dict[str, list], metric: str, repeats: int) -> dict[str, list[float]]:
    """Seconds per step for each method; exits if any score differs from sacrebleu's."""
    registry = rewardkit.load_registry(entry_points=False)
    sentence = METRICS[metric]
    times: dict[str, list[float]] = {"rewardkit": [], "sacrebleu_loop": []}
    for _ in range(repeats):
        func = reward_func(registry.build_reward(metric))  # fresh caches, not timed
        start = time.perf_counter()
        ours = func(prompts=rows["prompts"], completions=rows["completions"], **_columns(rows))
        times["rewardkit"].append(time.perf_counter() - start)

        start = time.perf_counter()
        plain = [
            sentence(c, [r]).score / 100 for c, r in zip(rows["completions"], rows["reference"])
        ]
        times["sacrebleu_loop"].append(time.perf_counter() - start)
        if ours != plain:
            bad = next(i for i, (a, b) in enumerate(zip(ours, plain)) if a != b)
            sys.exit(f"{metric}: row {bad} scores {ours[bad]!r} but sacrebleu {plain[bad]!r}")
    return times


def _columns(rows: dict[str, list]) -> dict[str, list]:
    return {"reference": rows["reference"], "completion_ids": [[0]] * len(rows["completions"])}


# --- the server ---------------------------------------------------------------------------------


def start_server() -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "rewardkit", "serve", "--port", "0", "-r", "bleu"]
    proc = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env)
    line = proc.stderr.readline()
    match = re.search(r"http://([\d.]+):(\d+)", line)
    if not match:
        proc.kill()
        sys.exit(f"the server did not start: {line}{proc.stderr.read()}")
    return proc, match.group(0)


def _post(conn: http.client.HTTPConnection, path: str, body: dict) -> dict:
    conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
    response = conn.getresponse()
    data = json.loads(response.read())
    if response.status != 200:
        sys.exit(f"{path}: HTTP {response.status}: {data}")
    return data


def _info(url: str) -> dict:
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    conn.request("GET", "/info")
    data = json.loads(conn.getresponse().read())
    conn.close()
    return data["rewards"]["bleu"]["stats"]


def time_server(url: str, groups: list[rewardkit.Group], endpoint: str, clients: int) -> dict:
    """Send every completion of ``groups`` through ``endpoint`` from ``clients`` threads."""
    host, port = url.removeprefix("http://").split(":")
    if endpoint == "/score":
        requests = [
            ({"groups": [{"reference": g.references[0], "completions": list(g.completions)}]}, g)
            for g in groups
        ]
    else:
        requests = [
            (
                {"query": ["Q: " + c], "prompts": ["Q: "], "labels": [g.references[0]]},
                rewardkit.Group(g.references, [c]),
            )
            for g in groups
            for c in g.completions
        ]
    expected = {
        id(g): [sacrebleu.sentence_bleu(c, list(g.references)).score / 100 for c in g.completions]
        for _, g in requests
    }
    shares = [requests[k::clients] for k in range(clients)]

    def client(share: list) -> int:
        conn = http.client.HTTPConnection(host, int(port), timeout=120)
        wrong = 0
        for body, group in share:
            data = _post(conn, endpoint, body)
            got = data["scores"][0] if endpoint == "/score" else data["rewards"]
            wrong += got != expected[id(group)]
        conn.close()
        return wrong

    before = _info(url)
    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        wrong = sum(pool.map(client, shares))
    seconds = time.perf_counter() - start
    after = _info(url)
    if wrong:
        sys.exit(f"{endpoint} with {clients} clients: {wrong} answers differ from sacrebleu")
    completions = sum(len(g.completions) for g in groups)
    return {
        "clients": clients,
        "requests": len(requests),
        "completions": completions,
        "seconds": round(seconds, 4),
        "completions_per_s": round(completions / seconds, 1),
        "requests_per_s": round(len(requests) / seconds, 1),
        "reward_calls": after["calls"] - before["calls"],
    }


# --- report -------------------------------------------------------------------------------------


def summarise(times: dict[str, list[float]], n: int) -> dict:
    out = {
        name: {
            "best_s": round(min(ts), 5),
            "median_s": round(statistics.median(ts), 5),
            "completions_per_s_best": round(n / min(ts), 1),
            "runs_s": [round(t, 5) for t in ts],
        }
        for name, ts in times.items()
    }
    out["speedup_best"] = round(min(times["sacrebleu_loop"]) / min(times["rewardkit"]), 2)
    out["speedup_median"] = round(
        statistics.median(times["sacrebleu_loop"]) / statistics.median(times["rewardkit"]), 2
    )
    return out


def markdown(report: dict) -> str:
    m, s = report["machine"], report["settings"]
    lines = [
        "# rewardkit inside TRL, and `rewardkit serve`",
        "",
        f"`{report['command']}` on {report['date']}",
        "",
        f"Machine: {m['cpu_model']}, {m['cores']} cores, OMP_NUM_THREADS={m['omp_num_threads']}, "
        f"load average {m['loadavg_start'][0]} at start and {m['loadavg_end'][0]} at the end "
        "(the machine is shared with other work; compare ratios from the same run).",
        "",
        f"## TRL reward-function call: {s['prompts']} prompts x G={s['group_size']} "
        f"({s['prompts'] * s['group_size']} rows), {s['repeats']} runs",
        "",
        "| metric | rewardkit best / median (ms) | sacrebleu loop best / median (ms) | speedup |",
        "|---|---|---|---|",
    ]
    for metric, r in report["results"]["trl"].items():
        a, b = r["rewardkit"], r["sacrebleu_loop"]
        lines.append(
            f"| {metric} | {1e3 * a['best_s']:.1f} / {1e3 * a['median_s']:.1f} | "
            f"{1e3 * b['best_s']:.1f} / {1e3 * b['median_s']:.1f} | "
            f"{r['speedup_best']}x best, {r['speedup_median']}x median |"
        )
    lines += [
        "",
        "Every score identical to sacrebleu's (`==`).",
        "",
        "## `rewardkit serve -r bleu`: completions/s over loopback",
        "",
        "| endpoint | clients | requests | completions/s | requests/s | reward calls |",
        "|---|---|---|---|---|---|",
    ]
    for endpoint, runs in report["results"]["server"].items():
        for r in runs:
            lines.append(
                f"| {endpoint} | {r['clients']} | {r['requests']} | {r['completions_per_s']} | "
                f"{r['requests_per_s']} | {r['reward_calls']} |"
            )
    lines += [
        "",
        "`/score`: one group of G completions per request; `/get_reward`: one completion per "
        "request, as OpenRLHF sends them. Every answer checked against sacrebleu. Server and "
        "clients share the 2 cores.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=128, help="prompts per TRL step (128)")
    parser.add_argument("--group-size", type=int, default=8, help="completions per prompt (8)")
    parser.add_argument("--repeats", type=int, default=7, help="timed TRL steps per method (7)")
    parser.add_argument(
        "--server-prompts", type=int, default=512, help="prompts sent to the server per run (512)"
    )
    parser.add_argument(
        "--output-dir",
        type=Path,
        default=Path(__file__).resolve().parent / "results",
        help="where integrations.json and .md go (benchmarks/results)",
    )
    args = parser.parse_args(argv)
    if min(args.prompts, args.group_size, args.repeats, args.server_prompts) < 1:
        parser.error("--prompts, --group-size, --repeats and --server-prompts must be positive")
    if os.environ.get("OMP_NUM_THREADS") != "1":
        print("note: run with OMP_NUM_THREADS=1 for comparable timings", file=sys.stderr)
    loadavg_start = os.getloadavg()

    step = make_steps(args.prompts, args.group_size, SEED)["repeats"]
    rows = trl_rows(step)
    trl = {}
    for metric in METRICS:
        print(f"TRL call, {metric}: {len(rows['completions'])} rows ...", file=sys.stderr)
        trl[metric] = summarise(time_trl(rows, metric, args.repeats), len(rows["completions"]))

    server_step = make_steps(args.server_prompts, args.group_size, SEED + 1)["repeats"]
    proc, url = start_server()
    server: dict[str, list] = {}
    try:
        for endpoint in ("/score", "/get_reward"):
            server[endpoint] = []
            for clients in (1, 4, 16):
                print(f"server {endpoint}, {clients} clients ...", file=sys.stderr)
                server[endpoint].append(time_server(url, server_step, endpoint, clients))
    finally:
        proc.terminate()
        proc.wait(timeout=30)

    report = {
        "benchmark": "integrations",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(
            ([f"OMP_NUM_THREADS={omp}"] if (omp := os.environ.get("OMP_NUM_THREADS")) else [])
            + ["python", "benchmarks/integrations.py"]
            + (argv if argv is not None else sys.argv[1:])
        ),
        "machine": {
            "platform": platform.platform(),
            "cpu_model": cpu_model(),
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "sacrebleu": sacrebleu.__version__,
            "rewardkit": rewardkit.__version__,
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
            "loadavg_start": [round(x, 2) for x in loadavg_start],
            "loadavg_end": [round(x, 2) for x in os.getloadavg()],
        },
        "settings": {
            "prompts": args.prompts,
            "group_size": args.group_size,
            "repeats": args.repeats,
            "server_prompts": args.server_prompts,
            "data": "text_rewards.make_steps(..., seed)['repeats']: a quarter of each group "
            "repeated",
            "timer": "time.perf_counter",
        },
        "results": {"trl": trl, "server": server},
    }
    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / "integrations.json").write_text(json.dumps(report, indent=2) + "\n")
    text = markdown(report)
    (args.output_dir / "integrations.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
