"""The stage parameters refuse, as the command line does, what a library caller could pass by mistake."""
from __future__ import annotations

import numpy as np
import pytest

from corpusmap.embed import EmbedOptions, EmbedParams
from corpusmap.errors import UsageProblem
from corpusmap.evaluate import EvaluateParams
from corpusmap.layouts import TsneParams
from corpusmap.maps import MapParams
from corpusmap.neighbors import NeighborsParams


@pytest.mark.parametrize("make, message", [
    (lambda: NeighborsParams(k=15.5), "NeighborsParams.k must be an integer, got 15.5"),
    (lambda: NeighborsParams(k="15"), "NeighborsParams.k must be an integer, got '15'"),
    (lambda: NeighborsParams(k=True), "NeighborsParams.k must be an integer, got True"),
    (lambda: EvaluateParams(k=10.5), "EvaluateParams.k must be an integer"),
    (lambda: MapParams(seed=-1), "MapParams.seed must be 0 or more"),
    (lambda: MapParams(tsne=TsneParams(n_iter=10.5)), "TsneParams.n_iter must be an integer"),
    (lambda: EmbedOptions(batch_size=2.0), "EmbedOptions.batch_size must be an integer"),
])
def test_wrong_numbers_are_refused_in_one_line(make, message):
    with pytest.raises(UsageProblem, match=message.replace(".", r"\.")):
        make()


def test_what_a_caller_means_is_taken():
    assert EmbedParams(inputs="in.jsonl").inputs == ("in.jsonl",)  # one input, not its characters
    assert NeighborsParams(k=np.int64(5)).k == 5 and TsneParams(exaggeration=2).exaggeration == 2
