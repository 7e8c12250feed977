"""Keywords of clusters: class-based TF-IDF (c-TF-IDF, BERTopic's formula) on the tokens of the excess
analysis, with each abstract counted once per word (as the excess analysis counts words).

For word x and cluster c::

    W(x, c) = tf(x, c) / Σ_x' tf(x', c) · log(1 + A / f(x))

where tf(x, c) is the number of the cluster's abstracts that contain x (its document frequency there: BERTopic
counts occurrences, corpusmap abstracts, so that one abstract repeating a word does not name its region), f(x)
the number of abstracts containing x (all of them, those in no cluster of the level included), and A the average
of Σ_x tf(x, c) over the clusters, truncated to an integer (BERTopic's ``ClassTfidfTransformer``: L1-normalised
rows times ``log(1 + A / f)``).
Tokens are those of :mod:`corpusmap.excess` (lower-cased ``\\b\\w\\w+\\b``, exactly scikit-learn's, by the same
polars engine); English stop words (scikit-learn's list, and the ``et``, ``al`` of citations), tokens of digits
only and words in fewer than ``min_df`` abstracts are left out. Counting streams over the corpus in batches, once
whatever the number of levels.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from corpusmap.errors import UsageProblem


@dataclass
class TermCounts:
    """Document frequencies ``counts[c, j]`` of ``words[j]`` in cluster ``c`` (a sparse CSR matrix)."""

    words: np.ndarray
    counts: object  # scipy.sparse.csr_matrix, (clusters, words)

    def merge(self, parent: np.ndarray, n_parents: int) -> "TermCounts":
        """The counts of the clusters one level up (``parent[c]`` holds cluster c)."""
        import scipy.sparse as sp

        ones = np.ones(len(parent))
        up = sp.csr_matrix((ones, (parent, np.arange(len(parent)))), shape=(n_parents, len(parent)))
        return TermCounts(self.words, (up @ self.counts).tocsr())


class _Counter:
    """What the polars engine adds batches to: ``(cluster, word, n)`` frames, merged as they come."""

    words, groups = True, {}

    def __init__(self):
        self.parts: list = []
        self.rows = 0
        self.merged = None

    def add_totals(self, totals) -> None:
        pass

    def add_words(self, frame) -> None:
        import polars as pl

        self.parts.append(frame.with_columns(pl.col("n").cast(pl.Int64)))
        self.rows += frame.height
        if self.rows > max(500_000, 2 * (self.merged.height if self.merged is not None else 0)):
            self.merge()

    def merge(self):
        import polars as pl

        frames = ([self.merged] if self.merged is not None else []) + self.parts
        if frames:
            self.merged = pl.concat(frames).group_by("period", "w").agg(pl.col("n").sum())
        self.parts, self.rows = [], 0
        return self.merged


def count_terms(batches: Iterable, labels: np.ndarray, n_clusters: int) -> TermCounts:
    """Per cluster, the number of abstracts containing each token; ``batches`` yield the texts in corpus order
    (Arrow batches or tables with one text column), ``labels`` the cluster of each row (-1: none)."""
    import polars as pl
    import scipy.sparse as sp

    from corpusmap.excess.engines import _count_polars, _polars_patterns

    counter, stats, offset = _Counter(), {"python_tokenised": 0}, 0
    pats = _polars_patterns()
    for batch in batches:
        texts = pl.from_arrow(batch).to_series(0).cast(pl.String)
        rows = labels[offset:offset + len(texts)]
        offset += len(texts)
        frame = pl.DataFrame({"text": texts, "period": rows}).filter(
            pl.col("text").is_not_null() & (pl.col("period") >= 0))
        for part in frame.iter_slices(16_384):
            _count_polars(part, pats, counter, stats)
    if offset != len(labels):
        raise ValueError(f"{offset:,} texts for {len(labels):,} cluster labels")
    merged = counter.merge()
    if merged is None or merged.height == 0:
        return TermCounts(np.array([], dtype=object), sp.csr_matrix((n_clusters, 0), dtype=np.int64))
    vocab = merged["w"].unique().sort()
    index = pl.DataFrame({"w": vocab, "j": np.arange(len(vocab), dtype=np.int64)})
    ij = merged.join(index, on="w")
    counts = sp.csr_matrix((ij["n"].to_numpy(), (ij["period"].to_numpy(), ij["j"].to_numpy())),
                           shape=(n_clusters, len(vocab)), dtype=np.int64)
    return TermCounts(np.asarray(vocab.to_list(), dtype=object), counts)


CITATION_WORDS = frozenset({"et", "al"})  # "et al." in abstracts that cite: no region's name


def stop_words() -> frozenset:
    """Words that never name a region: scikit-learn's English stop words and :data:`CITATION_WORDS`."""
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return ENGLISH_STOP_WORDS | CITATION_WORDS


def usable_words(words: np.ndarray) -> np.ndarray:
    """Mask of the words keywords may be: not a stop word (:func:`stop_words`), not made of digits only."""
    stop = stop_words()
    return np.fromiter((w not in stop and not w.isdigit() for w in words), dtype=bool, count=len(words))


def ctfidf(counts, df_total: np.ndarray) -> object:
    """c-TF-IDF weights of a (clusters, words) count matrix, BERTopic's formula (module docstring)."""
    import scipy.sparse as sp
    from sklearn.preprocessing import normalize

    avg = int(np.asarray(counts.sum(axis=1)).ravel().mean()) if counts.shape[0] else 0
    idf = np.log(avg / np.maximum(df_total, 1) + 1)
    tf = normalize(counts.astype(np.float64), axis=1, norm="l1")
    return (tf @ sp.diags(idf)).tocsr()


def top_words(counts: TermCounts, top: int = 10, min_df: int = 5, df_total=None) -> list[list[str]]:
    """The ``top`` words of each cluster by c-TF-IDF (ties by the word), among usable words with at least
    ``min_df`` abstracts in the corpus (``df_total``: per word, default the clusters' sum)."""
    if df_total is None:
        df_total = np.asarray(counts.counts.sum(axis=0)).ravel()
    keep = usable_words(counts.words) & (df_total >= min_df)
    if not keep.any():
        most = int(df_total[usable_words(counts.words)].max()) if usable_words(counts.words).any() else 0
        raise UsageProblem(f"--min-df {min_df}: no keyword candidate is in that many abstracts (the most common is "
                           f"in {most:,}); lower --min-df")
    words = counts.words[keep]
    weights = ctfidf(counts.counts[:, keep], df_total[keep])
    out = []
    for c in range(weights.shape[0]):
        row = weights.getrow(c)
        order = np.lexsort((words[row.indices], -row.data))[:top]
        out.append([str(words[row.indices[i]]) for i in order])
    return out


def keywords_per_level(batches: Iterable, levels: Sequence[np.ndarray], top: int = 10,
                       min_df: int = 5) -> list[list[list[str]]]:
    """Top words of every cluster of every level (coarse to fine). The corpus is read once: abstracts are counted
    per cell (the combination of their clusters at all levels), and each level adds up the cells it holds."""
    matrix = np.column_stack(levels)
    cells, cell_of_row = np.unique(matrix, axis=0, return_inverse=True)
    counts = count_terms(batches, cell_of_row.ravel().astype(np.int64), len(cells))
    df_all = np.asarray(counts.counts.sum(axis=0)).ravel()  # f(x) over every abstract, noise included
    out = []
    for level, labels in enumerate(levels):
        n_clusters = int(labels.max()) + 1 if labels.size and labels.max() >= 0 else 0
        member = cells[:, level] >= 0  # cells outside any cluster of this level (noise) are no cluster's
        merged = TermCounts(counts.words, counts.counts[member]).merge(cells[member, level], n_clusters)
        out.append(top_words(merged, top, min_df, df_all))
    return out


def _singular(word: str) -> str:
    """A crude English singular (``cells`` -> ``cell``, ``studies`` -> ``study``, ``viruses`` -> ``virus``;
    ``analysis``, ``virus``, ``process`` stay), enough to tell that two keywords are one word's forms."""
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 4 and word.endswith("es") and word[:-2].endswith(("s", "x", "ch", "sh")):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def shared_keywords(keyword_lists: Sequence[Sequence[str]]) -> frozenset:
    """Words among the keywords of more than half of a level's clusters (with 3 or more clusters): words such as
    "paper" or "based" on ACL abstracts, true of most regions and so naming none of them."""
    from collections import Counter

    if len(keyword_lists) < 3:
        return frozenset()
    seen = Counter(word for keywords in keyword_lists for word in set(keywords))
    return frozenset(word for word, count in seen.items() if count > len(keyword_lists) / 2)


#: the words of writing up research rather than of its topic ("we propose a novel approach ... results show"):
#: frequent enough in a region's abstracts to be among its keywords, but they name no region
SCHOLARLY_WORDS = frozenset("""
    paper papers article articles study studies result results finding findings method methods approach approaches
    propose proposed proposes present presents presented show shows showed shown demonstrate demonstrates
    demonstrated report reports reported new novel based using use used existing work works recent recently
    problem problems framework frameworks performance provide provides suggest suggests reveal reveals revealed
    identify identified investigate investigated evaluate evaluated compared improve improves improved achieve
    achieves called known important different significant significantly role experiments introduce introduces
    introduced extensive effective effectiveness outperform outperforms state art superior
""".split())


def region_name(keywords: Sequence[str], words: int = 3, shared: frozenset = frozenset()) -> str:
    """A region's name: its first ``words`` keywords joined by `` · ``, leaving out a keyword that is another
    form (singular or plural) of one already in the name ("cells · protein · cell" names nothing twice), the
    words of writing up research (:data:`SCHOLARLY_WORDS`) and the level's ``shared`` keywords (see
    :func:`shared_keywords`) while enough others remain. The keywords themselves stay as c-TF-IDF ranks them."""
    distinct = [w for w in keywords if w not in shared and w not in SCHOLARLY_WORDS]
    picked, seen = set(), set()
    for pool in (distinct, keywords):  # the left-out words only fill what the others leave
        for word in pool:
            form = _singular(word)
            if len(picked) < words and form not in seen:
                seen.add(form)
                picked.add(word)
    return " · ".join(w for w in keywords if w in picked)  # in the keywords' order
