"""``rewardkit serve``: rewardkit's rewards over HTTP, for trainers on other processes or hosts.

One server process holds the rewards (and COMET's worker, BERTScore's model, every cache) for
all trainer ranks. Endpoints (JSON in, JSON out):

* ``POST /get_reward``: OpenRLHF's remote reward-model protocol (``--remote_rm_url
  http://HOST:PORT/get_reward``). Body ``{"query": [...], "prompts": [...], "labels": [...]}``:
  each query is the prompt followed by the completion (OpenRLHF decodes prompt and response
  tokens together, special tokens kept), each label the reference: a string, a list of strings,
  or ``{"references": [...], "source": "..."}``. The completion is the query minus its prompt,
  with trailing end-of-turn markers (``<|im_end|>``, ``</s>``, ...) removed. Answer
  ``{"rewards": [...], "scores": [...], "extra_logs": {component: [...]}}``. Consecutive rows
  with the same prompt and label form one group. ``?reward=SPEC`` picks a loaded reward
  (OpenRLHF splits its URL list at commas: write a comma in a spec as ``%2C``).
* ``POST /score``: rewardkit's own. Body ``{"groups": [{"references": [...] (or "reference"),
  "source": "..." (optional), "completions": [...]}], "reward": SPEC (optional)}``; answer
  ``{"reward", "signature", "scores": [[...]], "components": {label: [[...]]},
  "signatures": {label: ...}}``.
* ``GET /health`` and ``GET /info`` (the loaded rewards, their signatures and counters, the
  limits).

Each reward runs in one thread of its own; requests that arrive while it is busy are merged into
its next call (up to ``max_batch`` completions), so many small requests from many ranks cost
few reward calls. If a merged call fails, each of its requests is scored alone, so one request's
failure (bad text, a crashed worker) is answered as its own error and does not fail the others.
Errors are JSON ``{"error": "..."}``: 400 bad JSON, 413 too large, 422 missing or wrong fields
and unknown rewards, 500 a reward failed while scoring.

The server has no authentication: it binds 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import socket
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

import click

from rewardkit.errors import RewardError, RewardkitError
from rewardkit.integrations import as_references, group_rows, spread
from rewardkit.rewards import Group, Reward, RewardOutput, WeightedSum

__all__ = [
    "DEFAULT_END_MARKERS",
    "Batcher",
    "Limits",
    "bind",
    "make_app",
    "running",
    "serve_command",
]

#: End-of-turn / end-of-text markers removed from the end of an OpenRLHF query's completion.
DEFAULT_END_MARKERS = (
    "<|im_end|>",
    "<|endoftext|>",
    "<|eot_id|>",
    "<|end_of_text|>",
    "<end_of_turn>",
    "<eos>",
    "</s>",
)


@dataclass(frozen=True)
class Limits:
    """Request limits: body size in bytes, completions per request, completions per reward
    call when concurrent requests are merged."""

    max_body_bytes: int = 8 << 20
    max_completions: int = 4096
    max_batch: int = 1024


class Problem(Exception):
    """A request the server refuses: HTTP status and a one-line message."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class Batcher:
    """Runs one reward in a thread of its own, merging requests that wait into one call."""

    def __init__(self, reward: Reward, max_batch: int):
        self.reward = reward
        self.max_batch = max_batch
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"reward-{reward.name}")
        self._pending: list[tuple[list[Group], asyncio.Future]] = []
        self._drain_task: asyncio.Task | None = None
        #: requests, reward calls, completions scored, requests answered with an error
        self.stats = {"requests": 0, "calls": 0, "completions": 0, "errors": 0}

    async def score(self, groups: list[Group]) -> RewardOutput:
        """Score one request's groups; waits while earlier calls run."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._pending.append((groups, future))
        self.stats["requests"] += 1
        if self._drain_task is None or self._drain_task.done():
            self._drain_task = loop.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending:
            batch, size = [], 0
            while self._pending:  # take waiting requests up to max_batch completions (>= 1)
                n = sum(len(g.completions) for g in self._pending[0][0])
                if batch and size + n > self.max_batch:
                    break
                batch.append(self._pending.pop(0))
                size += n
            jobs = [groups for groups, future in batch if not future.done()]  # done: cancelled
            live = [future for _, future in batch if not future.done()]
            if not jobs:
                continue
            try:
                results = await loop.run_in_executor(self._executor, self._run, jobs)
            except BaseException as exc:  # the loop is shutting down: answer, then stop
                results = [exc] * len(jobs)
                if isinstance(exc, asyncio.CancelledError):
                    for future in live:
                        future.cancel()
                    raise
            for future, result in zip(live, results):
                if future.done():
                    continue
                if isinstance(result, BaseException):
                    self.stats["errors"] += 1
                    future.set_exception(result)
                else:
                    future.set_result(result)

    def _run(self, jobs: list[list[Group]]) -> list[RewardOutput | Exception]:
        """In the reward's thread: one call for all jobs; if it fails, each job alone."""
        self.stats["calls"] += 1
        merged = [g for groups in jobs for g in groups]
        try:
            out = self.reward(merged)
        except Exception as exc:
            if len(jobs) == 1:
                return [exc]
            return [self._run([groups])[0] for groups in jobs]
        self.stats["completions"] += sum(len(g.completions) for g in merged)
        return _split(out, [len(groups) for groups in jobs])

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def _split(out: RewardOutput, sizes: Sequence[int]) -> list[RewardOutput]:
    """One merged output -> one output per job of ``sizes[k]`` groups."""
    parts, start = [], 0
    for size in sizes:
        end = start + size
        components = {label: grid[start:end] for label, grid in out.components.items()}
        parts.append(RewardOutput(out.scores[start:end], components))
        start = end
    return parts


def signatures(reward: Reward) -> dict[str, str]:
    """Each component's signature, by the label its scores carry in ``components``."""
    if isinstance(reward, WeightedSum):
        return {label: part.signature() for label, _, part in reward.parts}
    return {reward.name: reward.signature()}


def close_reward(reward: Reward) -> None:
    """Stop a reward's worker process, if it has one (COMET), and its parts'."""
    parts = reward.parts if isinstance(reward, WeightedSum) else [(None, None, reward)]
    for _, _, part in parts:
        close = getattr(part, "close", None)
        if callable(close):
            with contextlib.suppress(Exception):
                close()


# --- request parsing ----------------------------------------------------------------------------


def _strings(body: Mapping[str, Any], key: str, where: str = "") -> list[str]:
    value = body.get(key)
    if value is None:
        raise Problem(422, f"missing field {where}{key!r} (a list of strings)")
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise Problem(422, f"field {where}{key!r} must be a list of strings")
    return value


def _references(value: Any, where: str) -> tuple[str, ...]:
    try:
        refs = as_references(value, where)
    except RewardError as exc:
        raise Problem(422, str(exc)) from None
    if refs is None:
        raise Problem(422, f"{where}: no reference")
    return refs


def parse_groups(body: Mapping[str, Any], limits: Limits) -> list[Group]:
    """The ``groups`` of a /score request."""
    raw = body.get("groups")
    if not isinstance(raw, list) or not raw:
        raise Problem(422, "missing field 'groups' (a non-empty list of groups)")
    groups, total = [], 0
    for k, item in enumerate(raw):
        where = f"groups[{k}]"
        if not isinstance(item, dict):
            raise Problem(422, f"{where} must be an object with references and completions")
        completions = _strings(item, "completions", f"{where}.")
        if "references" in item:
            refs = _references(item["references"], f"{where}.references")
        elif "reference" in item:
            refs = _references(item["reference"], f"{where}.reference")
        else:
            raise Problem(422, f"missing field {where}.references (a list of strings)")
        source = item.get("source")
        if source is not None and not isinstance(source, str):
            raise Problem(422, f"{where}.source must be a string")
        total += len(completions)
        groups.append(Group(refs, completions, source))
    if total > limits.max_completions:
        raise Problem(
            413,
            f"{total} completions in one request; this server takes at most "
            f"{limits.max_completions} (split the request)",
        )
    return groups


def completion_of(query: str, prompt: str, end_markers: Sequence[str], where: str) -> str:
    """An OpenRLHF query (prompt + completion as decoded text) -> the completion."""
    if not query.startswith(prompt):
        raise Problem(
            422,
            f"{where}: the query does not start with its prompt, so the "
            "completion cannot be told apart",
        )
    text = query[len(prompt) :].rstrip()
    stripped = True
    while stripped:
        stripped = False
        for marker in end_markers:
            if marker and text.endswith(marker):
                text = text[: -len(marker)].rstrip()
                stripped = True
    return text


def parse_openrlhf(
    body: Mapping[str, Any], limits: Limits, end_markers: Sequence[str]
) -> tuple[list[Group], list[list[int]], int]:
    """The groups of a /get_reward request, their row indices, and the number of rows."""
    queries = _strings(body, "query")
    prompts = body.get("prompts")
    if prompts is None:
        raise Problem(
            422,
            "missing field 'prompts': rewardkit needs each query's prompt to find "
            "the completion (OpenRLHF sends it; older clients that send only 'query' "
            "are not supported)",
        )
    prompts = _strings(body, "prompts")
    labels = body.get("labels")
    if not isinstance(labels, list):
        raise Problem(
            422,
            "missing field 'labels' (one reference per query: set OpenRLHF's "
            "--label_key to the reference column)",
        )
    if not len(queries) == len(prompts) == len(labels):
        raise Problem(
            422,
            f"{len(queries)} queries, {len(prompts)} prompts and {len(labels)} "
            "labels: give one of each per completion",
        )
    if len(queries) > limits.max_completions:
        raise Problem(
            413,
            f"{len(queries)} queries in one request; this server takes at most "
            f"{limits.max_completions}",
        )
    completions, references, sources = [], [], []
    for i, (query, prompt, label) in enumerate(zip(queries, prompts, labels)):
        where = f"labels[{i}]"
        source = None
        if isinstance(label, dict):
            source = label.get("source")
            if source is not None and not isinstance(source, str):
                raise Problem(422, f"{where}.source must be a string")
            label = label.get("references", label.get("reference"))
        references.append(_references(label, where))
        sources.append(source)
        completions.append(completion_of(query, prompt, end_markers, f"query[{i}]"))
    groups, rows = group_rows(completions, references, sources, keys=prompts)
    return groups, rows, len(queries)


# --- the application ----------------------------------------------------------------------------


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def make_app(
    rewards: Mapping[str, Reward],
    limits: Limits = Limits(),
    end_markers: Sequence[str] = DEFAULT_END_MARKERS,
) -> Any:
    """The server as an ASGI application (Starlette). ``rewards``: name -> built reward; the
    first is the default. Run it with :func:`running` (tests, embedding) or any ASGI server."""
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.requests import ClientDisconnect, Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    if not rewards:
        raise RewardkitError("the server needs at least one reward")
    batchers = {name: Batcher(reward, limits.max_batch) for name, reward in rewards.items()}
    default = next(iter(rewards))
    started = time.time()

    def pick(name: Any) -> tuple[str, Batcher]:
        name = default if name is None else name
        if not isinstance(name, str) or name not in batchers:
            raise Problem(422, f"unknown reward {name!r}; this server has: {', '.join(batchers)}")
        return name, batchers[name]

    async def read_json(request: Request) -> dict[str, Any]:
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > limits.max_body_bytes:
            raise Problem(
                413, f"request body of {length} bytes; the limit is {limits.max_body_bytes}"
            )
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limits.max_body_bytes:
                raise Problem(413, f"request body over the limit of {limits.max_body_bytes} bytes")
            chunks.append(chunk)
        try:
            body = json.loads(b"".join(chunks))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise Problem(400, f"the request body is not valid JSON: {exc}") from None
        if not isinstance(body, dict):
            raise Problem(400, "the request body must be a JSON object")
        return body

    async def run_reward(batcher: Batcher, groups: list[Group]) -> RewardOutput:
        try:
            return await batcher.score(groups)
        except RewardkitError as exc:
            raise Problem(500, str(exc)) from None
        except Exception as exc:
            raise Problem(500, f"reward failed: {type(exc).__name__}: {exc}") from None

    async def score(request: Request) -> dict[str, Any]:
        body = await read_json(request)
        name, batcher = pick(body.get("reward"))
        out = await run_reward(batcher, parse_groups(body, limits))
        return {
            "reward": name,
            "signature": batcher.reward.signature(),
            "scores": out.scores,
            "components": out.components,
            "signatures": signatures(batcher.reward),
        }

    async def get_reward(request: Request) -> dict[str, Any]:
        body = await read_json(request)
        _, batcher = pick(request.query_params.get("reward"))
        groups, rows, n = parse_openrlhf(body, limits, end_markers)
        flat = spread(await run_reward(batcher, groups), rows, n)
        extra = flat.components if len(flat.components) > 1 else {}
        return {"rewards": flat.scores, "scores": flat.scores, "extra_logs": extra}

    async def health(request: Request) -> dict[str, Any]:
        return {"status": "ok", "uptime_s": round(time.time() - started, 1)}

    async def info(request: Request) -> dict[str, Any]:
        from rewardkit import __version__

        return {
            "rewardkit": __version__,
            "default_reward": default,
            "rewards": {
                name: {
                    "signature": b.reward.signature(),
                    "components": signatures(b.reward),
                    "range": [_finite(v) for v in b.reward.range],
                    "stats": dict(b.stats),
                }
                for name, b in batchers.items()
            },
            "limits": asdict(limits),
            "end_markers": list(end_markers),
        }

    def endpoint(handler: Any) -> Any:
        async def respond(request: Request) -> Response:
            try:
                return JSONResponse(await handler(request))
            except Problem as problem:
                return JSONResponse({"error": str(problem)}, status_code=problem.status)
            except ClientDisconnect:  # nobody to answer
                return Response(status_code=400)

        return respond

    async def http_error(request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 500)
        detail = getattr(exc, "detail", "") or "error"
        if status == 404:
            detail = f"no endpoint {request.url.path}; try /score, /get_reward, /info, /health"
        return JSONResponse({"error": detail}, status_code=status)

    app = Starlette(
        routes=[
            Route("/score", endpoint(score), methods=["POST"]),
            Route("/get_reward", endpoint(get_reward), methods=["POST"]),
            Route("/health", endpoint(health), methods=["GET"]),
            Route("/info", endpoint(info), methods=["GET"]),
        ],
        exception_handlers={HTTPException: http_error},
    )
    app.state.batchers = batchers
    return app


# --- running it ---------------------------------------------------------------------------------


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (port 0: any free port); one-line error if taken."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise RewardkitError(f"cannot resolve --host {host}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    # proto IPPROTO_TCP (not 0): asyncio then sets TCP_NODELAY on accepted connections; without
    # it, Nagle's algorithm and delayed ACKs hold every response for ~40 ms
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise RewardkitError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    return sock


def uvicorn_server(app: Any, log_level: str = "warning", **options: Any) -> Any:
    """A uvicorn server for ``app`` (access log off; uvicorn's own options may be passed)."""
    import uvicorn

    config = uvicorn.Config(
        app, log_level=log_level, access_log=False, timeout_keep_alive=30, **options
    )
    return uvicorn.Server(config)


@contextlib.contextmanager
def running(app: Any, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve ``app`` from a background thread; yields its base URL (``http://host:port``)."""
    sock = bind(host, port)
    server = uvicorn_server(app)  # from a thread, uvicorn installs no signal handlers
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RewardkitError("the reward server did not start")
            time.sleep(0.01)
        yield f"http://{host}:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
        for batcher in app.state.batchers.values():
            batcher.close()


# --- the command --------------------------------------------------------------------------------


@click.command("serve")
@click.option(
    "--reward",
    "-r",
    "specs",
    multiple=True,
    metavar="SPEC",
    help="A reward to serve (repeatable; the first is the default). Default: bleu.",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    default=8000,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port to listen on (0: any free port; the one taken is printed).",
)
@click.option(
    "--max-body-bytes",
    default=Limits.max_body_bytes,
    show_default=True,
    type=click.IntRange(min=1024),
    help="Largest request body.",
)
@click.option(
    "--max-completions",
    default=Limits.max_completions,
    show_default=True,
    type=click.IntRange(min=1),
    help="Most completions in one request.",
)
@click.option(
    "--max-batch",
    default=Limits.max_batch,
    show_default=True,
    type=click.IntRange(min=1),
    help="Most completions in one reward call when waiting requests are merged.",
)
@click.option(
    "--end-marker",
    "end_markers",
    multiple=True,
    metavar="TEXT",
    help="Text removed from the end of an OpenRLHF completion (repeatable; replaces the "
    "defaults: " + " ".join(DEFAULT_END_MARKERS) + ").",
)
@click.option(
    "--log-level",
    default="warning",
    show_default=True,
    type=click.Choice(["critical", "error", "warning", "info", "debug"]),
    help="uvicorn's log level.",
)
@click.pass_obj
def serve_command(
    registry: Any,
    specs: tuple[str, ...],
    host: str,
    port: int,
    max_body_bytes: int,
    max_completions: int,
    max_batch: int,
    end_markers: tuple[str, ...],
    log_level: str,
) -> None:
    """Serve rewards over HTTP: OpenRLHF's /get_reward, rewardkit's /score, /info, /health.

    For OpenRLHF pass --reward.remote_url http://HOST:PORT/get_reward (older releases:
    --remote_rm_url) and set --data.label_key (--label_key) to the reference column. The server
    has no authentication; it binds 127.0.0.1 by default.
    """
    specs = specs or ("bleu",)
    for spec in specs:
        registry.check_spec(spec)  # typos fail before the port is taken or models load
    if len(set(specs)) < len(specs):
        raise RewardkitError("the same --reward is given twice")
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise RewardkitError(
            "rewardkit serve needs starlette and uvicorn: pip install 'rewardkit[serve]'"
        ) from None
    limits = Limits(max_body_bytes, max_completions, max_batch)
    sock = bind(host, port)
    rewards = {spec: registry.build_reward(spec) for spec in specs}
    app = make_app(rewards, limits, end_markers or DEFAULT_END_MARKERS)
    where = f"{host}:{sock.getsockname()[1]}"
    if host not in ("127.0.0.1", "localhost", "::1"):
        click.echo(f"warning: listening on {host}: anyone who reaches it can use it", err=True)
    click.echo(f"rewardkit serve: http://{where} (rewards: {', '.join(specs)})", err=True)
    try:
        uvicorn_server(app, log_level=log_level).run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()
        for reward in rewards.values():
            close_reward(reward)
