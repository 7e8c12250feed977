"""Region colours on a real map (ACL, t-SNE): regions that touch get different colours, checked against touching
measured independently from the points' own 2-D nearest neighbours (sklearn)."""
from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from corpusmap.palette import region_colours


@pytest.fixture(scope="module")
def regions(acl_map):
    from sklearn.cluster import KMeans

    table = pq.read_table(acl_map / "maps" / "tsne.parquet", columns=["x", "y"])
    xy = np.column_stack([table.column("x").to_numpy(), table.column("y").to_numpy()]).astype(np.float64)
    codes = KMeans(60, n_init=1, random_state=0).fit_predict(xy)  # 60 regions: more than 18 colours
    return xy, codes


def _same_colour_contacts(xy, codes, colours):
    """Share of the points whose 5 nearest 2-D neighbours include a point of another region of the same colour,
    among the points with a neighbour in another region at all."""
    from sklearn.neighbors import NearestNeighbors

    _, idx = NearestNeighbors(n_neighbors=6).fit(xy).kneighbors(xy)
    other = codes[idx[:, 1:]] != codes[:, None]
    same = other & (colours[codes[idx[:, 1:]]] == colours[codes][:, None])
    border = other.any(axis=1)
    return same.any(axis=1)[border].mean()


def test_touching_regions_differ_and_the_largest_have_their_own_colours(regions):
    xy, codes = regions
    colours = region_colours(codes, xy[:, 0], xy[:, 1], 60, 18)
    assert colours.min() >= 0 and colours.max() < 18
    largest = np.argsort(-np.bincount(codes, minlength=60), kind="stable")
    assert len(set(colours[largest[:18]])) == 18
    cycled = np.empty(60, dtype=np.int64)
    cycled[largest] = np.arange(60) % 18  # the palette repeated in size order, blind to the map
    chosen, blind = _same_colour_contacts(xy, codes, colours), _same_colour_contacts(xy, codes, cycled)
    assert chosen < 0.01 and blind > 5 * chosen, (chosen, blind)


def test_the_colours_depend_on_the_map_only(regions):
    xy, codes = regions
    colours = region_colours(codes, xy[:, 0], xy[:, 1], 60, 18)
    shuffled = np.random.default_rng(0).permutation(len(codes))
    assert np.array_equal(region_colours(codes[shuffled], xy[shuffled, 0], xy[shuffled, 1], 60, 18), colours)
    none = np.where(codes == 0, -1, codes)  # points of no region are ignored; an empty region takes colour 0
    assert region_colours(none, xy[:, 0], xy[:, 1], 60, 18)[0] == 0
