"""The interactive map page in a real headless browser (Debian's chromium driven by playwright).

A real t-SNE map of the ACL abstracts (`corpusmap embed --model tfidf`, `neighbors`, `map`) is written as a
single-file page, as a page with chunked data files, and as a sampled page (the path of very large maps), then
checked as a user would: it opens from file:// with no console errors and no network, the canvas is drawn,
hover shows the title under the mouse, a click lists exactly the point's row of knn/indices.npy, search counts
equal an independent Python count, colouring changes the pixels, markup in texts stays text, cluster names do
not overlap. Without the browser (or the playwright package) the browser tests are skipped.
"""
from __future__ import annotations

import gzip
import json
from collections import Counter
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from browsing import VIEWPORT, Opened
from corpusmap.errors import CorpusmapError
from corpusmap.tokens import tokenize
from corpusmap.view import ClusterLevel, PageData, write_page
from corpusmap.view.points import sample_rows

HOSTILE_TITLE_ROW, HOSTILE_ABSTRACT_ROW = 5, 6
HOSTILE_TITLE = "<script>window.__pwned = 1</script></script><!-- <b>pwned</b> & done"
HOSTILE_ABSTRACT = ('<img src=x onerror="window.__pwned = 2"> <script>window.__pwned = 3</script> '
                    '</script><script>window.__pwned = 4</script> An abstract about pwned parsers.')
SAMPLED_POINTS = 2_500


# ---- the real map and its page data ------------------------------------------------------------------------------

def _cluster_names(codes: np.ndarray, k: int, titles: list) -> list[str]:
    """Three words that are most over-represented in each cluster's titles."""
    overall, per = Counter(), [Counter() for _ in range(k)]
    for code, title in zip(codes, titles):
        words = {w for w in tokenize(title or "") if len(w) > 3}
        overall.update(words)
        per[code].update(words)
    sizes, n = np.bincount(codes, minlength=k), len(codes)
    names = []
    for c in range(k):
        score = {w: m / sizes[c] - overall[w] / n for w, m in per[c].items() if m >= 3}
        names.append(", ".join(sorted(score, key=lambda w: (-score[w], w))[:3]) or f"cluster {c}")
    return names


@pytest.fixture(scope="session")
def acl(acl_map, shared_data) -> SimpleNamespace:
    """PageData of the real map (abstracts from the source file by id), with two hostile rows and two levels of
    k-means clusters on the map."""
    import pyarrow.parquet as pq
    from sklearn.cluster import KMeans

    table = pq.read_table(acl_map / "maps" / "tsne.parquet", columns=["id", "x", "y", "title", "year", "label"])
    frame = table.to_pandas()
    with gzip.open(shared_data / "acl_2016_2019.jsonl.gz", "rt", encoding="utf-8") as fh:
        source = {r["id"]: r.get("abstract") for r in map(json.loads, fh)}
    ids = frame["id"].astype(str).tolist()
    titles = frame["title"].tolist()
    abstracts = [source.get(i) for i in ids]
    titles[HOSTILE_TITLE_ROW] = HOSTILE_TITLE
    abstracts[HOSTILE_ABSTRACT_ROW] = HOSTILE_ABSTRACT
    neighbors = np.load(acl_map / "knn" / "indices.npy")
    xy = frame[["x", "y"]].to_numpy(np.float64)
    levels = []
    for name, k in (("coarse", 8), ("fine", 40)):
        codes = KMeans(k, n_init=1, random_state=0).fit_predict(xy).astype(np.int32)
        levels.append(ClusterLevel(name, codes, _cluster_names(codes, k, titles)))
    years = frame["year"].to_numpy(dtype=np.float64, na_value=np.nan)
    data = PageData(
        x=xy[:, 0].astype(np.float32), y=xy[:, 1].astype(np.float32), ids=ids, titles=titles,
        abstracts=lambda start, stop: {"abstract": abstracts[start:stop]}, years=years,
        labels=frame["label"].tolist(), neighbors=neighbors, clusters=levels,
        info={"method": "t-SNE", "parameters": {"k": 10, "n_iter": 200},
              "evaluation": {"k": 10, "knn_recall": 0.25, "knn_accuracy": {"accuracy": 0.34, "chance": 0.29}}},
        excess={"2018": ["elmo"], "2019": ["bert", "pretrained"]})
    token_sets = [set(tokenize(f"{t or ''}\n{a or ''}")) for t, a in zip(titles, abstracts)]
    return SimpleNamespace(data=data, titles=titles, abstracts=abstracts, neighbors=neighbors, years=years,
                           token_sets=token_sets)


def python_count(token_sets, query: str) -> int:
    """Independent count: abstracts whose title + abstract tokens include every token of the query."""
    words = set(tokenize(query))
    return sum(words <= tokens for tokens in token_sets)


@pytest.fixture(scope="session")
def pages(acl, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("pages")
    return {
        "single": write_page(out / "single.html", acl.data, title="ACL (single file)"),
        "chunked": write_page(out / "chunked.html", acl.data, title="ACL (chunked)", inline_max_points=0,
                              text_chunk_rows=600, title_chunk_rows=1500, bucket_bytes=200_000),
        "sampled": write_page(out / "sampled.html", acl.data, title="ACL (sampled)", inline_max_points=0,
                              max_points=SAMPLED_POINTS, text_chunk_rows=500),
    }


@pytest.fixture(scope="session", params=["single", "chunked"])
def opened(request, browser, pages):
    page = Opened(browser, pages[request.param].html)
    page.mode = request.param
    yield page
    page.close()


# ---- what is written -------------------------------------------------------------------------------------------

def test_single_file_and_chunked_layouts(pages, acl):
    single, chunked = pages["single"], pages["chunked"]
    assert single.folder is None and single.files == 1
    assert not single.html.with_name("single_files").exists()
    html = single.html.read_text(encoding="utf-8")
    assert HOSTILE_TITLE not in html and "window.__pwned = 1</script>" not in html
    assert html.lower().count("<script") == html.lower().count("</script>")
    assert chunked.folder.parent == chunked.html.with_name("chunked_files")
    names = sorted(p.relative_to(chunked.folder).as_posix() for p in chunked.folder.rglob("*.js"))
    assert names[0] == "index/0.js" and "points.js" in names
    assert sum(n.startswith("titles/") for n in names) == -(-8401 // 1500)
    assert sum(n.startswith("texts/") for n in names) == -(-8401 // 600)
    assert sum(n.startswith("index/") for n in names) == 8
    assert chunked.files == len(names) + 1
    per_point = chunked.bytes_per_point()
    assert set(per_point) == {"page", "points", "titles", "texts", "index", "density", "background"}
    assert 10 < per_point["points"] < 40  # x, y, year as float32, label and two cluster codes as uint16, base64


def _head(acl, m: int, **changes) -> PageData:
    """The first m rows of the map (without neighbours and clusters, which refer to all rows)."""
    d = acl.data
    fields = dict(x=d.x[:m], y=d.y[:m], ids=d.ids[:m], titles=d.titles[:m], years=d.years[:m], labels=d.labels[:m],
                  abstracts=lambda start, stop: {"abstract": acl.abstracts[start:min(stop, m)]})
    return PageData(**{**fields, **changes})


def test_failed_rewrite_leaves_the_old_page_intact(acl, tmp_path):
    out = tmp_path / "map.html"
    first = write_page(out, _head(acl, 1500), inline_max_points=0)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}

    def failing(start, stop):
        if start >= 1000:
            raise RuntimeError("disk gone")
        return {"abstract": acl.abstracts[start:stop]}

    with pytest.raises(RuntimeError, match="disk gone"):
        write_page(out, _head(acl, 1500, abstracts=failing), inline_max_points=0, read_rows=500)
    after = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert after == before
    assert [p.name for p in tmp_path.rglob(".*")] == []
    second = write_page(out, _head(acl, 1500))  # now a single file: the old data folder goes
    assert second.folder is None and not first.folder.exists() and not (tmp_path / "map_files").exists()


def test_unwritable_output_is_one_clear_error(acl, tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(CorpusmapError, match="cannot write the page"):
        write_page(tmp_path / "file" / "map.html", _head(acl, 100))


def _decode_bucket(payload: dict, n: int) -> dict[str, list[int]]:
    """A Python reading of one index bucket, as search.js reads it."""
    import base64

    def arr(column, dtype):
        return np.frombuffer(base64.b64decode(column["b64"]), dtype=dtype)

    df, off, bitmap, data = (arr(payload["df"], "<u4"), arr(payload["off"], "<u4"), arr(payload["bitmap"], "u1"),
                             arr(payload["data"], "u1"))
    out = {}
    for i, token in enumerate(payload["tok"]):
        chunk = data[off[i]:off[i + 1]]
        if bitmap[i]:
            rows = np.flatnonzero(np.unpackbits(chunk, bitorder="little")[:n]).tolist()
        else:
            rows, value, shift = [], 0, 0
            for byte in chunk.tolist():
                value |= (byte & 0x7F) << shift
                shift += 7
                if not byte & 0x80:
                    rows.append(value if not rows else rows[-1] + value)
                    value, shift = 0, 0
        assert len(rows) == df[i]
        out[token] = rows
    return out


def test_search_index_holds_exactly_the_python_tokens(acl, tmp_path):
    from corpusmap.view.encoding import bucket_of
    from corpusmap.view.search_index import SearchIndexBuilder, search_text

    m = 3000
    texts = [search_text(t, a) for t, a in zip(acl.titles[:m], acl.abstracts[:m])]
    texts[10] = "ΣΑΣ ΌΣΟΣ straße İstanbul x² ﬁne e\u0301té 𝑥𝑦 a_b _ x " + texts[10]
    builder = SearchIndexBuilder(m, 4, tmp_path)
    for start in range(0, m, 700):
        builder.add(start, texts[start:start + 700])
    index = {}
    for b, payload in builder.payloads():
        decoded = _decode_bucket(payload, m)
        assert all(bucket_of(token, 4) == b for token in decoded)
        index.update(decoded)
    expected: dict[str, list[int]] = {}
    for row, text in enumerate(texts):
        for token in set(tokenize(text)):
            expected.setdefault(token, []).append(row)
    assert index == expected
    assert len(index["the"]) > m // 2  # stored as a bitmap, decoded the same


def test_region_names_are_anchored_at_medoids():
    """A region of two islands is named on one of its points (its medoid, as in the figures), not in the gap
    between the islands where the per-axis median falls."""
    from corpusmap.labels import medoid
    from corpusmap.view.points import cluster_columns

    rng = np.random.default_rng(2)
    x = np.concatenate([rng.normal(-0.8, 0.05, 250), rng.normal(0.8, 0.05, 250), rng.normal(0, 0.05, 100)])
    y = rng.normal(0, 0.05, 600)
    codes = np.repeat([0, 0, 1], [250, 250, 100])  # region 0: two islands; region 1 lies between them
    _, (meta,) = cluster_columns([ClusterLevel("level", codes, ["split", "middle"])], x, y, None)
    for c in (0, 1):
        assert (meta["x"][c], meta["y"][c]) == pytest.approx(medoid(x[codes == c], y[codes == c]), abs=1e-5)
    assert abs(meta["x"][0]) > 0.6  # on an island, not at the median near 0 (region 1's place)


def test_script_json_is_inert_inside_a_script_element():
    from corpusmap.view.encoding import script_json

    text = script_json({"t": "</script><!-- <SCRIPT> & \u2028\u2029"})
    assert "<" not in text and ">" not in text and "&" not in text and "\u2028" not in text
    assert json.loads(text) == {"t": "</script><!-- <SCRIPT> & \u2028\u2029"}


# ---- in the browser --------------------------------------------------------------------------------------------

def test_loads_offline_without_errors(opened, acl):
    assert opened.js("window.corpusmap.error") is None
    assert opened.js("window.corpusmap.n") == len(acl.titles)
    assert opened.errors == []
    assert [m for m in opened.console if m[0] == "error"] == []
    assert opened.blocked == []
    assert all(url.startswith(("file:", "data:")) for url in opened.requests), opened.requests
    if opened.mode == "chunked":  # texts are loaded lazily: none before the user asks
        loaded = [u.rsplit("chunked_files/", 1)[-1] for u in opened.requests if "chunked_files/" in u]
        assert any(u.endswith("/points.js") for u in loaded)
        assert not any("/texts/" in u or "/index/" in u for u in loaded)


def test_canvas_is_drawn(opened):
    pixels = opened.canvas_pixels()
    assert pixels.std() > 10
    assert (np.abs(pixels - 255).sum(axis=2) > 60).mean() > 0.02  # coloured points, not just a few specks


def test_hover_shows_the_title_of_the_point_under_the_mouse(opened, acl):
    for i in opened.isolated_points(count=2):
        opened.hover(i)
        assert opened.page.text_content("#cm-tooltip .cm-tooltip-title") == (acl.titles[i] or "(no title)")
        meta = opened.page.text_content("#cm-tooltip .cm-tooltip-meta")
        assert str(int(acl.years[i])) in meta and str(acl.data.labels[i]) in meta
    opened.page.mouse.move(5, VIEWPORT["height"] - 5)


def test_click_lists_exactly_the_high_d_neighbours(opened, acl):
    i = opened.isolated_points(count=1)[0]
    opened.click(i)
    opened.page.wait_for_function("i => document.getElementById('cm-details').dataset.row === String(i)", arg=i,
                                  timeout=10_000)
    listed = opened.js("Array.from(document.querySelectorAll('#cm-neighbours li')).map(li => +li.dataset.row)")
    assert listed == acl.neighbors[i].tolist()
    assert opened.page.text_content(".cm-details-title") == acl.titles[i]
    assert opened.page.text_content(".cm-abstract") == acl.abstracts[i]
    first = acl.neighbors[i][0]
    opened.page.click("#cm-neighbours li:first-child .cm-link")
    opened.page.wait_for_function("r => document.getElementById('cm-details').dataset.row === String(r)",
                                  arg=int(first))
    opened.page.keyboard.press("Escape")
    assert opened.js("document.getElementById('cm-details').hidden")


@pytest.mark.parametrize("query", ["neural machine translation", "BERT", "Dependency-Parsing", "the", "pwned",
                                   "zzyzx"])
def test_search_count_equals_an_independent_python_count(opened, acl, query):
    expected = python_count(acl.token_sets, query)
    assert opened.js("q => window.corpusmap.search(q)", query) == expected
    shown = opened.page.text_content("#cm-search-count")
    assert (f"{expected:,} abstract" in shown) if expected else shown.startswith("No abstract")
    opened.js("window.corpusmap.search('')")


def python_phrase_rows(acl, query: str) -> list[int]:
    """Independent: rows whose title + abstract tokens hold every token of the query, and each quoted phrase as
    consecutive tokens."""
    import re

    phrases = [tokenize(p) for p in re.findall(r'"([^"]*)"', query)]
    phrases = [p for p in phrases if len(p) > 1]
    words = set(tokenize(query))
    out = []
    for row, (t, a) in enumerate(zip(acl.titles, acl.abstracts)):
        tokens = tokenize(f"{t or ''}\n{a or ''}")
        if words <= set(tokens) and all(any(tokens[i:i + len(p)] == p for i in range(len(tokens))) for p in phrases):
            out.append(row)
    return out


@pytest.mark.parametrize("query", ['"machine translation"', '"neural machine translation" "low resource"',
                                   '"translation machine"', '"in this paper" parsing'])
def test_a_quoted_phrase_matches_consecutive_words(opened, acl, query):
    expected = python_phrase_rows(acl, query)
    assert 0 < len(expected) < python_count(acl.token_sets, query) or query == '"translation machine"'
    assert opened.js("q => window.corpusmap.search(q)", query) == len(expected)
    assert opened.js("document.getElementById('cm-search-count').dataset.phrases") == "checked"
    shown = opened.page.text_content("#cm-search-count")
    assert (f"{len(expected):,} abstract" in shown and '"' in shown) if expected else shown.startswith("No abstract")
    opened.js("window.corpusmap.search('')")


def test_a_phrase_over_too_many_text_chunks_is_not_checked_and_says_so(browser, acl, tmp_path):
    """Where the abstracts with all the words lie in more text chunks than a search reads, the count is that of
    the words, and the line says the phrase was not checked."""
    result = write_page(tmp_path / "tiny_chunks.html", acl.data, inline_max_points=0, text_chunk_rows=10)
    page = Opened(browser, result.html)
    try:
        query = '"in this paper"'
        assert page.js("q => window.corpusmap.search(q)", query) == python_count(acl.token_sets, query)
        assert page.js("document.getElementById('cm-search-count').dataset.phrases") == "unchecked"
        assert "the phrase is checked only where" in page.page.text_content("#cm-search-count")
        rare = '"dependency parsing" treebank low-resource'  # few abstracts: checked
        assert page.js("q => window.corpusmap.search(q)", rare) == len(python_phrase_rows(acl, rare)) > 0
        assert page.js("document.getElementById('cm-search-count').dataset.phrases") == "checked"
    finally:
        page.close()


def test_year_filter_and_word_overlay_counts(opened, acl):
    opened.js("window.corpusmap.years(2018, 2019)")
    in_range = int(((acl.years >= 2018) & (acl.years <= 2019)).sum())
    assert opened.page.text_content("#cm-year-count") == f"{in_range:,} points"
    opened.js("window.corpusmap.years(0, 9999)")
    opened.js("w => window.corpusmap.words(w)", "bert, elmo")
    hits = sum(bool({"bert", "elmo"} & tokens) for tokens in acl.token_sets)
    legend = opened.js("Array.from(document.querySelectorAll('#cm-legend .cm-legend-count')).map(e => e.textContent)")
    assert legend == [f"{hits:,}", f"{len(acl.titles) - hits:,}"]
    # the quick picks offer the latest target's excess words first
    assert opened.js("document.getElementById('cm-excess-target').value") == "2019"
    assert opened.js("Array.from(document.querySelectorAll('#cm-picks .cm-chip')).map(b => b.dataset.word)") == \
        ["bert", "pretrained"]
    opened.js("window.corpusmap.colorBy('label')")


def test_the_year_bound_being_edited_takes_the_other_along(opened, acl):
    """From 2018 (2018–2019), then To 2017: the range becomes 2017–2017 (To wins, From follows), and From 2016
    then gives 2016–2017, what the user meant (a swap gave 2016–2018)."""
    def edit(field, year):
        opened.page.fill(f"#cm-year-{field}", str(year))
        opened.page.press(f"#cm-year-{field}", "Enter")

    shown = "[document.getElementById('cm-year-from').value, document.getElementById('cm-year-to').value]"
    for field, year, expected in (("from", 2018, ["2018", "2019"]), ("to", 2017, ["2017", "2017"]),
                                  ("from", 2016, ["2016", "2017"])):
        edit(field, year)
        assert opened.js(shown) == expected
        lo, hi = int(expected[0]), int(expected[1])
        in_range = int(((acl.years >= lo) & (acl.years <= hi)).sum())
        assert opened.page.text_content("#cm-year-count") == f"{in_range:,} points"
    opened.js("window.corpusmap.years(0, 9999)")
    assert opened.js(shown) == [f"{np.nanmin(acl.years):.0f}", f"{np.nanmax(acl.years):.0f}"]  # within the corpus


def test_escape_in_the_search_box_closes_the_paper_and_keeps_the_search(opened):
    opened.js("window.corpusmap.search('translation')")
    opened.js("window.corpusmap.pick(3)")
    opened.page.focus("#cm-search")
    opened.page.keyboard.press("Escape")
    assert opened.js("document.getElementById('cm-details').hidden")
    assert opened.js("document.getElementById('cm-search').value") == "translation"
    opened.js("window.corpusmap.search('')")


def _legend(opened) -> list[tuple[str, str, int]]:
    """(swatch colour, name, count) of each legend item."""
    return [(c, name, int(count.replace(",", ""))) for c, name, count in opened.js("""
        Array.from(document.querySelectorAll('#cm-legend .cm-legend-item')).map(e => [
            e.querySelector('.cm-swatch').style.background, e.querySelector('.cm-legend-name').textContent,
            e.querySelector('.cm-legend-count').textContent])""")]


def test_legend_and_search_counts_follow_the_year_range(opened, acl):
    labels = pd.Series(acl.data.labels, dtype=object)
    opened.js("window.corpusmap.colorBy('label')")
    whole = _legend(opened)
    assert sum(count for _, _, count in whole) == len(labels)
    assert len({c for c, _, _ in whole}) == len(whole)  # no colour stands for two things
    whole_names = {name for _, name, _ in whole} & set(labels.dropna())
    query = "translation"
    assert opened.js("q => window.corpusmap.search(q)", query) == python_count(acl.token_sets, query)
    for lo, hi in ((2018, 2019), (2016, 2016)):
        opened.js("([a, b]) => window.corpusmap.years(a, b)", [lo, hi])
        keep = (acl.years >= lo) & (acl.years <= hi)
        items = _legend(opened)
        assert sum(count for _, _, count in items) == keep.sum()
        counts = labels[keep].value_counts()
        named = {name: count for _, name, count in items if name in counts.index or name in whole_names}
        assert named == {name: int(counts.get(name, 0)) for name in named}
        assert "in the year range" in opened.page.text_content("#cm-legend .cm-legend-title")
        in_range = sum(query in tokens for tokens, k in zip(acl.token_sets, keep) if k)
        assert opened.page.text_content("#cm-search-count").endswith(f"; {in_range:,} in the year range")
    opened.js("window.corpusmap.years(0, 9999)")
    assert _legend(opened) == whole
    assert "year range" not in opened.page.text_content("#cm-search-count")
    opened.js("window.corpusmap.search('')")


def test_every_cluster_has_a_colour_and_the_legend_lists_the_largest(opened, acl):
    """40 clusters, 18 colours: none is left grey; the 18 largest are listed, each its own colour, the rest counted
    in one line; the colours are those the page builder chose (touching regions differ: test_palette.py)."""
    from corpusmap.palette import region_colours
    from corpusmap.render import CATEGORICAL
    from corpusmap.view.points import normalise

    fine = acl.data.clusters[1]
    opened.js("window.corpusmap.colorBy('cluster:1')")
    items = _legend(opened)
    listed, rest = items[:-1], items[-1]
    sizes = np.bincount(fine.codes, minlength=len(fine.names))
    top = np.argsort(-sizes, kind="stable")[:18]
    assert [(name, count) for _, name, count in listed] == [(fine.names[c], int(sizes[c])) for c in top]
    assert len({c for c, _, _ in listed}) == 18
    assert rest[1].startswith(f"{len(fine.names) - 18} more clusters") and rest[2] == len(fine.codes) - sizes[top].sum()
    xn, yn, _ = normalise(acl.data.x, acl.data.y)  # the coordinates the page builder works on
    colours = region_colours(fine.codes, xn, yn, len(fine.names), 18)
    palette = opened.js("window.corpusmap.scatter().get('pointColor')")
    expected = [tuple(int(h[i:i + 2], 16) / 255 for i in (1, 3, 5)) for h in (CATEGORICAL[c] for c in colours)]
    assert [tuple(round(v, 3) for v in rgba[:3]) for rgba in palette[:len(fine.names)]] == \
        [tuple(round(v, 3) for v in rgb) for rgb in expected]
    opened.js("window.corpusmap.colorBy('label')")


def test_colouring_by_year_changes_the_pixels(opened):
    opened.js("window.corpusmap.colorBy('label')")
    opened.page.wait_for_timeout(150)
    before = opened.canvas_pixels()
    opened.js("window.corpusmap.colorBy('year')")
    opened.page.wait_for_timeout(150)
    after = opened.canvas_pixels()
    assert np.abs(after - before).mean() > 1.0
    assert opened.page.locator("#cm-legend .cm-colorbar").count() == 1
    opened.js("window.corpusmap.colorBy('label')")


def test_an_opened_paper_marks_the_searched_words_and_stays_text(opened, acl):
    """With a search on, the paper's title and abstract mark each whole token searched (any case), as text:
    markup around them never runs."""
    import re

    opened.js("window.corpusmap.search('Translation script')")
    rows = [r for r, tokens in enumerate(acl.token_sets) if {"translation", "script"} <= tokens][:3]
    for row in rows + ([HOSTILE_ABSTRACT_ROW] if {"script"} <= acl.token_sets[HOSTILE_ABSTRACT_ROW] else []):
        opened.js("i => window.corpusmap.pick(i)", row)
        marks = opened.js("Array.from(document.querySelectorAll('#cm-details .cm-abstract mark'))"
                          ".map(m => m.textContent)")
        words = [w for w in re.findall(r"\w+", acl.abstracts[row] or "") if w.lower() in ("translation", "script")]
        assert marks == words
        assert opened.page.text_content("#cm-details .cm-abstract") == acl.abstracts[row]
    assert rows and opened.js("typeof window.__pwned") == "undefined"
    opened.js("i => window.corpusmap.pick(i)", rows[0])
    opened.js("window.corpusmap.search('')")  # the open paper follows the search: nothing marked
    assert opened.page.is_visible("#cm-details")
    assert opened.js("document.querySelectorAll('#cm-details mark').length") == 0
    opened.page.keyboard.press("Escape")


def test_markup_in_texts_shows_as_text_and_never_runs(opened):
    for row, selector, text in ((HOSTILE_TITLE_ROW, ".cm-details-title", HOSTILE_TITLE),
                                (HOSTILE_ABSTRACT_ROW, ".cm-abstract", HOSTILE_ABSTRACT)):
        opened.js("i => window.corpusmap.pick(i)", row)
        assert opened.page.text_content(selector) == text
    opened.page.keyboard.press("Escape")
    opened.page.mouse.move(VIEWPORT["width"] * 0.6, VIEWPORT["height"] * 0.6)  # on the map, not on a panel
    opened.js("i => window.corpusmap.scatter().hover(i)", HOSTILE_TITLE_ROW)
    opened.page.wait_for_function("document.getElementById('cm-tooltip').dataset.row === '5'")
    assert opened.page.text_content("#cm-tooltip .cm-tooltip-title") == HOSTILE_TITLE
    assert opened.js("document.querySelectorAll('#corpusmap img, #corpusmap script, #corpusmap b').length") == 0
    assert opened.js("typeof window.__pwned") == "undefined"
    opened.page.keyboard.press("Escape")
    opened.js("window.corpusmap.scatter().hover(-1)")


def test_cluster_names_follow_zoom_and_never_overlap(opened, acl):
    centre = opened.js("window.corpusmap.dataPosition(0)")
    seen = []
    for distance in (None, 0.5, 0.25):
        if distance:
            opened.js("([t, d]) => window.corpusmap.lookAt(t, d)", [centre, distance])
            opened.page.wait_for_timeout(200)
        boxes = opened.js("""Array.from(document.querySelectorAll('.cm-label'))
            .filter(n => n.style.display !== 'none')
            .map(n => { const r = n.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; })""")
        panel = opened.js("(() => { const r = document.getElementById('cm-controls').getBoundingClientRect();"
                          " return [r.left, r.top, r.right, r.bottom]; })()")
        assert boxes, f"no cluster name shown at distance {distance}"
        for j, a in enumerate(boxes):
            assert not _overlap(a, panel)
            for b in boxes[j + 1:]:
                assert not _overlap(a, b), (a, b)
        seen.append(opened.js("window.corpusmap.labelLevel()"))
    assert seen[0] == 0 and seen[-1] == len(acl.data.clusters) - 1
    opened.js("window.corpusmap.scatter().reset()")


def test_names_keep_clear_of_the_open_paper(browser, pages):
    page = Opened(browser, pages["single"].html)
    try:
        labels = """Array.from(document.querySelectorAll('.cm-label')).filter(n => n.style.display !== 'none')
            .map(n => { const r = n.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; })"""
        first = page.js(labels)[0]
        pos = np.asarray(page.js("window.corpusmap.screenPositions()")).reshape(-1, 2)
        under = int(np.argmin(((pos - [(first[0] + first[2]) / 2, (first[1] + first[3]) / 2]) ** 2).sum(axis=1)))
        page.js(f"window.corpusmap.pick({under})")  # the paper under the first name
        page.page.wait_for_function(f"document.getElementById('cm-details').dataset.row === '{under}'")
        page.page.wait_for_timeout(800)  # (a pan out from under the details panel, if any)
        x, y = page.js(f"window.corpusmap.screenPosition({under})")
        assert not any(_overlap(box, [x - 10, y - 10, x + 10, y + 10]) for box in page.js(labels))
    finally:
        page.close()


def test_the_whole_map_shows_the_coarsest_names_even_when_finer_ones_would_fit(browser, tmp_path):
    from sklearn.cluster import KMeans

    xy = np.random.default_rng(2).normal(size=(2000, 2))
    levels = [ClusterLevel(name, KMeans(k, n_init=1, random_state=0).fit_predict(xy), [f"{name} {c}" for c in range(k)])
              for name, k in (("coarse", 4), ("fine", 20))]
    page = Opened(browser, write_page(tmp_path / "levels.html", PageData(x=xy[:, 0], y=xy[:, 1], clusters=levels)).html)
    def level_after(script: str, arg=None) -> int:
        page.js(script, arg)
        page.page.wait_for_timeout(200)
        return page.js("window.corpusmap.labelLevel()")

    try:
        assert page.js("window.corpusmap.labelLevel()") == 0
        # ~3x closer than the whole map
        assert level_after("([t, d]) => window.corpusmap.lookAt(t, d)", [[0, 0], 0.3]) == 1
        # coloured by a level, the names are never coarser than that level's (at the whole map too)
        assert level_after("window.corpusmap.scatter().reset()") == 0
        assert level_after("window.corpusmap.colorBy('cluster:1')") == 1
        assert level_after("window.corpusmap.colorBy('none')") == 0
        # a clicked point's details replace its tooltip
        page.js("window.corpusmap.scatter().hover(5)")
        page.page.wait_for_function("!document.getElementById('cm-tooltip').hidden")
        page.js("window.corpusmap.pick(5)")
        page.page.wait_for_function("document.getElementById('cm-details').dataset.row === '5'")
        assert page.js("document.getElementById('cm-tooltip').hidden")
    finally:
        page.close()


def test_a_view_inside_a_cluster_far_from_its_medoid_still_names_it(browser, tmp_path):
    """Zoomed in so far that the screen holds only a corner of a cluster (its medoid off screen), the name is
    written at the cluster's anchor on screen; each anchor is a member of its cluster."""
    rng = np.random.default_rng(4)
    xy = rng.uniform(-1, 1, size=(4000, 2))
    codes = (xy[:, 0] > 0).astype(np.int32)  # two halves: "west" and "east"
    data = PageData(x=xy[:, 0], y=xy[:, 1], clusters=[ClusterLevel("halves", codes, ["west", "east"])])
    result = write_page(tmp_path / "halves.html", data)
    manifest = json.loads(result.html.read_text().split('id="corpusmap-manifest">')[1].split("</script>")[0])
    for c, flat in enumerate(manifest["clusters"][0]["anchors"]):
        assert len(flat) // 2 >= 100  # a place in nearly every cell of the 32 x 32 grid it fills half of
        for ax, ay in zip(flat[::2], flat[1::2]):  # (written in the page's normalised coordinates)
            assert (ax > 0) == bool(c)
    page = Opened(browser, result.html)
    try:
        corner = int(np.argmin(xy[:, 0] + xy[:, 1]))  # the far south-west corner of "west"
        page.js("([t, d]) => window.corpusmap.lookAt(t, d)", [page.js(f"window.corpusmap.dataPosition({corner})"),
                                                              0.08])
        page.page.wait_for_timeout(300)
        shown = page.js("""Array.from(document.querySelectorAll('.cm-label'))
            .filter(n => n.style.display !== 'none').map(n => n.textContent)""")
        assert shown == ["west"]
    finally:
        page.close()


def test_edges_panels_background_clicks_and_resizing(browser, tmp_path):
    """A region whose centre is on screen but whose name would cross the edge is named inside the map; at the
    whole-map view the coarsest level shows even when a finer one has few names; a point under a panel is not
    hovered; a click on the background closes the details; a smaller window refits the whole map."""
    rng = np.random.default_rng(4)
    xy = rng.uniform(-1, 1, size=(3000, 2))
    right = (xy[:, 0] > 0.8) & (xy[:, 1] > 0.4)  # the top right corner, with a long name
    coarse = np.where(right, 2, (xy[:, 0] > -0.1).astype(int))
    fine = coarse * 2 + (xy[:, 1] > 0)
    names = ["west", "middle", "the region along the right edge of the map"]
    levels = [ClusterLevel("coarse", coarse, names), ClusterLevel("fine", fine, [f"fine {c}" for c in range(6)])]
    page = Opened(browser, write_page(tmp_path / "edges.html", PageData(x=xy[:, 0], y=xy[:, 1],
                                                                        titles=[f"paper {i}" for i in range(3000)],
                                                                        clusters=levels)).html)
    try:
        assert page.js("window.corpusmap.labelLevel()") == 0  # 3 + 6 names: the coarse level at the whole map
        shown = page.js("""Array.from(document.querySelectorAll('.cm-label')).filter(n => n.style.display !== 'none')
            .map(n => { const r = n.getBoundingClientRect(); return [n.textContent, r.left, r.right]; })""")
        edge = [b for b in shown if b[0] == names[2]]
        assert edge and 8 <= edge[0][1] and edge[0][2] <= VIEWPORT["width"] - 8, shown  # a margin from the edge

        # the details close on a click on the background (here beyond the points' right edge)
        page.js("window.corpusmap.pick(0)")
        assert page.page.is_visible("#cm-details")
        page.page.mouse.click(VIEWPORT["width"] - 6, VIEWPORT["height"] // 3)
        page.page.wait_for_timeout(100)
        assert not page.page.is_visible("#cm-details")

        # the cursor on the controls panel, a point drawn beneath it: no tooltip
        page.js("([t, d]) => window.corpusmap.lookAt(t, d)", [[0, 0], 3.0])
        page.page.wait_for_timeout(200)
        panel = page.js("(() => { const r = document.getElementById('cm-controls').getBoundingClientRect();"
                        " return [r.left, r.top, r.right, r.bottom]; })()")
        mx, my = (panel[0] + panel[2]) / 2, panel[3] - 10
        page.page.mouse.move(mx, my)
        pos = np.asarray(page.js("window.corpusmap.screenPositions()")).reshape(-1, 2)
        beneath = int(np.argmin(np.hypot(pos[:, 0] - mx, pos[:, 1] - my)))
        page.js("i => window.corpusmap.scatter().hover(i)", beneath)
        page.page.wait_for_timeout(100)
        assert not page.page.is_visible("#cm-tooltip")
        page.page.mouse.move(VIEWPORT["width"] / 2, VIEWPORT["height"] / 2)  # on the map, hovering works
        page.js("i => window.corpusmap.scatter().hover(i)", beneath)
        page.page.wait_for_function("document.getElementById('cm-tooltip').dataset.row === String(%d)" % beneath)

        # a smaller window, after "Reset view": the whole map fits again
        page.page.click("text=Reset view")
        page.page.set_viewport_size({"width": 700, "height": 450})  # while the view moves back: refitted after
        page.page.wait_for_timeout(1500)  # the 400 ms move back, then the refit (no later move undoes it)
        pos = np.asarray(page.js("window.corpusmap.screenPositions()")).reshape(-1, 2)
        assert pos[:, 0].min() >= 0 and pos[:, 0].max() <= 700 and pos[:, 1].min() >= 0 and pos[:, 1].max() <= 450
        assert page.js("window.corpusmap.labelLevel()") == 0
    finally:
        page.close()


def test_a_narrow_window_opens_with_the_controls_folded(browser, tmp_path):
    """In a small window the controls start folded to their title so the map shows; the fold button opens them
    (cluster names move out of their way) and folds them again."""
    rng = np.random.default_rng(5)
    xy = rng.uniform(-1, 1, size=(2000, 2))
    coarse = (xy[:, 0] > 0).astype(int) + 2 * (xy[:, 1] > 0)
    names = ["south west", "south east", "north west", "north east"]
    data = PageData(x=xy[:, 0], y=xy[:, 1], labels=[f"class {c}" for c in coarse],
                    clusters=[ClusterLevel("quarters", coarse, names)])
    small = {"width": 700, "height": 450}
    page = Opened(browser, write_page(tmp_path / "narrow.html", data).html, viewport=small)
    try:
        def shown_names_clear_of_the_panel():
            return page.js("""(() => { const p = document.getElementById('cm-controls').getBoundingClientRect();
                return Array.from(document.querySelectorAll('.cm-label')).filter(n => n.style.display !== 'none')
                  .every(n => { const r = n.getBoundingClientRect();
                    return r.right <= p.left || r.left >= p.right || r.bottom <= p.top || r.top >= p.bottom; });
                })()""")

        assert page.js("document.getElementById('cm-controls').classList.contains('cm-folded')")
        assert not page.page.is_visible("#cm-legend") and not page.page.is_visible("#cm-search")
        assert page.js("document.getElementById('cm-controls').getBoundingClientRect().height") < 60
        pos = np.asarray(page.js("window.corpusmap.screenPositions()")).reshape(-1, 2)
        assert pos[:, 0].min() >= 0 and pos[:, 0].max() <= small["width"] and pos[:, 1].max() <= small["height"]
        page.page.click("#cm-fold")
        page.page.wait_for_timeout(300)
        assert page.page.is_visible("#cm-legend") and page.page.is_visible("#cm-search")
        assert page.js("document.getElementById('cm-fold').getAttribute('aria-expanded')") == "true"
        assert shown_names_clear_of_the_panel()
        page.page.click("#cm-fold")
        page.page.wait_for_timeout(300)
        assert not page.page.is_visible("#cm-legend") and shown_names_clear_of_the_panel()
        assert not page.errors and not page.blocked
    finally:
        page.close()


def _overlap(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def test_a_page_of_bare_coordinates_opens(browser, tmp_path):
    rng = np.random.default_rng(1)
    result = write_page(tmp_path / "bare.html", PageData(x=rng.normal(size=500), y=rng.normal(size=500)))
    page = Opened(browser, result.html)
    try:
        assert page.errors == [] and page.js("window.corpusmap.error") is None
        assert page.js("window.corpusmap.n") == 500
        assert page.canvas_pixels().std() > 5
        page.js("window.corpusmap.pick(3)")
        assert page.page.text_content(".cm-details-id") == "row 3"  # no ids: the row, never a link
    finally:
        page.close()


def test_hubs_are_marked_in_neighbour_lists(browser, acl, tmp_path):
    """A paper among the neighbours of a large share of all (what unnormalised vectors of one-line texts give) is
    marked where it is listed, with that share counted independently, and the map's panel says so."""
    from dataclasses import replace

    nb = acl.neighbors.copy()
    n = len(nb)
    every_third = (np.arange(n) % 3 == 0) & ~(nb == 7).any(axis=1) & (np.arange(n) != 7)
    nb[every_third, -1] = 7  # row 7 in every third list (where not already there)
    share = np.isin(np.arange(n), np.flatnonzero((nb == 7).any(axis=1))).mean()
    degree = np.bincount(nb.ravel(), minlength=n)
    expected = {str(r): round(degree[r] / n, 4) for r in np.flatnonzero(degree > max(20 * nb.shape[1], 0.05 * n))}
    html = write_page(tmp_path / "hubs.html", replace(acl.data, neighbors=nb)).html
    manifest = json.loads(html.read_text().split('id="corpusmap-manifest">')[1].split("</script>")[0])
    assert manifest["hubs"] == expected and manifest["hubs"]["7"] == pytest.approx(share, abs=1e-4)
    page = Opened(browser, html)
    try:
        page.js("window.corpusmap.pick(3)")
        items = page.js("Array.from(document.querySelectorAll('#cm-neighbours li')).map(li => li.textContent)")
        marked = [t for t in items if "(hub: a neighbour of" in t]
        assert len(marked) == sum(str(r) in expected for r in nb[3])
        assert f"(hub: a neighbour of {round(100 * share)}% of all papers)" in items[-1]
        assert "marked in neighbour lists" in page.page.inner_html("body")
    finally:
        page.close()


def test_a_single_year_is_one_swatch_with_its_count(browser, tmp_path):
    rng = np.random.default_rng(3)
    years = np.where(np.arange(300) < 290, 2025.0, np.nan)
    page = Opened(browser, write_page(tmp_path / "one-year.html", PageData(
        x=rng.normal(size=300), y=rng.normal(size=300), years=years)).html)
    try:
        page.js("window.corpusmap.colorBy('year')")
        assert page.page.locator("#cm-legend .cm-colorbar").count() == 0
        assert [(name, count) for _, name, count in _legend(page)] == [("2025", 290), ("unknown year", 10)]
    finally:
        page.close()


def test_id_links(opened, browser, tmp_path):
    links = {s: opened.js("s => window.corpusmap.idLink(s)", s) for s in
             ["31452104", "10.18653/v1/P16-1001", "2503.01234", "hep-th/9901001", "C16-1001"]}
    assert links["10.18653/v1/P16-1001"]["href"] == "https://doi.org/10.18653/v1/P16-1001"
    assert links["2503.01234"]["href"] == "https://arxiv.org/abs/2503.01234"
    assert links["hep-th/9901001"]["href"] == "https://arxiv.org/abs/hep-th/9901001"
    assert links["C16-1001"] is None
    # the ACL ids are not PMIDs: a bare number (a row number, say) gets no PubMed link, a marked PMID does
    assert links["31452104"] is None
    pubmed = "https://pubmed.ncbi.nlm.nih.gov/31452104/"
    assert opened.js("s => window.corpusmap.idLink(s)", "PMID: 31452104")["href"] == pubmed
    assert opened.js("s => window.corpusmap.idLink(s)", "pmc6543210")["href"].endswith("/PMC6543210/")
    # on a page whose ids are PMIDs, bare numbers are linked, in the panel of a clicked point too, and a DOI
    # column beside them (PubMed XML has one) is linked as well
    rng = np.random.default_rng(5)
    dois = ["10.1016/0006-2944(75)90147-7", None] * 25
    page = Opened(browser, write_page(tmp_path / "pmids.html", PageData(
        x=rng.normal(size=50), y=rng.normal(size=50), ids=[str(31452104 + i) for i in range(50)],
        abstracts=lambda a, b: {"abstract": ["text"] * (b - a), "doi": dois[a:b]}, pmids=True)).html)
    try:
        assert page.js("s => window.corpusmap.idLink(s)", "31452104")["href"] == pubmed
        page.js("window.corpusmap.pick(0)")
        page.page.wait_for_selector("#cm-details .cm-details-doi a")
        assert page.page.locator("#cm-details .cm-details-id a").first.get_attribute("href") == pubmed
        doi = page.page.locator("#cm-details .cm-details-doi a")
        assert doi.get_attribute("href") == "https://doi.org/10.1016/0006-2944(75)90147-7"
        assert doi.text_content() == dois[0]
        page.js("window.corpusmap.pick(1)")
        page.page.wait_for_function("document.querySelector('#cm-details .cm-details-id a').textContent === '31452105'")
        assert page.page.locator("#cm-details .cm-details-doi").count() == 0
    finally:
        page.close()


# ---- the large-map path: a sample drawn over the density of all points ------------------------------------------

def test_sampled_page_draws_a_sample_with_full_neighbour_rows(browser, pages, acl):
    result = pages["sampled"]
    assert result.sampled and result.n_points == SAMPLED_POINTS and result.bytes["density"] > 0
    rows = sample_rows(len(acl.titles), SAMPLED_POINTS, seed=0)
    page = Opened(browser, result.html)
    try:
        assert page.errors == [] and page.blocked == [] and page.js("window.corpusmap.error") is None
        assert page.js("window.corpusmap.n") == SAMPLED_POINTS
        assert page.canvas_pixels().std() > 10
        sample_tokens = [acl.token_sets[r] for r in rows]
        assert page.js("q => window.corpusmap.search(q)", "translation") == python_count(sample_tokens, "translation")
        p = 7
        page.js("i => window.corpusmap.pick(i)", p)
        listed = page.js("Array.from(document.querySelectorAll('#cm-neighbours li')).map(li => +li.dataset.row)")
        expected = acl.neighbors[rows[p]].tolist()
        assert len(listed) == len(expected)
        position = {int(r): j for j, r in enumerate(rows)}
        assert listed == [position.get(r, -1) for r in expected]
        outside = page.js("Array.from(document.querySelectorAll('#cm-neighbours li.cm-outside'))"
                          ".map(li => li.textContent)")
        titles = [acl.titles[r] for r in expected if r not in position]
        assert [t.replace(" (not drawn)", "") for t in outside] == titles
    finally:
        page.close()


def test_undrawn_neighbours_outside_the_year_range_are_marked_and_get_no_line(browser, pages, acl):
    """On a sampled page the neighbours that are not drawn carry their years: with a year range set, those
    outside it are listed as such and get no line, like the drawn ones."""
    rows = sample_rows(len(acl.titles), SAMPLED_POINTS, seed=0)
    drawn = set(rows.tolist())
    p = next(i for i, r in enumerate(rows) if acl.years[r] == 2019 and sum(
        nb not in drawn and acl.years[nb] != 2019 for nb in acl.neighbors[r]) >= 2
        and any(nb not in drawn and acl.years[nb] == 2019 for nb in acl.neighbors[r]))
    page = Opened(browser, pages["sampled"].html)
    try:
        page.js("window.corpusmap.years(2019, 2019)")
        page.js("i => window.corpusmap.pick(i)", p)
        page.page.wait_for_function("document.querySelectorAll('#cm-neighbours li').length > 0")
        shown = page.js("Array.from(document.querySelectorAll('#cm-neighbours li.cm-outside'))"
                        ".map(li => li.lastChild.textContent)")
        undrawn = [nb for nb in acl.neighbors[rows[p]] if nb not in drawn]
        assert shown == [" (not drawn; outside the year range)" if acl.years[nb] != 2019 else " (not drawn)"
                         for nb in undrawn]
        in_range = [nb for nb in acl.neighbors[rows[p]] if acl.years[nb] == 2019]
        assert len(page.js("window.corpusmap.lines()")) == len(in_range)
    finally:
        page.close()


def test_a_narrow_window_keeps_the_fold_button_free_and_escape_closes_the_top_panel(browser, pages):
    """At 600 x 700 an open paper sits below the folded controls, not over their fold button; unfolded, the
    controls stay usable over it. Escape closes the About panel first, then the paper."""
    page = Opened(browser, pages["single"].html, viewport={"width": 600, "height": 700})
    fold_is_reachable = """() => { const r = document.getElementById('cm-fold').getBoundingClientRect();
        return document.elementFromPoint((r.left + r.right) / 2, (r.top + r.bottom) / 2).id === 'cm-fold'; }"""
    try:
        page.js("window.corpusmap.pick(5)")
        page.page.wait_for_function("!document.getElementById('cm-details').hidden")
        assert page.js(fold_is_reachable)
        assert not _overlap(_box(page, "#cm-controls"), _box(page, "#cm-details"))
        page.page.click("#cm-fold")  # unfolded: over the details where there is no room below them
        assert page.page.is_visible("#cm-legend")
        page.page.wait_for_function(fold_is_reachable, timeout=10_000)  # (once the page has refitted)
        page.page.click("#cm-fold")
        page.page.wait_for_function("""() => { const c = document.getElementById('cm-controls').getBoundingClientRect();
            const d = document.getElementById('cm-details').getBoundingClientRect();
            return c.right <= d.left || d.right <= c.left || c.bottom <= d.top || d.bottom <= c.top; }""",
                                    timeout=10_000)
        page.js("document.getElementById('cm-about').click()")  # (its button is in the folded controls)
        assert page.page.is_visible("#cm-info")
        page.page.keyboard.press("Escape")
        assert not page.page.is_visible("#cm-info") and page.page.is_visible("#cm-details")
        page.page.wait_for_function("location.hash.includes('p=5')", timeout=10_000)  # (written after a pause)
        page.page.keyboard.press("Escape")
        assert not page.page.is_visible("#cm-details")
    finally:
        page.close()


def test_a_window_resized_after_the_page_panned_to_a_paper_fits_the_whole_map_again(browser, pages):
    """The pan that brings a clicked paper out from under its panel is the page's own: the reader has not moved
    the map, so a new window size still fits the whole map."""
    page = Opened(browser, pages["single"].html)
    try:
        _click_the_rightmost_point(page)
        page.page.keyboard.press("Escape")
        page.page.set_viewport_size({"width": 700, "height": 450})
        fits = """() => window.corpusmap.screenPositions()
            .every((v, i) => v >= 0 && v <= (i % 2 ? 450 : 700))"""
        page.page.wait_for_function(fits, timeout=10_000)  # (however slow the resize event comes)
    finally:
        page.close()


def test_quick_picks_follow_the_words_as_the_overlay_reads_them(browser, pages):
    """The words box is read as tokens (any separator, any case): a quick pick shows pressed when its word is
    there however written, and a click takes it out rather than adding it twice."""
    page = Opened(browser, pages["single"].html)
    pressed = "w => document.querySelector(`#cm-picks [data-word='${w}']`).getAttribute('aria-pressed')"
    try:
        page.js("window.corpusmap.words('BERT; neural')")
        assert page.js(pressed, "bert") == "true" and page.js(pressed, "pretrained") == "false"
        page.page.click("#cm-picks [data-word='bert']")
        assert page.js("document.getElementById('cm-words').value") == "neural"
        assert page.js(pressed, "bert") == "false"
    finally:
        page.close()


def test_the_map_answers_the_keyboard(browser, pages):
    """The canvas is the first stop of Tab; arrows pan a fifth of the view, + and - zoom by 1.25, 0 shows the
    whole map again, Enter opens the paper nearest the middle."""
    page = Opened(browser, pages["single"].html)
    try:
        camera = "[...window.corpusmap.scatter().get('cameraTarget'), window.corpusmap.scatter().get('cameraDistance')]"
        home = page.js(camera)
        page.page.keyboard.press("Tab")
        assert page.js("document.activeElement.id") == "cm-canvas"
        page.page.keyboard.press("ArrowRight")
        x, y, d = page.js(camera)
        assert abs(x - (home[0] + 0.4 * home[2])) < 1e-6 and abs(y - home[1]) < 1e-6 and abs(d - home[2]) < 1e-9
        page.page.keyboard.press("ArrowUp")
        page.page.keyboard.press("+")
        x2, y2, d2 = page.js(camera)
        assert abs(y2 - (home[1] + 0.4 * home[2])) < 1e-6 and abs(d2 - home[2] / 1.25) < 1e-6
        page.page.keyboard.press("-")
        assert abs(page.js(camera)[2] - home[2]) < 1e-6
        page.page.keyboard.press("0")  # the 400 ms move back, however slow the frames come
        at_home = f"(h => {{ const c = {camera}; return c.every((v, i) => Math.abs(v - h[i]) < 1e-6); }})"
        page.page.wait_for_function(f"{at_home}({json.dumps(home)})", timeout=10_000)
        assert np.allclose(page.js(camera), home, atol=1e-6)
        # Enter opens the paper nearest the middle of the view (independently: the screen positions)
        pos = np.asarray(page.js("window.corpusmap.screenPositions()")).reshape(-1, 2)
        box = page.js("(() => { const r = document.getElementById('cm-canvas').getBoundingClientRect();"
                      " return [r.left + r.width / 2, r.top + r.height / 2]; })()")
        nearest = int(np.argmin(((pos - np.asarray(box)) ** 2).sum(axis=1)))
        page.page.keyboard.press("Enter")
        page.page.wait_for_function(f"document.getElementById('cm-details').dataset.row === '{nearest}'")
        assert page.errors == []
    finally:
        page.close()


def test_year_colours_cover_a_short_span_and_clip_a_long_tail():
    from corpusmap.view.points import year_column

    short = np.repeat([2012, 2013, 2014, 2015, 2016], [300, 600, 600, 500, 30]).astype(float)
    assert year_column(short)[1] == {"min": 2012.0, "max": 2016.0, "colour_min": 2012.0, "colour_max": 2016.0}
    long = np.concatenate([np.arange(1950, 1990), np.repeat(np.arange(1990, 2025), 100)]).astype(float)
    meta = year_column(long)[1]
    assert meta["min"] == 1950 and meta["colour_min"] > 1980 and meta["colour_max"] == 2024
    # a sampled page states the range of every point, not of its sample
    values, sampled = year_column(short[-1:], short)
    assert sampled == {"min": 2012.0, "max": 2016.0, "colour_min": 2012.0, "colour_max": 2016.0}


def test_the_url_fragment_keeps_and_restores_what_is_shown(browser, pages, acl):
    """Colour mode, search, year range, camera and the clicked paper go into the fragment as they change, and a
    page opened with that fragment (a reload, a shared link) shows them again."""
    html = pages["single"].html
    row = int(np.flatnonzero((acl.years >= 2017) & (acl.years <= 2018))[0])  # a paper in the range
    page = Opened(browser, html)
    try:
        page.js("window.corpusmap.colorBy('year')")
        count = page.js("q => window.corpusmap.search(q)", "parsing")
        page.js("([a, b]) => window.corpusmap.years(a, b)", [2017, 2018])
        page.js(f"window.corpusmap.pick({row})")
        page.page.wait_for_timeout(400)  # (were it under the details panel, the map would move it out)
        page.js("([t, d]) => window.corpusmap.lookAt(t, d)", [[0.1, -0.2], 0.4])
        page.page.wait_for_function("location.hash.includes('v=0.1')")
        fragment = page.js("location.hash")
        for part in ("c=year", "q=parsing", "y=2017-2018", "v=0.1%2C-0.2%2C0.4", f"p={row}"):
            assert part in fragment, fragment
    finally:
        page.close()
    again = Opened(browser, html, fragment)
    try:
        assert again.errors == []
        assert again.js("document.getElementById('cm-color').value") == "year"
        assert again.js("document.getElementById('cm-search').value") == "parsing"
        assert again.js("document.getElementById('cm-search-count').dataset.count") == str(count)
        years = "[document.getElementById('cm-year-from').value, document.getElementById('cm-year-to').value]"
        assert again.js(years) == ["2017", "2018"]
        assert again.js("document.getElementById('cm-details').dataset.row") == str(row)
        assert abs(again.js("window.corpusmap.scatter().get('cameraDistance')") - 0.4) < 1e-6
        # closing the paper takes it out of the fragment
        again.page.keyboard.press("Escape")
        again.page.wait_for_function("!location.hash.includes('p=')")
    finally:
        again.close()


def test_a_link_shows_only_what_it_can_and_says_so(browser, pages, acl):
    """A linked paper that the linked year range hides is not opened, and the fragment is rewritten to what is
    shown (a row beyond the map dropped, a reversed range put in order); the status line counts the range."""
    html = pages["single"].html
    years = acl.years
    hidden = int(np.flatnonzero(years == 2016)[0])
    page = Opened(browser, html, f"#y=2019-2019&p={hidden}")
    try:
        assert not page.page.is_visible("#cm-details")
        page.page.wait_for_function("location.hash === '#y=2019-2019'")
        assert f"({int((years == 2019).sum()):,} in the year range)" in page.page.text_content("#cm-status")
        page.js("window.corpusmap.colorBy('year')")  # a colour bar counts nothing: no "(in the year range)"
        assert page.page.text_content("#cm-legend").startswith("Year") and "range" not in page.page.text_content(
            "#cm-legend")
    finally:
        page.close()
    page = Opened(browser, html, "#p=99999&y=2018-2017")
    try:
        page.page.wait_for_function("location.hash === '#y=2017-2018'")
        assert not page.page.is_visible("#cm-details")
    finally:
        page.close()
    # a camera far off the map or zoomed in a billion times is brought back within the page's limits
    camera = "[...window.corpusmap.scatter().get('cameraTarget'), window.corpusmap.scatter().get('cameraDistance')]"
    page = Opened(browser, html)
    try:
        home = page.js(camera)[2]
    finally:
        page.close()
    for fragment, expected in (("#v=1e9,-1e9,0.5", [1.5, -1.5, 0.5]), ("#v=0.1,0.2,1e-9", [0.1, 0.2, home / 1e4])):
        page = Opened(browser, html, fragment)
        try:
            assert np.allclose(page.js(camera), expected, rtol=1e-4), (fragment, page.js(camera))
        finally:
            page.close()


def test_a_picked_point_is_moved_out_from_under_the_details_and_word_matches_stay_on_top(browser, pages):
    page = Opened(browser, pages["single"].html)
    try:
        _wait_until_still(page)  # (positions read while the first view still settles would miss the point)
        pos = np.asarray(page.js("window.corpusmap.screenPositions()")).reshape(-1, 2)
        width = page.js("window.innerWidth")
        right = max((i for i in page.isolated_points(radius=8, count=40) if pos[i, 0] > width - 380),
                    key=lambda i: pos[i, 0])  # a point where the details panel will open
        page.click(right)
        page.page.wait_for_function(f"document.getElementById('cm-details').dataset.row === '{right}'")
        # the 300 ms pan (slower in software WebGL on a busy machine: waited for, not timed)
        clear = (f"window.corpusmap.screenPosition({right})[0] < "
                 "document.getElementById('cm-details').getBoundingClientRect().left - 100")
        page.page.wait_for_function(clear, timeout=10_000)
        # "Reset view" shows the whole map again, but not with the paper back under its panel
        page.page.click("#cm-reset")
        page.page.wait_for_timeout(1_000)
        page.page.wait_for_function(clear, timeout=10_000)
        # the word overlay draws its matches last; a search (or clearing it) in that mode keeps that order
        page.js("window.corpusmap.words('parsing')")
        order = page.js("window.corpusmap.scatter().get('pointOrder')")
        page.js("window.corpusmap.search('neural')")
        assert page.js("window.corpusmap.scatter().get('pointOrder')") == order
        page.js("window.corpusmap.search('')")
        assert page.js("window.corpusmap.scatter().get('pointOrder')") == order and len(order) == page.js(
            "window.corpusmap.n")
    finally:
        page.close()


def _box(page, selector: str) -> list[float]:
    return page.js(f"(() => {{ const r = document.querySelector('{selector}').getBoundingClientRect();"
                   " return [r.left, r.top, r.right, r.bottom]; })()")


IN_THE_FREE_PART = """row => { const [x, y] = window.corpusmap.screenPosition(row);
    const c = document.getElementById('cm-controls').getBoundingClientRect();
    const d = document.getElementById('cm-details').getBoundingClientRect();
    return c.right < x && x < d.left && 0 < y && y < window.innerHeight; }"""


def _wait_until_in_the_free_part(page, row: int) -> None:
    """Row's point comes to rest on screen, right of the (unfolded) controls and left of the open details (the
    300 ms pan, however slow the frames come)."""
    page.page.wait_for_function(f"({IN_THE_FREE_PART})({row})", timeout=10_000)
    _wait_until_still(page)
    assert page.js(f"({IN_THE_FREE_PART})({row})"), (page.js(f"window.corpusmap.screenPosition({row})"),
                                                      _box(page, "#cm-controls"), _box(page, "#cm-details"))


def _click_the_rightmost_point(page) -> int:
    """Click the right-most isolated point (under the details panel once they open) and wait until the page has
    brought it into the free part; returns its row."""
    _wait_until_still(page)  # (positions read while the first view still settles would miss the point)
    pos = np.asarray(page.js("window.corpusmap.screenPositions()")).reshape(-1, 2)
    right = max(page.isolated_points(radius=6, count=40), key=lambda i: pos[i, 0])
    page.click(right)
    page.page.wait_for_function(f"document.getElementById('cm-details').dataset.row === '{right}'")
    _wait_until_in_the_free_part(page, right)
    return right


def _wait_until_still(page) -> None:
    """The camera has stopped: the same in two looks 200 ms apart."""
    page.page.wait_for_function("""() => { const s = window.corpusmap.scatter();
        const now = JSON.stringify([...s.get('cameraTarget'), s.get('cameraDistance')]);
        const still = window.__camera === now; window.__camera = now; return still; }""", polling=200,
                                timeout=10_000)


def test_an_opened_paper_is_brought_into_the_free_part_of_a_small_window(browser, pages, acl):
    """At 800 x 600 a clicked point at the right edge lands between the two panels (not under the controls), and
    a neighbour opened from the list while zoomed in, off screen, is brought into view."""
    size = {"width": 800, "height": 600}
    page = Opened(browser, pages["single"].html, viewport=size)
    try:
        right = _click_the_rightmost_point(page)
        # zoomed in on the paper, a neighbour far from it on the map is off screen; opened from the list, it shows
        page.js("([t, d]) => window.corpusmap.lookAt(t, d)", [page.js(f"window.corpusmap.dataPosition({right})"), 0.02])
        page.page.wait_for_timeout(300)
        pos = np.asarray(page.js("window.corpusmap.screenPositions()")).reshape(-1, 2)
        off = [int(r) for r in acl.neighbors[right]
               if not (0 < pos[r, 0] < size["width"] and 0 < pos[r, 1] < size["height"])]
        assert off, "zoomed in this far, some neighbour is off screen"
        page.page.click(f"#cm-neighbours li[data-row='{off[0]}'] button")
        page.page.wait_for_function(f"document.getElementById('cm-details').dataset.row === '{off[0]}'")
        _wait_until_in_the_free_part(page, off[0])
        assert page.errors == []
    finally:
        page.close()


def test_years_outside_the_data_resizing_keys_and_zooming_out(browser, tmp_path):
    """A year typed beyond the data applies the clamped range the boxes show; regions without a point in the year
    range lose their names; a window made narrow folds the controls (and unfolds them when it grows back); a
    keyboard pan hides the hovered point's tooltip; Escape from inside the details gives the focus to the map;
    zooming out stops at four times the whole-map view."""
    rng = np.random.default_rng(6)
    n = 3000
    xy = rng.uniform(-1, 1, size=(n, 2))
    region = (xy[:, 0] > 0).astype(int) + 2 * (xy[:, 1] > 0)
    years = (2010 + 2 * region + rng.integers(0, 2, n)).astype(float)  # region r: years 2010 + 2r and the next
    names = ["south west", "south east", "north west", "north east"]
    data = PageData(x=xy[:, 0], y=xy[:, 1], titles=[f"paper {i}" for i in range(n)], years=years,
                    neighbors=rng.integers(0, n, size=(n, 5)), clusters=[ClusterLevel("quarters", region, names)])
    page = Opened(browser, write_page(tmp_path / "years.html", data).html, viewport={"width": 1200, "height": 800})
    shown = "[document.getElementById('cm-year-from').value, document.getElementById('cm-year-to').value]"
    names_shown = ("Array.from(document.querySelectorAll('.cm-label')).filter(n => n.style.display !== 'none')"
                   ".map(n => n.textContent).sort()")
    try:
        home = page.js("window.corpusmap.scatter().get('cameraDistance')")
        assert page.js(names_shown) == sorted(names)
        page.page.fill("#cm-year-from", "2030")
        page.page.press("#cm-year-from", "Enter")
        assert page.js(shown) == ["2017", "2017"]
        assert page.page.text_content("#cm-year-count") == f"{int((years == 2017).sum()):,} points"
        def names_become(expected):
            wanted = json.dumps(json.dumps(expected, separators=(",", ":")))
            page.page.wait_for_function(f"JSON.stringify({names_shown}) === {wanted}")

        names_become(["north east"])  # only its region has papers of 2017
        page.page.fill("#cm-year-from", "2011")
        page.page.press("#cm-year-from", "Enter")
        page.page.fill("#cm-year-to", "2011.6")  # (a whole year: 2012)
        page.page.press("#cm-year-to", "Enter")
        assert page.js(shown) == ["2011", "2012"]
        names_become(["south east", "south west"])
        page.page.click(".cm-years button")  # "all"
        names_become(sorted(names))

        folded = "document.getElementById('cm-controls').classList.contains('cm-folded')"
        assert not page.js(folded)
        page.page.set_viewport_size({"width": 600, "height": 450})
        page.page.wait_for_function(folded)
        page.page.set_viewport_size({"width": 1200, "height": 800})
        page.page.wait_for_function(f"!{folded}")
        page.page.wait_for_timeout(300)

        # hover a point, then pan with the keyboard: its tooltip goes
        pos = np.asarray(page.js("window.corpusmap.screenPositions()")).reshape(-1, 2)
        row = int(np.argmin(np.hypot(pos[:, 0] - 800, pos[:, 1] - 400)))
        page.page.mouse.move(*pos[row])
        page.page.wait_for_function(f"document.getElementById('cm-tooltip').dataset.row === '{row}'"
                                    " && !document.getElementById('cm-tooltip').hidden")
        page.js("document.getElementById('cm-canvas').focus()")
        page.page.keyboard.press("ArrowRight")
        assert not page.page.is_visible("#cm-tooltip")

        # Escape with the focus on a neighbour in the details: the focus goes to the map
        page.js("window.corpusmap.pick(0)")
        page.page.wait_for_selector("#cm-neighbours button")
        page.page.focus("#cm-neighbours button")
        page.page.keyboard.press("Escape")
        assert not page.page.is_visible("#cm-details")
        assert page.js("document.activeElement.id") == "cm-canvas"

        # zooming out: by wheel and by key, never beyond four times the whole-map view
        distance = "window.corpusmap.scatter().get('cameraDistance')"
        page.page.keyboard.press("0")
        page.page.wait_for_function(f"Math.abs({distance} - {home}) < 1e-9 * {home}", timeout=10_000)
        page.page.mouse.move(600, 400)
        for _ in range(12):
            page.page.mouse.wheel(0, 400)
        page.page.wait_for_function(f"{distance} > 3 * {home}", timeout=10_000)
        page.page.wait_for_timeout(300)  # (any wheel steps still to come may not take it farther)
        wheel = page.js(distance)
        for _ in range(12):
            page.page.keyboard.press("-")
        keys = page.js(distance)
        assert 3 * home < wheel <= 4 * home * 1.001 and 3 * home < keys <= 4 * home * 1.001, (home, wheel, keys)
        assert page.errors == []
    finally:
        page.close()


def test_a_paper_panned_down_into_view_is_not_left_under_the_controls(browser, pages):
    """A paper opened (as from a list) while it lies above the window, at the controls' left and right: the
    vertical pan that brings it into view would leave it under the controls, so the page pans it sideways too
    (whether it is under a panel is judged where the vertical pan leaves it)."""
    page = Opened(browser, pages["single"].html)
    try:
        controls = _box(page, "#cm-controls")
        height = page.js("document.getElementById('cm-canvas').getBoundingClientRect().height")
        width = page.js("document.getElementById('cm-canvas').getBoundingClientRect().width")
        assert controls[3] > height / 2 + 40, controls  # (a panel reaching below the middle, where the pan ends)
        row = 100
        px, py = page.js(f"window.corpusmap.dataPosition({row})")
        d = 0.05
        unit = 2 * d / height  # data units per pixel
        goal = [(controls[0] + controls[2]) / 2, -150]  # over the controls' column, above the window
        target = [px - (goal[0] - width / 2) * unit, py - (height / 2 - goal[1]) * unit]
        page.js("([t, d]) => window.corpusmap.lookAt(t, d)", [target, d])
        page.page.wait_for_timeout(200)
        x, y = page.js(f"window.corpusmap.screenPosition({row})")
        assert abs(x - goal[0]) < 2 and abs(y - goal[1]) < 2, (x, y, goal)
        page.js(f"window.corpusmap.pick({row})")
        page.page.wait_for_function(f"document.getElementById('cm-details').dataset.row === '{row}'")
        clear = f"""(([x, y]) => {{ const c = document.getElementById('cm-controls').getBoundingClientRect();
            return 0 < y && y < window.innerHeight && !(c.left <= x && x <= c.right && c.top <= y && y <= c.bottom);
            }})(window.corpusmap.screenPosition({row}))"""
        page.page.wait_for_function(clear, timeout=10_000)  # (the 300 ms pan, however slow the frames come)
        _wait_until_still(page)
        x, y = page.js(f"window.corpusmap.screenPosition({row})")
        controls = _box(page, "#cm-controls")
        details = _box(page, "#cm-details")
        assert not (controls[0] <= x <= controls[2] and controls[1] <= y <= controls[3]), (x, y, controls)
        assert not (details[0] <= x <= details[2] and details[1] <= y <= details[3]), (x, y, details)
        assert 0 < x < width and 0 < y < height
        assert page.errors == []
    finally:
        page.close()


def _manifest_of(html) -> dict:
    return json.loads(html.read_text().split('id="corpusmap-manifest">')[1].split("</script>")[0])


def test_odd_pages_one_point_blank_and_endless_titles_negative_years(browser, tmp_path):
    """Odd data a page must still show sanely: a map of one point (or of points all at one place) at a
    whole-map scale (no zero extent to divide by), "1 abstract" and one year "1999" in the subtitle; titles of
    blank space only as "(no title)" wherever a title shows; a title of one endless word (and an endless label)
    kept inside a tooltip of at most 6 + 2 lines and 360 px; negative years through the URL's fragment."""
    camera = "[...window.corpusmap.scatter().get('cameraTarget'), window.corpusmap.scatter().get('cameraDistance')]"
    one = write_page(tmp_path / "one.html", PageData(x=np.array([3.0]), y=np.array([-2.0]), titles=[" \t  "],
                                                     years=np.array([1999.0]), ids=["only"]))
    assert _manifest_of(one.html)["subtitle"] == "1 abstract · 1999"
    page = Opened(browser, one.html)
    try:
        assert page.errors == [] and page.js("window.corpusmap.error") is None
        assert page.page.text_content(".cm-subtitle") == "1 abstract · 1999"
        distance = page.js(camera)[2]
        assert 0.5 <= distance <= 5, distance  # about the whole [-1, 1] square, not a millionth of it
        x, y = page.js("window.corpusmap.screenPosition(0)")
        controls = _box(page, "#cm-controls")
        assert controls[2] < x < VIEWPORT["width"] and 0 < y < VIEWPORT["height"]
        page.page.mouse.move(x, y)
        page.page.wait_for_function("!document.getElementById('cm-tooltip').hidden", timeout=10_000)
        assert page.page.text_content(".cm-tooltip-title") == "(no title)"
        page.js("window.corpusmap.pick(0)")
        page.page.wait_for_function("document.getElementById('cm-details').dataset.row === '0'")
        assert page.page.text_content(".cm-details-title") == "(no title)"
        page.page.keyboard.press("Escape")
        for key in ("+", "-", "0"):  # the keys still zoom about it
            page.js("document.getElementById('cm-canvas').focus()")
            page.page.keyboard.press(key)
        assert page.errors == []
    finally:
        page.close()
    same = write_page(tmp_path / "same.html", PageData(x=np.full(40, 7.5), y=np.full(40, 7.5),
                                                       titles=[f"paper {i}" for i in range(40)]))
    assert _manifest_of(same.html)["subtitle"] == "40 abstracts"
    page = Opened(browser, same.html)
    try:
        assert page.errors == [] and abs(page.js(camera)[2] - distance) < 1e-6 * distance
        x, y = page.js("window.corpusmap.screenPosition(39)")
        assert controls[2] < x < VIEWPORT["width"] and 0 < y < VIEWPORT["height"]
    finally:
        page.close()

    # blank and endless titles, an endless label, negative years
    rng = np.random.default_rng(8)
    n = 300
    xy = rng.uniform(-1, 1, size=(n, 2))
    titles = [f"paper {i}" for i in range(n)]
    titles[0], titles[1] = "   ", "x" * 2000
    labels = ["plain"] * n
    labels[1] = "L" * 600
    years = rng.integers(-500, -99, size=n).astype(float)
    neighbors = rng.integers(0, n, size=(n, 5))
    neighbors[2] = [0, 1, 3, 4, 5]
    odd = write_page(tmp_path / "odd.html", PageData(x=xy[:, 0], y=xy[:, 1], titles=titles, labels=labels,
                                                     years=years, neighbors=neighbors))
    lo, hi = int(years.min()), int(years.max())
    assert _manifest_of(odd.html)["subtitle"] == f"300 abstracts · {lo} – {hi}"  # (spaced: -499 – -101)
    page = Opened(browser, odd.html, "#y=-300--250")
    try:
        assert page.errors == []
        shown = "[document.getElementById('cm-year-from').value, document.getElementById('cm-year-to').value]"
        assert page.js(shown) == ["-300", "-250"]
        inside = int(((years >= -300) & (years <= -250)).sum())
        assert page.page.text_content("#cm-year-count") == f"{inside:,} points"
        page.page.wait_for_function("location.hash === '#y=-300--250'")  # written back as it was read
        page.js("window.corpusmap.years(-450, -120)")
        page.page.wait_for_function("location.hash === '#y=-450--120'")
        page.js("window.corpusmap.years(-500, -100)")  # all years again: every point can be hovered

        # the blank title: "(no title)" in the tooltip, the details and a neighbour list
        page.hover(0)
        assert page.page.text_content(".cm-tooltip-title") == "(no title)"
        page.js("window.corpusmap.pick(2)")
        page.page.wait_for_function("document.querySelector('#cm-neighbours li[data-row=\"0\"] button')"
                                    " && document.querySelector('#cm-neighbours li[data-row=\"0\"] button')"
                                    ".textContent !== '…'")
        assert page.page.text_content("#cm-neighbours li[data-row='0'] button") == "(no title)"
        page.js("window.corpusmap.pick(0)")
        page.page.wait_for_function("document.getElementById('cm-details').dataset.row === '0'")
        assert page.page.text_content(".cm-details-title") == "(no title)"
        page.page.keyboard.press("Escape")

        # the endless title and label: clamped, wrapped anywhere, inside the window
        page.hover(1)
        tip = page.js("""(() => { const t = document.getElementById('cm-tooltip'); const r = t.getBoundingClientRect();
            const part = (s) => { const e = t.querySelector(s); return [e.getBoundingClientRect().height,
              e.scrollWidth, e.clientWidth, parseFloat(getComputedStyle(e).lineHeight)]; };
            return { box: [r.left, r.top, r.right, r.bottom], title: part('.cm-tooltip-title'),
              meta: part('.cm-tooltip-meta') }; })()""")
        left, top, right, bottom = tip["box"]
        assert right - left <= 360.5 and 0 <= left and right <= VIEWPORT["width"], tip
        assert 0 <= top and bottom <= VIEWPORT["height"], tip
        for part, lines in (("title", 6), ("meta", 2)):
            h, scroll_width, client_width, line = tip[part]
            assert h <= lines * line + 1 and scroll_width <= client_width, (part, tip)
        assert page.errors == []
    finally:
        page.close()


def test_the_about_panel_shows_the_evaluation_notes_and_names_keep_clear_of_it(browser, tmp_path):
    """The About panel lists the evaluation's notes (what it skipped, what its numbers mean), one row each; the
    cluster names under it while it is open move out of its way, and come back when it closes."""
    rng = np.random.default_rng(9)
    n = 3000
    xy = rng.uniform(-1, 1, size=(n, 2))
    grid = (np.clip((xy[:, 0] + 1) * 2, 0, 3).astype(int) + 4 * np.clip((xy[:, 1] + 1) * 2, 0, 3).astype(int))
    names = [f"region {c}" for c in range(16)]
    notes = ["year column 'year' holds one year only (2019); year RMSE skipped",
             "label column 'label' has 2,900 classes for 3,000 labelled rows: with labels of about one paper "
             "each, kNN accuracy is near 0 whatever the map (choose a column of topics with --label-col)"]
    info = {"evaluation": {"k": 10, "knn_recall": 0.31, "knn_accuracy": {"accuracy": 0.02, "chance": 0.01},
                           "notes": notes}}
    html = write_page(tmp_path / "about.html", PageData(x=xy[:, 0], y=xy[:, 1], info=info,
                                                        clusters=[ClusterLevel("grid", grid, names)])).html
    labels = """Array.from(document.querySelectorAll('.cm-label')).filter(n => n.style.display !== 'none')
        .map(n => { const r = n.getBoundingClientRect(); return [n.textContent, r.left, r.top, r.right, r.bottom]; })"""
    page = Opened(browser, html)
    try:
        before = page.js(labels)
        page.page.click("#cm-about")
        assert page.page.is_visible("#cm-info")
        rows = page.js("Array.from(document.querySelectorAll('#cm-info tr'))"
                       ".map(r => [r.cells[0].textContent, r.cells[1].textContent])")
        assert [v for k, v in rows if k == "note"] == notes
        assert ["kNN recall@10", "31.0%"] in rows
        panel = _box(page, "#cm-info")
        assert any(_overlap(b[1:], panel) for b in before), (before, panel)  # (names were under it)
        shown = page.js(labels)
        assert shown and not any(_overlap(b[1:], panel) for b in shown), (shown, panel)
        page.page.click("#cm-info .cm-close")
        assert not page.page.is_visible("#cm-info")
        assert page.js(labels) == before  # the names back where they were
        assert page.errors == []
    finally:
        page.close()


def test_the_runs_evaluation_notes_go_into_the_page_data(acl_map, tmp_path):
    """The notes of RUN/eval/metrics.json (a year column of one year, a label column near chance whatever the
    map, ...) are passed to the page's About panel with the numbers they qualify."""
    from conftest import copy_run
    from corpusmap.run import Run
    from corpusmap.view.info import info_sections
    from corpusmap.view.stage import ViewParams, page_data

    run = copy_run(acl_map, tmp_path)
    notes = ["year column 'year' holds one year only (2019); year RMSE skipped"]
    (run / "eval").mkdir()
    (run / "eval" / "metrics.json").write_text(json.dumps({
        "k": 10, "notes": notes, "spaces": [{"space": "high-D (300 dims)", "kind": "vectors", "knn_recall": None},
                                            {"space": "tsne", "kind": "map", "knn_recall": 0.25}]}))
    evaluation = page_data(Run(run), ViewParams(map="tsne"), None).info["evaluation"]
    assert evaluation["notes"] == notes
    rows = [row for section in info_sections({"evaluation": evaluation}, []) for row in section["rows"]]
    assert ["note", notes[0]] in rows and ["tsne: kNN recall@10", "25.0%"] in rows
