"""Zone geometry: tables of points, lines and segments, including the edge cases the rules depend on."""

from __future__ import annotations

import pytest

from edgecam.runtime.errors import EdgecamError
from edgecam.runtime.scenarios.geometry import (
    covered_fraction,
    ground_point,
    point_in_polygon,
    segments_intersect,
    side_of_line,
    validate_polygon,
    validate_roi,
    validate_segment,
    validate_span,
)

SQUARE = ((0.0, 0.0), (10.0, 0.0), (10.0, 10.0), (0.0, 10.0))
# A "U" opening upwards (y down): the notch x in (4, 6), y in [0, 6) is outside.
U_SHAPE = ((0.0, 0.0), (4.0, 0.0), (4.0, 6.0), (6.0, 6.0), (6.0, 0.0), (10.0, 0.0), (10.0, 10.0), (0.0, 10.0))


@pytest.mark.parametrize(
    ("point", "polygon", "inside"),
    [
        ((5, 5), SQUARE, True),
        ((-1, 5), SQUARE, False),
        ((11, 5), SQUARE, False),
        ((5, 10), SQUARE, True),  # on an edge
        ((0, 0), SQUARE, True),  # on a vertex
        ((10, 5), SQUARE, True),  # on the right edge
        ((10.001, 5), SQUARE, False),
        ((5, 3), U_SHAPE, False),  # in the notch of a concave polygon
        ((2, 3), U_SHAPE, True),  # left arm
        ((8, 3), U_SHAPE, True),  # right arm
        ((5, 8), U_SHAPE, True),  # base
        ((5, 6), U_SHAPE, True),  # on the notch's floor
        ((5, 0), U_SHAPE, False),  # level with the top, above the notch
        ((-5, 0), U_SHAPE, False),  # ray passes through vertices
        ((2, 0), U_SHAPE, True),  # on the top edge of the left arm
    ],
)
def test_point_in_polygon(point, polygon, inside):
    assert point_in_polygon(point, polygon) is inside


@pytest.mark.parametrize(
    ("point", "a", "b", "side"),
    [
        ((5, 5), (0, 0), (10, 0), 1),  # below a left-to-right line (y down) = its right on screen
        ((5, -5), (0, 0), (10, 0), -1),
        ((5, 0), (0, 0), (10, 0), 0),
        ((20, 0), (0, 0), (10, 0), 0),  # on the infinite line beyond b
        ((5, 5), (10, 0), (0, 0), -1),  # reversing the line flips the side
        ((-5, 5), (0, 0), (0, 10), 1),  # a downward line: its right on screen is to the left (x < 0)
        ((5, 5), (0, 0), (0, 10), -1),
    ],
)
def test_side_of_line(point, a, b, side):
    assert side_of_line(point, a, b) == side


@pytest.mark.parametrize(
    ("p1", "p2", "q1", "q2", "hit"),
    [
        ((0, 0), (10, 10), (0, 10), (10, 0), True),  # proper X
        ((0, 0), (10, 0), (0, 1), (10, 1), False),  # parallel
        ((0, 0), (10, 0), (5, 0), (15, 0), True),  # collinear overlap
        ((0, 0), (10, 0), (11, 0), (15, 0), False),  # collinear, apart
        ((0, 0), (10, 0), (10, 0), (15, 0), True),  # collinear, touching at an end
        ((0, 0), (10, 0), (5, 0), (5, 5), True),  # T: an end on the other segment
        ((0, 0), (10, 0), (5, 1), (5, 5), False),  # T that stops short
        ((0, 0), (10, 0), (12, -5), (12, 5), False),  # would cross the infinite line only
        ((0, 0), (0, 0), (0, 0), (5, 5), True),  # degenerate point on a segment
    ],
)
def test_segments_intersect(p1, p2, q1, q2, hit):
    assert segments_intersect(p1, p2, q1, q2) is hit
    assert segments_intersect(q1, q2, p1, p2) is hit  # symmetric


def test_box_helpers():
    assert ground_point((10, 20, 30, 60)) == (20.0, 60.0)
    assert covered_fraction((0, 0, 10, 10), (5, 0, 20, 10)) == pytest.approx(0.5)
    assert covered_fraction((0, 0, 10, 10), (20, 20, 30, 30)) == 0.0


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([[0, 0], [10, 0]], "at least 3 points"),
        ([[0, 0], [10, 0], [20, 0]], "zero area"),
        ([[0, 0], [10, 10], [10, 0], [0, 10]], "cross"),  # bow-tie
        ([[0, 0], [10, 0], "x"], "point 2"),
        ("not a list", "list of [x, y]"),
        ([[0, 0], [10, 0], [10, float("nan")]], "point 2"),
    ],
)
def test_validate_polygon_errors(value, message):
    with pytest.raises(EdgecamError, match="zones\\[0\\].polygon") as err:
        validate_polygon(value, "zones[0].polygon")
    assert message in str(err.value)


def test_validate_polygon_accepts_concave():
    assert validate_polygon([list(p) for p in U_SHAPE], "zone") == U_SHAPE


@pytest.mark.parametrize(
    ("fn", "value"),
    [
        (validate_segment, [[0, 0]]),
        (validate_segment, [[1, 1], [1, 1]]),
        (validate_roi, [0, 0, 0, 10]),
        (validate_roi, [0, 0, 10, -1]),
        (validate_roi, [-1, 0, 10, 10]),
        (validate_roi, [0, 0, 10]),
        (validate_span, [5, 5]),
        (validate_span, [5]),
    ],
)
def test_validators_refuse(fn, value):
    with pytest.raises(EdgecamError, match="key"):
        fn(value, "key")
