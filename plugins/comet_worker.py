"""rewardkit's COMET worker. It runs INSIDE rewardkit's COMET environment (unbabel-comet 2.2.7,
transformers<5), never inside rewardkit's own, and imports nothing from rewardkit.

Modes (``python comet_worker.py MODE ...``, with the COMET environment's python):

``serve``
    What the ``comet`` reward starts: a long-lived server speaking JSON lines on stdin/stdout. One
    request per line, one answer per line, in order::

        {"id": 1, "op": "load", "model": "/path/model.ckpt", "device": "cpu", "batch_size": 32}
        {"id": 2, "op": "score", "groups": [{"src": "...", "refs": ["..."], "mts": ["...", ...]}]}
        {"id": 3, "op": "exit"}

    Answers are ``{"id": N, "ok": true, ...}`` or ``{"id": N, "ok": false, "error": "..."}``.
    Everything that libraries print goes to stderr: file descriptor 1 is moved to stderr at
    start, and the protocol writes to a private copy of the original stdout.

``predict CHECKPOINT``
    The reference: loads the model, then for each line ``{"samples": [{"src", "mt", "ref"}, ...],
    "batch_size": N}`` on stdin writes a line ``{"scores": [...], "seconds": ...}`` computed by
    COMET's own ``model.predict(samples, batch_size=N, gpus=0, progress_bar=False)`` (``seconds``
    times that call alone). Tests and benchmarks compare against it.

``build OUT ENCODER --kind regression|referenceless --seed N``
    Builds a small COMET model offline from a local BERT-type encoder folder (e.g.
    all-MiniLM-L6-v2): COMET's own ``RegressionMetric`` (or ``ReferencelessRegression``) with
    ``encoder_model="BERT"``, random layerwise-attention weights and a random estimator from a
    fixed seed, saved as ``OUT/hparams.yaml`` + ``OUT/checkpoints/model.ckpt``, loadable by
    ``comet.load_from_checkpoint``. It exists for tests and benchmarks; its scores mean nothing.

How ``score`` is fast yet equal to ``model.predict``: for COMET's regression models (wmt22-comet-da
is a ``RegressionMetric``; ``ReferencelessRegression`` for QE), ``predict`` runs
``forward(src, mt, ref)`` = ``get_sentence_embedding`` of each of the three texts, then
``estimate(src_emb, mt_emb, ref_emb)`` (the feed-forward on [mt, ref, mt*ref, |mt-ref|, mt*src,
|mt-src|]). A sentence embedding depends on its text only (padding is masked in the encoder, in
the layerwise attention's layer norm and in the average pooling), so the worker embeds each
distinct text of a step once (a group's source and references once, identical completions once),
through the model's own ``encoder.prepare_sample`` and ``get_sentence_embedding``, in
length-sorted batches, keeps source and reference embeddings in a bounded LRU cache across
steps, and runs the model's ``estimate`` on the gathered rows. The only difference from
``predict`` is which texts share a padded batch, i.e. float rounding (about 1e-7). Other model
classes (XCOMET, CometKiwi's UnifiedMetric) take the plain ``model.predict`` path on the step's
distinct triples.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from collections import OrderedDict

PROTOCOL = 1


def _protocol_stream():
    """A private copy of stdout for the protocol; fd 1 (and sys.stdout) then go to stderr, so
    nothing a library prints can corrupt the answers."""
    out = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return out


def _quiet_libraries() -> None:
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    for name in ("pytorch_lightning", "lightning", "lightning_fabric", "comet", "transformers"):
        logging.getLogger(name).setLevel(logging.ERROR)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def load_model(model: str, device: str = "cpu", revision: str | None = None):
    """A COMET model from a checkpoint path, or from a hub name (at ``revision``, a pinned
    commit) when the hub is reachable.

    A local checkpoint first loads with ``local_files_only=True`` (its encoder's config and
    tokenizer from the local HF cache or a local path), then, failing that, from the hub.
    """
    from comet import load_from_checkpoint

    if os.path.isfile(model):
        path = model
    else:
        try:  # comet.download_model takes no revision: the same call, with one
            from huggingface_hub import snapshot_download

            folder = snapshot_download(repo_id=model, revision=revision)
            path = os.path.join(folder, "checkpoints", "model.ckpt")
        except Exception as exc:
            raise RuntimeError(
                f"could not download COMET model {model!r} ({exc}); without network access pass "
                "a local checkpoint: comet:model=/path/to/MODEL/checkpoints/model.ckpt"
            ) from None
    try:
        loaded = load_from_checkpoint(path, local_files_only=True)
    except Exception:
        loaded = load_from_checkpoint(path)
    loaded.eval()
    return loaded.to(device)


class Scorer:
    """Scores steps with one loaded model (see the module docstring)."""

    def __init__(self, model, device: str, batch_size: int, cache_size: int = 8192):
        import torch
        from comet.models import ReferencelessRegression, RegressionMetric

        self.torch = torch
        self.model = model
        self.device = device
        self.batch_size = max(1, int(batch_size))
        self.cache_size = cache_size
        self.cache: OrderedDict[str, object] = OrderedDict()  # text -> embedding (source, ref)
        self.referenceless = type(model) is ReferencelessRegression
        self.fast = type(model) in (RegressionMetric, ReferencelessRegression)
        self.requires_references = bool(model.requires_references())

    def info(self) -> dict:
        import torch
        import transformers

        return {
            "class": type(self.model).__name__,
            "requires_references": self.requires_references,
            "fast_path": self.fast,
            "encoder": self.model.hparams.get("encoder_model"),
            "pretrained_model": str(self.model.hparams.get("pretrained_model")),
            "comet": _version("unbabel-comet"),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "device": self.device,
        }

    # --- embeddings ---

    def embed(self, texts: list[str]) -> dict[str, object]:
        """Sentence embeddings of distinct texts, batched by length (``get_sentence_embedding``
        on ``encoder.prepare_sample`` batches, as ``predict`` computes them)."""
        out: dict[str, object] = {}
        order = sorted(texts, key=len)
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            inputs = self.model.encoder.prepare_sample(batch)
            emb = self.model.get_sentence_embedding(
                inputs["input_ids"].to(self.device), inputs["attention_mask"].to(self.device)
            )
            for text, row in zip(batch, emb):
                out[text] = row
        return out

    def cached(self, texts: list[str]) -> tuple[dict[str, object], list[str]]:
        """Embeddings of ``texts`` through the LRU cache; also the texts that were encoded."""
        found, missing = {}, []
        for text in dict.fromkeys(texts):
            if text in self.cache:
                self.cache.move_to_end(text)
                found[text] = self.cache[text]
            else:
                missing.append(text)
        fresh = self.embed(missing)
        for text, emb in fresh.items():
            self.cache[text] = found[text] = emb
        while len(self.cache) > self.cache_size:
            self.cache.popitem(last=False)
        return found, missing

    # --- scoring ---

    def score(self, groups: list[dict]) -> tuple[list[list[float]], dict]:
        torch = self.torch
        with torch.inference_mode():
            if self.fast:
                return self._score_fast(groups)
            return self._score_predict(groups)

    def _score_fast(self, groups: list[dict]) -> tuple[list[list[float]], dict]:
        torch = self.torch
        sources = [g["src"] for g in groups]
        references = [] if self.referenceless else [r for g in groups for r in g["refs"]]
        table, encoded = self.cached(sources + references)
        encoded_set = set(encoded)
        stats = {
            "groups": len(groups),
            "completions": sum(len(g["mts"]) for g in groups),
            "encoded_sources": len(encoded_set & set(sources)),
            "encoded_references": len(encoded_set.intersection(references) - set(sources)),
            "cache_hits": len(set(sources + references)) - len(encoded_set),
        }
        # Completions: each distinct text of the step once (a copy of a source or reference
        # reuses that embedding).
        distinct = [m for m in dict.fromkeys(m for g in groups for m in g["mts"]) if m not in table]
        table.update(self.embed(distinct))
        stats["encoded_completions"] = len(distinct)

        rows: list[tuple[int, str, str, str]] = []  # (key index, src, mt, ref)
        keys: list[tuple[int, str]] = []  # (group, distinct completion)
        for i, g in enumerate(groups):
            refs = [g["src"]] if self.referenceless else g["refs"]
            for mt in dict.fromkeys(g["mts"]):
                keys.append((i, mt))
                rows += [(len(keys) - 1, g["src"], mt, ref) for ref in refs]
        stats["unique_completions"] = len(keys)
        stats["estimator_rows"] = len(rows)

        best = [float("-inf")] * len(keys)
        chunk = 4096
        for start in range(0, len(rows), chunk):
            part = rows[start : start + chunk]
            src = torch.stack([table[r[1]] for r in part])
            mt = torch.stack([table[r[2]] for r in part])
            if self.referenceless:
                # ReferencelessRegression.forward after its two get_sentence_embedding calls.
                features = torch.cat((mt, src, mt * src, torch.abs(mt - src)), dim=1)
                values = self.model.estimator(features).view(-1)
            else:
                ref = torch.stack([table[r[3]] for r in part])
                values = self.model.estimate(src, mt, ref).score
            for (key, *_), value in zip(part, values.float().cpu().tolist()):
                best[key] = max(best[key], value)
        by_key = dict(zip(keys, best))
        scores = [[by_key[(i, mt)] for mt in g["mts"]] for i, g in enumerate(groups)]
        return scores, stats

    def _score_predict(self, groups: list[dict]) -> tuple[list[list[float]], dict]:
        samples, index = [], {}
        for i, g in enumerate(groups):
            for mt in dict.fromkeys(g["mts"]):
                for ref in g["refs"]:
                    index.setdefault((i, mt), []).append(len(samples))
                    samples.append({"src": g["src"], "mt": mt, "ref": ref})
        gpus = 1 if self.device.startswith("cuda") else 0
        out = self.model.predict(
            samples, batch_size=self.batch_size, gpus=gpus, progress_bar=False, num_workers=0
        )
        values = [float(v) for v in out.scores]
        scores = [
            [max(values[k] for k in index[(i, mt)]) for mt in g["mts"]]
            for i, g in enumerate(groups)
        ]
        stats = {
            "groups": len(groups),
            "completions": sum(len(g["mts"]) for g in groups),
            "unique_completions": len(index),
            "estimator_rows": len(samples),
        }
        return scores, stats


def _version(dist: str) -> str:
    from importlib.metadata import version

    try:
        return version(dist)
    except Exception:
        return "?"


# --- modes --------------------------------------------------------------------------------------


def serve() -> int:
    proto = _protocol_stream()
    _quiet_libraries()
    scorer: Scorer | None = None

    def answer(request_id, **payload) -> None:
        proto.write(json.dumps({"id": request_id, **payload}) + "\n")
        proto.flush()

    for line in sys.stdin:
        if not line.strip():
            continue
        request_id = None
        try:
            request = json.loads(line)
            request_id, op = request.get("id"), request.get("op")
            if op == "exit":
                answer(request_id, ok=True)
                return 0
            if op == "load":
                start = time.perf_counter()
                device = request.get("device", "cpu")
                model = load_model(request["model"], device, request.get("revision"))
                scorer = Scorer(model, device, request.get("batch_size", 32))
                scorer.cache_size = int(request.get("cache_size", scorer.cache_size))
                info = scorer.info()
                info["load_seconds"] = time.perf_counter() - start
                answer(request_id, ok=True, info=info, protocol=PROTOCOL, pid=os.getpid())
            elif op == "score":
                if scorer is None:
                    raise RuntimeError("no model loaded (send a 'load' request first)")
                start = time.perf_counter()
                scores, stats = scorer.score(request["groups"])
                stats["seconds"] = time.perf_counter() - start
                stats["cache_size"] = len(scorer.cache)
                answer(request_id, ok=True, scores=scores, stats=stats)
            else:
                raise ValueError(f"unknown op {op!r}")
        except Exception as exc:
            traceback.print_exc(file=sys.stderr)
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            answer(request_id, ok=False, error=f"{type(exc).__name__}: {message}")
    return 0


def predict(checkpoint: str) -> int:
    proto = _protocol_stream()
    _quiet_libraries()
    start = time.perf_counter()
    model = load_model(checkpoint, "cpu")
    load_seconds = time.perf_counter() - start
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        kwargs = dict(batch_size=request.get("batch_size", 16), gpus=0, progress_bar=False)
        if request.get("warmup"):  # not timed: the first predict call sets Lightning up
            model.predict(request["samples"][:8], **kwargs)
        t0 = time.perf_counter()
        out = model.predict(request["samples"], **kwargs)
        seconds = time.perf_counter() - t0
        result = {
            "scores": [float(s) for s in out.scores],
            "seconds": seconds,
            "load_seconds": load_seconds,
        }
        proto.write(json.dumps(result) + "\n")
        proto.flush()
    return 0


def build(out: str, encoder: str, kind: str, seed: int) -> int:
    _quiet_libraries()
    import pytorch_lightning as pl
    import torch
    import yaml
    from comet.models import ReferencelessRegression, RegressionMetric

    torch.manual_seed(seed)
    cls = RegressionMetric if kind == "regression" else ReferencelessRegression
    model = cls(
        encoder_model="BERT",
        pretrained_model=encoder,
        layer="mix",
        layer_transformation="softmax",
        layer_norm=True,
        pool="avg",
        hidden_sizes=[256, 64],
        activations="Tanh",
        dropout=0.1,
        local_files_only=True,
    )
    with torch.no_grad():  # make every layer count, and spread the scores around 0.5
        for p in model.layerwise_attention.scalar_parameters:
            p.normal_(0.0, 1.0)
        last = model.estimator.ff[-1]
        last.weight.mul_(8.0)
        last.bias.fill_(0.5)
    hparams = dict(model.hparams)
    os.makedirs(os.path.join(out, "checkpoints"), exist_ok=True)
    with open(os.path.join(out, "hparams.yaml"), "w") as f:
        yaml.safe_dump(hparams, f)
    checkpoint = {
        "state_dict": model.state_dict(),
        "hyper_parameters": hparams,
        "pytorch-lightning_version": pl.__version__,
        "epoch": 0,
        "global_step": 0,
    }
    torch.save(checkpoint, os.path.join(out, "checkpoints", "model.ckpt"))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    sub.add_parser("serve")
    p = sub.add_parser("predict")
    p.add_argument("checkpoint")
    b = sub.add_parser("build")
    b.add_argument("out")
    b.add_argument("encoder")
    b.add_argument("--kind", choices=["regression", "referenceless"], default="regression")
    b.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.mode == "serve":
        return serve()
    if args.mode == "predict":
        return predict(args.checkpoint)
    return build(args.out, args.encoder, args.kind, args.seed)


if __name__ == "__main__":
    sys.exit(main())
