"""Numbers for people: water content on the resolution grid, scores one digit finer, coordinates with
hemisphere letters, and plain text where a Python repr used to leak."""

from __future__ import annotations

import math

import pytest

from smmdn.display import coordinates, plain, round_vwc, score, vwc, vwc_digits


@pytest.mark.parametrize(("resolution", "digits"), [(0.001, 3), (0.005, 3), (0.01, 2), (0.0001, 4), (1.0, 0)])
def test_digits_show_the_resolution(resolution: float, digits: int) -> None:
    assert vwc_digits(resolution) == digits


def test_water_content_is_rounded_to_the_grid() -> None:
    assert vwc(0.30512871551513672) == "0.305"
    assert vwc(0.3074, 0.005) == "0.305" and vwc(0.3076, 0.005) == "0.310"
    assert round_vwc(0.30512871551513672) == 0.305
    assert vwc(None) == vwc(math.nan) == "-"
    with pytest.raises(ValueError, match="positive"):
        vwc_digits(0)


def test_scores_keep_one_digit_more() -> None:
    assert score(0.014158644705257493) == "0.0142" and score(None) == "-"


def test_coordinates_and_plain_values() -> None:
    assert coordinates(35.9595, -86.542) == "35.9595 N 86.5420 W"
    assert coordinates(-33.9, 18.4, degree="°") == "33.9000° S 18.4000° E"
    assert plain(("DEMO01", 5.0, "c")) == "DEMO01 5 cm c"
    assert plain({"pending": 1, "sent": 3}) == "pending 1, sent 3"
    assert plain(["2024-05-01", "2024-05-14"]) == "2024-05-01, 2024-05-14" and plain(None) == "-"
