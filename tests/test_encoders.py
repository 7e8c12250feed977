"""Encoders against independent computations: sentence-transformers' own encode, a direct `transformers`
forward pass on a tiny BERT built here (the hub-model code path, offline), and scikit-learn TF-IDF + SVD."""
from __future__ import annotations

import collections
import re

import numpy as np
import pytest

from conftest import EXAMPLE_CORPUS
from corpusmap.corpus import iter_corpus
from corpusmap.encoders import TfidfEncoder, TransformerEncoder, padded_width, plan_batches, resolve_model
from corpusmap.errors import CorpusmapError

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def elife_texts():
    """The abstracts of the bundled example corpus, as corpusmap reads them."""
    texts = []
    for batch in iter_corpus([EXAMPLE_CORPUS]):
        texts.extend(batch.column("text").to_pylist())
    return texts


@pytest.fixture(scope="module")
def minilm():
    return TransformerEncoder("all-MiniLM-L6-v2", batch_size=16, device="cpu")


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory, elife_texts):
    """A small random BERT with a word-level vocabulary from real abstracts, saved like a hub checkpoint."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder = tmp_path_factory.mktemp("tiny-bert")
    counts = collections.Counter(w for t in elife_texts[:400] for w in re.findall(r"\w+|[^\w\s]", t.lower()))
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [w for w, _ in counts.most_common(3000)]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizerFast(vocab_file=str(folder / "vocab.txt")).save_pretrained(folder)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128)
    BertModel(config).eval().save_pretrained(folder)
    return folder


def direct_hidden_states(folder, texts, max_length):
    """Last hidden state of each text on its own (no padding), straight from `transformers`."""
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModel.from_pretrained(folder).eval()
    out = []
    with torch.inference_mode():
        for text in texts:
            enc = tokenizer(text, truncation=True, max_length=max_length, return_tensors="pt")
            out.append(model(**enc).last_hidden_state[0].numpy())
    return out


def test_default_model_matches_sentence_transformers_encode(minilm, elife_texts):
    from sentence_transformers import SentenceTransformer

    texts = elife_texts[:48]
    reference = SentenceTransformer(resolve_model("all-MiniLM-L6-v2"), device="cpu").encode(
        texts, batch_size=16, convert_to_numpy=True)
    ours = minilm.encode(texts)
    assert ours.vectors.shape == (48, 384) and ours.vectors.dtype == np.float32
    np.testing.assert_allclose(ours.vectors, reference, atol=2e-5)


def test_order_is_restored_after_length_sorting(minilm, elife_texts):
    texts = elife_texts[100:124]
    forward = minilm.encode(texts).vectors
    permutation = np.random.default_rng(0).permutation(len(texts))
    shuffled = minilm.encode([texts[i] for i in permutation]).vectors
    np.testing.assert_allclose(shuffled, forward[permutation], atol=2e-5)
    one_by_one = np.vstack([minilm.encode([t]).vectors for t in texts[:4]])
    np.testing.assert_allclose(one_by_one, forward[:4], atol=2e-5)


def test_truncation_is_counted(minilm, elife_texts):
    texts = elife_texts[:200]
    tokenizer = minilm._model.tokenizer
    expected = sum(len(tokenizer(t.strip())["input_ids"]) > minilm.max_length for t in texts)
    assert minilm.max_length == 256
    enc, truncated = minilm.tokenize(texts)
    assert truncated == expected > 0
    assert max(len(ids) for ids in enc["input_ids"]) == 256


def test_token_budget_batches_give_the_same_vectors(elife_texts):
    texts = elife_texts[:40]
    fixed = TransformerEncoder("all-MiniLM-L6-v2", batch_size=8, device="cpu")
    budget = TransformerEncoder("all-MiniLM-L6-v2", batch_size=64, max_tokens_per_batch=2048, device="cpu")
    np.testing.assert_allclose(budget.encode(texts).vectors, fixed.encode(texts).vectors, atol=2e-5)


def test_plan_batches_sorts_by_length_and_respects_the_token_budget():
    lengths = np.array([5, 50, 7, 50, 20, 3, 9])
    batches = plan_batches(lengths, batch_size=3)
    assert [list(b) for b in batches] == [[1, 3, 4], [6, 2, 0], [5]]
    budgeted = plan_batches(lengths, batch_size=100, max_tokens=60)
    assert sorted(np.concatenate(budgeted).tolist()) == list(range(7))
    for rows in budgeted:
        assert len(rows) == 1 or len(rows) * padded_width(int(lengths[rows].max())) <= 60


@pytest.mark.parametrize("pooling", ["cls", "mean", "sep"])
def test_pooling_matches_a_direct_transformers_forward_pass(tiny_bert, elife_texts, pooling):
    texts = elife_texts[:12]
    encoder = TransformerEncoder(str(tiny_bert), pooling=pooling, max_length=64, batch_size=5, device="cpu")
    ours = encoder.encode(texts).vectors
    hidden = direct_hidden_states(tiny_bert, texts, 64)
    pick = {"cls": lambda h: h[0], "sep": lambda h: h[-1], "mean": lambda h: h.mean(axis=0)}[pooling]
    expected = np.vstack([pick(h) for h in hidden])
    assert ours.shape == (12, 32)
    np.testing.assert_allclose(ours, expected, atol=1e-5)
    assert not np.allclose(expected, np.vstack([h.mean(axis=0) for h in hidden])) or pooling == "mean"


def test_auto_pooling_of_a_plain_checkpoint_is_mean_and_normalize_works(tiny_bert, elife_texts):
    texts = elife_texts[:6]
    auto = TransformerEncoder(str(tiny_bert), pooling="auto", max_length=64, device="cpu").encode(texts).vectors
    mean = TransformerEncoder(str(tiny_bert), pooling="mean", max_length=64, device="cpu").encode(texts).vectors
    np.testing.assert_allclose(auto, mean, atol=1e-5)
    unit = TransformerEncoder(str(tiny_bert), pooling="cls", max_length=64, normalize=True,
                              device="cpu").encode(texts).vectors
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0, atol=1e-5)


def test_half_precision_checkpoint_computes_in_float32_when_asked(tiny_bert, elife_texts, tmp_path):
    """A checkpoint stored in float16 (common for large hub models) still runs in float32 with the default
    --dtype, and gives what the float32 checkpoint with the same (rounded) weights gives."""
    from transformers import AutoModel

    half, rounded = tmp_path / "half", tmp_path / "rounded"
    model = AutoModel.from_pretrained(tiny_bert)
    model.half().save_pretrained(half)
    model.float().save_pretrained(rounded)  # the same float16-rounded weights, stored in float32
    for folder in (half, rounded):
        for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
            if (tiny_bert / name).exists():
                (folder / name).write_bytes((tiny_bert / name).read_bytes())
    encoder = TransformerEncoder(str(half), pooling="mean", max_length=64, device="cpu")
    assert {p.dtype for p in encoder._model.parameters()} == {torch.float32}
    texts = elife_texts[:6]
    expected = TransformerEncoder(str(rounded), pooling="mean", max_length=64, device="cpu").encode(texts).vectors
    np.testing.assert_allclose(encoder.encode(texts).vectors, expected, atol=1e-6)


def test_max_length_is_capped_at_the_model_limit(tiny_bert):
    encoder = TransformerEncoder(str(tiny_bert), pooling="mean", max_length=4096, device="cpu")
    assert encoder.max_length == 128


def test_bad_models_give_one_clear_error(tmp_path):
    with pytest.raises(CorpusmapError, match="model directory not found"):
        TransformerEncoder("./no/such/model", device="cpu")
    (tmp_path / "empty").mkdir()  # e.g. a download that never happened
    with pytest.raises(CorpusmapError, match=f"--model {tmp_path / 'empty'}: no model in that folder .*config.json"):
        TransformerEncoder(str(tmp_path / "empty"), device="cpu")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{not json")
    with pytest.raises(CorpusmapError, match="cannot load model"):
        TransformerEncoder(str(tmp_path / "broken"), device="cpu")
    with pytest.raises(CorpusmapError, match="cannot load model 'nosuchorg/no-such-model-xyz'"):
        TransformerEncoder("nosuchorg/no-such-model-xyz", device="cpu")


def test_cuda_without_a_gpu_is_an_error():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(CorpusmapError, match="no CUDA GPU"):
        TransformerEncoder("all-MiniLM-L6-v2", device="cuda")


def test_tfidf_matches_scikit_learn(elife_texts, tmp_path):
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer

    texts = elife_texts[:800]
    encoder = TfidfEncoder(dim=50, seed=3).fit(texts)
    matrix = TfidfVectorizer(sublinear_tf=True, min_df=2, dtype=np.float32).fit_transform(texts)
    expected = TruncatedSVD(n_components=50, random_state=3, algorithm="randomized", n_iter=5).fit_transform(matrix)
    ours = encoder.encode(texts).vectors
    np.testing.assert_allclose(ours, expected, atol=1e-4)
    encoder.save(tmp_path / "fit")
    reloaded = TfidfEncoder(dim=50, seed=3)
    assert reloaded.load(tmp_path / "fit")
    np.testing.assert_array_equal(reloaded.encode(texts[:10]).vectors, ours[:10])


def test_tfidf_dim_above_what_the_fit_allows_is_reduced_with_a_warning(elife_texts, caplog):
    encoder = TfidfEncoder(dim=2000).fit(elife_texts[:150])
    assert encoder.dim == 149
    warning = next(r for r in caplog.records if "reduced" in r.getMessage())
    assert warning.levelname == "WARNING"
    assert warning.getMessage().startswith("warning: --dim 2,000 reduced to 149: too few abstracts")
