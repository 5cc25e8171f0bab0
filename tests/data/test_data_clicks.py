"""Simulated users: error clicks, click sequences, random clicks and boxes."""

from __future__ import annotations

import numpy as np

from sat.data.clicks import click_sequence, error_click, random_clicks, reference_box


def _cube(lo, hi, shape=(30, 30, 30)):
    m = np.zeros(shape, bool)
    m[lo:hi, lo:hi, lo:hi] = True
    return m


def test_error_click_goes_to_the_largest_error_and_says_which_kind():
    ref = _cube(5, 20)
    assert error_click(ref, ref) is None
    missed = ref.copy()
    missed[5:20, 5:20, 12:20] = False  # a large missed slab
    x, y, z, label = error_click(missed, ref)
    assert label == 1 and ref[x, y, z] and not missed[x, y, z]
    extra = ref | _cube(22, 29)  # a false blob larger than any miss
    x, y, z, label = error_click(extra, ref)
    assert label == 0 and extra[x, y, z] and not ref[x, y, z]


def test_click_sequence_visits_distinct_errors():
    ref = _cube(2, 10) | _cube(15, 25)
    clicks = click_sequence(np.zeros_like(ref), ref, 5)
    assert len(clicks) == 2 and all(c[3] == 1 for c in clicks)
    assert {bool(_cube(2, 10)[c[:3]]) for c in clicks} == {True, False}


def test_random_clicks_fall_inside_and_in_a_shell_outside():
    ref, rng = _cube(10, 20), np.random.default_rng(0)
    clicks = random_clicks(ref, rng, positive=3, negative=2, shell=3)
    assert sum(c[3] for c in clicks) == 3 and len(clicks) == 5
    for x, y, z, label in clicks:
        assert ref[x, y, z] == bool(label)
        assert label or np.abs(np.array([x, y, z]) - 15).max() <= 5 + 3


def test_reference_box_and_its_jitter_stay_in_the_array():
    ref = _cube(0, 6)
    assert reference_box(ref) == (0, 0, 0, 5, 5, 5)
    assert reference_box(np.zeros_like(ref)) is None
    rng = np.random.default_rng(1)
    for _ in range(20):
        b = reference_box(ref, rng=rng, jitter=4)
        assert all(0 <= v < 30 for v in b) and all(b[i] <= b[i + 3] for i in range(3))


def test_a_reference_box_leaves_out_stray_specks_but_keeps_every_drawn_piece():
    ref = _cube(5, 15)  # 1,000 voxels
    ref[27, 27, 27] = True  # a 1-voxel speck far away: a user does not stretch the box to it
    assert reference_box(ref) == (5, 5, 5, 14, 14, 14)
    ref[20:25, 20:25, 20:25] = True  # a second real piece (125 voxels, 11 %) is inside the box
    assert reference_box(ref) == (5, 5, 5, 24, 24, 24)
