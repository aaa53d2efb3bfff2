"""The class table's invariants and the parsing users rely on."""

import numpy as np
import pytest

from mmx.classes import (
    ABBREVIATIONS,
    CLASSES,
    N_CLASSES,
    by_abbr,
    labels_to_planes,
    parse_class_list,
    parse_class_values,
    planes_to_bitmask,
    planes_to_labels,
)
from mmx.errors import ConfigError


def test_table_matches_maximask_order_and_bits():
    assert N_CLASSES == 14
    assert ABBREVIATIONS == ("CR", "HCL", "DCL", "HP", "DP", "P", "TRL", "FR", "NEB", "SAT",
                             "SP", "OV", "BBG", "BG")
    assert [c.index for c in CLASSES] == list(range(14))
    # MaxiMask bit mask: class k has bit 2**k, background has none
    assert [c.bit for c in CLASSES[:-1]] == [2**k for k in range(13)]
    assert by_abbr("BG").bit == 0


def test_defaults_are_probabilities_and_abbreviations_unique():
    assert len(set(ABBREVIATIONS)) == N_CLASSES
    for c in CLASSES:
        assert 0 < c.prior < 1 and 0 <= c.threshold <= 1 and 0 < c.maximask_prior < 1
    # spot values from MaxiMask's shipped defaults (REFERENCE.md)
    assert (by_abbr("CR").prior, by_abbr("CR").threshold) == (5e-4, 0.43)
    assert (by_abbr("BG").prior, by_abbr("DP").threshold) == (0.9, 0.99)


def test_by_abbr_is_case_insensitive_and_rejects_unknown():
    assert by_abbr("trl").index == 6
    with pytest.raises(ConfigError, match=r"unknown contaminant class 'XX'.*CR, HCL"):
        by_abbr("XX")


def test_parse_class_list_keeps_table_order():
    assert [c.abbr for c in parse_class_list("TRL, cr")] == ["CR", "TRL"]
    assert parse_class_list(None) == CLASSES
    assert parse_class_list("") == CLASSES
    with pytest.raises(ConfigError, match="'FOO'"):
        parse_class_list("CR,FOO")


def test_parse_class_values_ranges_and_messages():
    assert parse_class_values(["CR=5e-4", "trl=0.001"], what="prior") == {"CR": 5e-4, "TRL": 1e-3}
    with pytest.raises(ConfigError, match=r"threshold for CR must be in \[0, 1\], got 1.7"):
        parse_class_values(["CR=1.7"], what="threshold")
    with pytest.raises(ConfigError, match=r"prior for CR must be in \(0, 1\), got 0"):
        parse_class_values(["CR=0"], what="prior", open_low=True, open_high=True)
    with pytest.raises(ConfigError, match="must be a number, got 'abc'"):
        parse_class_values(["CR=abc"], what="threshold")
    with pytest.raises(ConfigError, match="CLASS=VALUE"):
        parse_class_values(["CR0.5"], what="threshold")
    with pytest.raises(ConfigError, match="unknown contaminant class 'ZZ'"):
        parse_class_values({"ZZ": 0.5}, what="threshold")


def test_bitmask_uses_maximask_bits(rng):
    planes = rng.random((N_CLASSES, 5, 6)) > 0.5
    mask = planes_to_bitmask(planes)
    assert mask.dtype == np.int16  # as MaxiMask writes it
    for c in CLASSES:
        if c.bit:
            np.testing.assert_array_equal((mask & c.bit) != 0, planes[c.index])
    assert mask.max() < 2**13


def test_label_bits_round_trip(rng):
    planes = rng.random((3, N_CLASSES, 4, 7)) > 0.6
    labels = planes_to_labels(planes)
    assert labels.dtype == np.uint16 and labels.shape == (3, 4, 7)
    np.testing.assert_array_equal(labels_to_planes(labels), planes)
