"""Interactive map pages that open from disk: ``write_page(out_html, PageData(...))``.

The page (``corpusmap/view/static``, built from ``corpusmap/view/web``) draws every point with WebGL, shows
titles on hover, abstracts and high-D neighbours on click, searches whole words through a bucketed inverted
index, colours by year, label, cluster level or word presence, and names clusters by zoom level.
"""
from corpusmap.view.data import ClusterLevel, PageData
from corpusmap.view.page import PageResult, write_page

__all__ = ["ClusterLevel", "PageData", "PageResult", "write_page"]
