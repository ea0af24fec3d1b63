"""`distinct` (core/model/arrays.py) gives what `np.unique` gives for the engine's keys: integers
of every width and sign, strings, empty and one-element arrays, 2-D input flattened."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from core.model.arrays import distinct


@settings(max_examples=200, deadline=None)
@given(
    hnp.arrays(
        dtype=st.sampled_from([np.int8, np.int32, np.int64, np.uint64]),
        shape=hnp.array_shapes(min_dims=1, max_dims=2, min_side=0, max_side=40),
    )
)
def test_distinct_is_np_unique_for_integers(values: np.ndarray) -> None:
    got = distinct(values)
    want = np.unique(values)
    assert got.dtype == want.dtype
    assert np.array_equal(got, want)


@given(st.lists(st.text(max_size=4), max_size=30))
def test_distinct_is_np_unique_for_strings(values: list[str]) -> None:
    array = np.array(values, dtype=str)
    assert np.array_equal(distinct(array), np.unique(array))


def test_distinct_of_a_large_key_column_and_a_copy_not_a_view() -> None:
    rng = np.random.default_rng(7)
    keys = rng.integers(0, 200_000, 1_000_000)
    assert np.array_equal(distinct(keys), np.unique(keys))
    one = np.array([5])
    out = distinct(one)
    out[0] = 6
    assert one[0] == 5
