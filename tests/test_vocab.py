"""Word counts per period: exactly those of scikit-learn's CountVectorizer(binary=True), on real corpora (the
bundled eLife example corpus; ACL and arXiv where ../shared/data exists) and on text built to break tokenisers;
count tables written, read back, and in the study's CSV shape."""
from __future__ import annotations

import collections
import random
import sys

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from sklearn.feature_extraction.text import CountVectorizer

from conftest import EXAMPLE_CORPUS, read_jsonl
from corpusmap.excess import engines, scan
from corpusmap.errors import CorpusmapError
from corpusmap.tokens import contains_any
from corpusmap.excess import CountTable, count_presence, count_words, read_counts, scan_corpus, shift_period


def reference_counts(texts, periods) -> dict[str, tuple[int, dict[str, int]]]:
    """Independent computation: one CountVectorizer(binary=True) per period, summed over documents."""
    out = {}
    for p in sorted(set(periods)):
        docs = [t for t, q in zip(texts, periods) if q == p]
        cv = CountVectorizer(binary=True)
        try:
            X = cv.fit_transform(docs)
        except ValueError:  # no token at all in this period
            out[p] = (len(docs), {})
            continue
        out[p] = (len(docs), dict(zip(cv.get_feature_names_out().tolist(), np.asarray(X.sum(0)).ravel().tolist())))
    return out


def assert_same(table: CountTable, ref: dict) -> None:
    assert table.periods == sorted(ref)
    for p, (n, counts) in ref.items():
        assert table.total(p) == n, p
        assert table.as_dict(p) == counts, p


# ------------------------------------------------------------------------------------------ real corpora

def test_example_counts_equal_countvectorizer_per_year():
    """All 1,881 eLife abstracts through corpusmap's reader vs. the raw JSONL through CountVectorizer."""
    from corpusmap.corpus import iter_corpus

    raw = read_jsonl(EXAMPLE_CORPUS)
    assert len(raw) == 1881
    years = [str(int(r["year"])) for r in raw]
    ref = reference_counts([r["abstract"] for r in raw], years)
    table = count_words(iter_corpus([EXAMPLE_CORPUS], batch_rows=500), progress=False)
    assert_same(table, ref)
    assert table.periods == ["2012", "2013", "2014", "2015", "2016"]
    assert table.totals.tolist() == [collections.Counter(years)[p] for p in table.periods]
    assert int(table.totals.sum()) == len(raw)


def test_acl_counts_equal_countvectorizer_per_year(shared_data):
    """All 8,401 ACL abstracts through corpusmap's reader vs. the raw JSONL through CountVectorizer."""
    from corpusmap.corpus import iter_corpus

    raw = read_jsonl(shared_data / "acl_2016_2019.jsonl.gz")
    assert len(raw) == 8401
    keep = [r for r in raw if isinstance(r.get("abstract"), str) and r["abstract"].strip()
            and r.get("year") not in (None, "")]
    ref = reference_counts([r["abstract"] for r in keep], [str(int(r["year"])) for r in keep])
    table = count_words(iter_corpus([shared_data / "acl_2016_2019.jsonl.gz"]), progress=False)
    assert_same(table, ref)
    assert table.total("2018") == 3123 and table.total("2016") == 1534
    assert int(table.totals.sum()) == len(keep)


@pytest.fixture(scope="module")
def arxiv_subset(shared_data):
    """Every 10th arXiv record (7,473 abstracts over 16 listing months), as raw dicts."""
    return read_jsonl(shared_data / "arxiv_2025_2026.jsonl.gz", every=10)


@pytest.fixture(scope="module", params=["elife", "arxiv"])
def corpus_rows(request):
    """Raw records with abstract, year, title and a list of categories: the 1,881 eLife abstracts of the example
    corpus (their subjects as categories), and the arXiv subset where ../shared/data exists."""
    if request.param == "arxiv":
        return request.getfixturevalue("arxiv_subset")
    return [{"abstract": r["abstract"], "year": r["year"], "title": r["title"], "categories": r["subjects"]}
            for r in read_jsonl(EXAMPLE_CORPUS)]


def _batches(rows, size=1500):
    columns = {"text": [r["abstract"] for r in rows], "year": [r["year"] for r in rows],
               "title": [r["title"] for r in rows], "categories": [r["categories"] for r in rows]}
    if "listing_date" in rows[0]:
        columns["listing_date"] = [r["listing_date"] for r in rows]
    return pa.table(columns).to_batches(max_chunksize=size)


def test_arxiv_counts_by_month_equal_countvectorizer(arxiv_subset):
    months = [r["listing_date"][:7] for r in arxiv_subset]
    ref = reference_counts([r["abstract"] for r in arxiv_subset], months)
    assert len(ref) >= 12
    table = count_words(_batches(arxiv_subset), period="month", progress=False)
    assert table.period_kind == "month"
    assert table.meta["period_column"] == "listing_date"   # found by date_col="auto"
    assert_same(table, ref)


def test_python_engine_and_titles_equal_reference(corpus_rows):
    rows = corpus_rows[:2000]
    years = [str(r["year"]) for r in rows]
    with_titles = [r["title"] + " " + r["abstract"] for r in rows]
    ref = reference_counts(with_titles, years)
    fast = count_words(_batches(rows, 700), title_col="title", progress=False)
    slow = count_words(_batches(rows, 700), title_col="title", engine="python", workers=2, progress=False)
    assert_same(fast, ref)
    assert fast.equals(slow)
    assert slow.meta["engine"] == "python"


def test_merging_partial_counts_is_exact(corpus_rows, monkeypatch):
    """Force a merge of the partial counts after every batch: same table."""
    rows = corpus_rows[:1500]
    whole = count_words(_batches(rows, 5000), progress=False)
    monkeypatch.setattr(scan._Accumulator, "add_words", _eager_add_words)
    merged = count_words(_batches(rows, 100), progress=False)
    assert whole.equals(merged)


def _eager_add_words(self, frame):
    import polars as pl

    self._word_parts.append(frame.with_columns(pl.col("n").cast(pl.Int64)))
    self._word_acc = self._merge(self._word_acc, self._word_parts, ["period", "w"], ["n"])
    self._word_parts = []


# ------------------------------------------------------------------------------------- hard unicode

TRICKY = [
    "İstanbul DİYARBAKIR ıi",                       # dotted capital I lower-cases to two characters
    "ΟΔΟΣ ΟΔΟΣ. ΣΑΣ Σ ΑΣ1 aΣb",                      # final sigma depends on context
    "cafe\u0301 nai\u0308ve e\u0301\u0301",           # combining marks: not \w for Python
    "x² m³ ½ Ⅻ ⅻ ① ٣٤ ২০২৪ 𝟘𝟙",                      # numerals: \w for Python, not all for Rust
    "a\u200db a\u200cb a\u00adb foo‿bar snake_case __ _a",  # joiners and connector punctuation
    "Straße STRASSE ﬁnal ﬂuid Ǆemal ǅx",             # ß, ligatures, title case digraphs
    "\u1c89\u1c8a ꟋA Ꟍb \U00010d50\U00010d51",            # letters newer than Python's Unicode database
    "日本語のテキスト 中文 한국어 ไทย العربية עברית",
    "emoji 😀😀 ok 🇩🇪 x👍🏽y",
    "tab\tnew\nline\r\nnbsp\u00a0thin\u2009end",
    "", "a", "ab", "1 22 333 a_b",
]


def _random_texts(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    texts = []
    for _ in range(n):
        chars = []
        for _ in range(rng.randint(0, 60)):
            u = rng.random()
            if u < 0.45:
                chars.append(rng.choice("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_"))
            elif u < 0.6:
                chars.append(rng.choice(" .,-'\n"))
            elif u < 0.85:
                chars.append(chr(rng.randint(0x80, 0x2FFF)))
            else:
                cp = rng.randint(0x3000, sys.maxunicode)
                chars.append(chr(cp if not 0xD800 <= cp <= 0xDFFF else 0x41))
        texts.append("".join(chars))
    return texts


def test_tokens_exact_on_hostile_unicode():
    """Each text is its own "year", so every text's token set is compared with CountVectorizer's."""
    texts = TRICKY + _random_texts(1500)
    years = [str(1000 + i) for i in range(len(texts))]
    batches = pa.table({"text": texts, "year": years}).to_batches(max_chunksize=400)
    result = scan_corpus(batches, progress=False)
    assert_same(result.counts, reference_counts(texts, years))
    # the few texts with characters whose lower-casing differs between Python and polars went through `re`
    assert 0 < result.stats["python_tokenised"] < len(texts) / 2
    unsafe = engines.unsafe_characters()
    assert "\u03a3" in unsafe and "\u1c89" in unsafe and "A" not in unsafe


def test_word_class_is_pythons_backslash_w():
    import re

    cls = engines.python_word_class()
    probe = "".join(chr(c) for c in (0x5F, 0x41, 0xB2, 0x301, 0x200D, 0x2160, 0x0663, 0x203F, 0x4E00))
    expected = "".join(c for c in probe if re.match(r"\w", c))
    import polars as pl

    got = pl.Series([probe]).str.extract_all(cls).explode().str.join("").item()
    assert got == expected


# ------------------------------------------------------------------------------------------ periods

def test_periods_from_mixed_year_types_and_skips():
    batches = [
        pa.table({"text": ["alpha beta", "beta gamma", "gamma", None], "year": ["2016", " 2017 ", "2016.0", "2016"]}),
        pa.table({"text": ["alpha", "beta", "delta"], "year": [2016, None, 2017]}),
        pa.table({"text": ["alpha alpha"], "year": [2017.0]}),
    ]
    result = scan_corpus(batches, progress=False)
    table = result.counts
    assert table.periods == ["2016", "2017"]
    assert table.totals.tolist() == [3, 3]
    assert table.as_dict("2016") == {"alpha": 2, "beta": 1, "gamma": 1}
    assert result.stats["missing_text"] == 1 and result.stats["missing_period"] == 1


def test_months_from_dates_of_several_types():
    import datetime as dt

    batches = [
        pa.table({"text": ["aa bb", "bb"], "date": ["2025-03-18", "2025/3/2"]}),
        pa.table({"text": ["aa", "cc"], "date": pa.array([dt.date(2025, 4, 1), dt.date(2024, 12, 31)])}),
    ]
    table = count_words(batches, period="month", progress=False)
    assert table.periods == ["2024-12", "2025-03", "2025-04"]
    assert table.as_dict("2025-03") == {"aa": 1, "bb": 2}
    assert shift_period("2025-01", -1) == "2024-12" and shift_period("2024-11", 3) == "2025-02"
    assert shift_period("2024", -3) == "2021"


def test_year_column_that_is_not_a_year():
    batch = pa.table({"text": ["some words here"] * 5, "year": ["spring", "n.d.", "soon", "later", "x"]})
    with pytest.raises(CorpusmapError, match=r"does not hold a year.*'spring'"):
        count_words([batch], progress=False)
    many = pa.table({"text": ["words"] * 300, "year": ["2019"] * 299 + ["19th century"]})
    assert count_words([many], progress=False).totals.tolist() == [299]  # one bad value: skipped, counted


def test_empty_corpus_and_missing_columns():
    with pytest.raises(CorpusmapError, match="no abstracts to count"):
        count_words([], progress=False)
    with pytest.raises(CorpusmapError, match="no abstracts to count"):
        count_words([pa.table({"text": [None, None], "year": [2020, 2021]})], progress=False)
    with pytest.raises(CorpusmapError, match="no 'year' column and no date column"):
        count_words([pa.table({"text": ["a b"], "when": [2020]})], progress=False)
    with pytest.raises(CorpusmapError, match="needs a date column"):
        count_words([pa.table({"text": ["a b"], "year": [2020]})], period="month", progress=False)


# ------------------------------------------------------------------------------------ count tables

def _small_table() -> CountTable:
    return CountTable(np.array(["alpha", "nan", "null", "zeta"], dtype=object), ["2020", "2021", "2022"],
                      np.array([[1, 2, 3], [0, 4, 0], [5, 0, 1], [0, 0, 7]]), np.array([10, 11, 12]))


def test_count_table_round_trips(tmp_path):
    table = _small_table()
    paths = table.write(tmp_path)
    for path in (paths["parquet"], paths["csv"]):
        back = read_counts(path)
        assert back.equals(table), path
    text = paths["csv"].read_text().splitlines()
    assert text[0] == "word,2020,2021,2022"
    assert text[-1] == ",10,11,12"            # the study's shape: totals last, with an empty word
    long = pd.read_parquet(paths["parquet"])
    assert long["word"].isna().sum() == 3 and set(long.columns) == {"word", "period", "count"}


def test_study_csv_shape_accepted(tmp_path):
    """As the study wrote it: pandas to_csv of word + one column per year, last row totals with word ''."""
    df = pd.DataFrame({"word": ["delves", "the"], "2022": [1, 90], "2023": [2, 95], "2024": [40, 99]})
    df.loc[len(df)] = [""] + [100, 100, 100]
    path = tmp_path / "yearly-counts.csv.gz"
    df.to_csv(path, index=False)
    table = read_counts(path)
    assert table.periods == ["2022", "2023", "2024"] and table.totals.tolist() == [100, 100, 100]
    assert table.as_dict("2024") == {"delves": 40, "the": 99}


@pytest.mark.parametrize("content, message", [
    ("word,2020,2021\nalpha,1,2\nbeta,3,4\n", "no totals row"),
    ("word,2020,notayear\nalpha,1,2\n,5,5\n", "not a period"),
    ("word,2020,2021\nalpha,1,x\n,5,5\n", "whole numbers"),
    ("word,2020,2021\nalpha,9,2\n,5,5\n", "more than the total"),
    ("word,2020,2021\nalpha,1,2\n,5,5\n,5,5\n", "exactly one"),
])
def test_bad_count_tables(tmp_path, content, message):
    path = tmp_path / "counts.csv"
    path.write_text(content)
    with pytest.raises(CorpusmapError, match=message):
        read_counts(path)


# ------------------------------------------------------------------------------------------ presence

def test_group_presence_equals_independent_computation(corpus_rows):
    rows = corpus_rows[:3000]
    groups = {"style": ["crucial", "comprehensive", "notably", "delve"], "vision": ["image", "images", "pixel"]}
    presence = count_presence(_batches(rows, 800), groups, by="categories", progress=False)
    df = pd.DataFrame({"text": [r["abstract"] for r in rows], "year": [str(r["year"]) for r in rows],
                       "cats": [sorted(set(r["categories"])) for r in rows]})
    for name, words in groups.items():
        df[name] = contains_any(df["text"].tolist(), words)
    frame = presence.frame
    slow = count_presence(_batches(rows, 800), groups, by="categories", engine="python", workers=1,
                          progress=False)
    pd.testing.assert_frame_equal(slow.frame, frame)
    for name in groups:
        assert df[name].any(), name  # each group occurs in some abstracts
        for year, part in df.groupby("year"):
            row = frame[(frame.group == name) & frame.subgroup.isna() & (frame.period == year)].iloc[0]
            assert (row.n_with, row.n_docs) == (int(part[name].sum()), len(part))
        ex = df.explode("cats")
        for (year, cat), part in ex.groupby(["year", "cats"]):
            row = frame[(frame.group == name) & (frame.subgroup == cat) & (frame.period == year)].iloc[0]
            assert (row.n_with, row.n_docs) == (int(part[name].sum()), len(part))


def test_words_and_groups_in_one_pass_match_two_passes(corpus_rows):
    rows = corpus_rows[:1000]
    groups = {"g": ["model", "models"]}
    both = scan_corpus(_batches(rows), groups=groups, progress=False)
    assert both.counts.equals(count_words(_batches(rows), progress=False))
    alone = count_presence(_batches(rows), groups, progress=False)
    pd.testing.assert_frame_equal(both.presence.frame, alone.frame)
    # the group of one word is that word's document frequency
    one = count_presence(_batches(rows), {"w": ["model"]}, progress=False)
    for period in both.counts.periods:
        assert one.series("w")[1][one.series("w")[0].index(period)] == both.counts.as_dict(period)["model"]
