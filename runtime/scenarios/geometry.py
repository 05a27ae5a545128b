"""Pure 2-D geometry for scenario rules, in image pixels (x right, y down).

Conventions (the tests pin them down):
- a point on a polygon's edge or vertex counts as inside, so a foot exactly on a zone border is not "outside";
- `side_of_line(p, a, b)` is +1 when p is on the right of a->b *as seen on screen* (y grows downwards), -1 on the
  left, 0 on the line; crossing from -1 to +1 is "in", from +1 to -1 is "out";
- segments that merely touch (an end on the other segment) or overlap collinearly do intersect.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from edgecam.runtime.errors import EdgecamError

Point = tuple[float, float]
Polygon = tuple[Point, ...]
Box = tuple[float, float, float, float]  # x1, y1, x2, y2

EPS = 1e-9


def cross(o: Point, a: Point, b: Point) -> float:
    """z of (a - o) x (b - o): > 0 when b is clockwise of a around o on screen (y down)."""
    return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])


def side_of_line(p: Point, a: Point, b: Point) -> int:
    """+1 right of the directed line a->b on screen, -1 left, 0 on it (within EPS)."""
    c = cross(a, b, p)
    return 0 if abs(c) <= EPS else (1 if c > 0 else -1)


def on_segment(p: Point, a: Point, b: Point) -> bool:
    """Whether p lies on the closed segment a-b."""
    if abs(cross(a, b, p)) > EPS * max(1.0, math.dist(a, b)):
        return False
    return (
        min(a[0], b[0]) - EPS <= p[0] <= max(a[0], b[0]) + EPS
        and min(a[1], b[1]) - EPS <= p[1] <= max(a[1], b[1]) + EPS
    )


def segments_intersect(p1: Point, p2: Point, q1: Point, q2: Point) -> bool:
    """Whether closed segments p1-p2 and q1-q2 share a point (touching and collinear overlap included)."""
    d1, d2 = side_of_line(p1, q1, q2), side_of_line(p2, q1, q2)
    d3, d4 = side_of_line(q1, p1, p2), side_of_line(q2, p1, p2)
    if d1 * d2 < 0 and d3 * d4 < 0:
        return True
    return (
        (d1 == 0 and on_segment(p1, q1, q2))
        or (d2 == 0 and on_segment(p2, q1, q2))
        or (d3 == 0 and on_segment(q1, p1, p2))
        or (d4 == 0 and on_segment(q2, p1, p2))
    )


def point_in_polygon(p: Point, polygon: Sequence[Point]) -> bool:
    """Even-odd ray casting, with points on the boundary counted as inside; works for concave polygons."""
    n = len(polygon)
    inside = False
    for i in range(n):
        a, b = polygon[i], polygon[(i + 1) % n]
        if on_segment(p, a, b):
            return True
        if (a[1] > p[1]) != (b[1] > p[1]):
            x_at = a[0] + (p[1] - a[1]) * (b[0] - a[0]) / (b[1] - a[1])
            if p[0] < x_at:
                inside = not inside
    return inside


def polygon_area(polygon: Sequence[Point]) -> float:
    """Unsigned shoelace area."""
    n = len(polygon)
    return abs(sum(cross((0.0, 0.0), polygon[i], polygon[(i + 1) % n]) for i in range(n))) / 2.0


def clip_to_box(polygon: Sequence[Point], box: Box) -> list[Point]:
    """The part of a polygon inside an xyxy box (Sutherland-Hodgman; exact for convex boxes, any polygon)."""
    x1, y1, x2, y2 = box
    edges = (  # (inside test, intersection with the edge's line)
        (lambda p: p[0] >= x1, lambda a, b: (x1, a[1] + (b[1] - a[1]) * (x1 - a[0]) / (b[0] - a[0]))),
        (lambda p: p[0] <= x2, lambda a, b: (x2, a[1] + (b[1] - a[1]) * (x2 - a[0]) / (b[0] - a[0]))),
        (lambda p: p[1] >= y1, lambda a, b: (a[0] + (b[0] - a[0]) * (y1 - a[1]) / (b[1] - a[1]), y1)),
        (lambda p: p[1] <= y2, lambda a, b: (a[0] + (b[0] - a[0]) * (y2 - a[1]) / (b[1] - a[1]), y2)),
    )
    out = [(float(x), float(y)) for x, y in polygon]
    for inside, cut in edges:
        points, out = out, []
        for i, cur in enumerate(points):
            prev = points[i - 1]
            if inside(cur):
                if not inside(prev):
                    out.append(cut(prev, cur))
                out.append(cur)
            elif inside(prev):
                out.append(cut(prev, cur))
    return out


def segment_touches_box(a: Point, b: Point, box: Box) -> bool:
    """True when any part of segment a-b lies in the xyxy box (its edges included)."""
    x1, y1, x2, y2 = box
    if any(x1 <= p[0] <= x2 and y1 <= p[1] <= y2 for p in (a, b)):
        return True
    corners = ((x1, y1), (x2, y1), (x2, y2), (x1, y2))
    return any(segments_intersect(a, b, corners[i], corners[(i + 1) % 4]) for i in range(4))


def box_intersection(a: Box, b: Box) -> float:
    """Area shared by two xyxy boxes (0 when apart)."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    return max(0.0, w) * max(0.0, h)


def covered_fraction(region: Box, cover: Box) -> float:
    """Share of `region`'s area that `cover` hides (what "a shopper covers 20 % of the slot" means)."""
    area = (region[2] - region[0]) * (region[3] - region[1])
    return box_intersection(region, cover) / area if area > 0 else 0.0


def box_centre(box: Box) -> Point:
    return ((box[0] + box[2]) / 2.0, (box[1] + box[3]) / 2.0)


def ground_point(box: Box) -> Point:
    """Bottom-centre of a box: where a person or vehicle touches the ground, which is what zones are drawn around."""
    return ((box[0] + box[2]) / 2.0, float(box[3]))


def _fix(where: str, what: str) -> EdgecamError:
    return EdgecamError(
        f"{where}: {what}", fix=f"give {where} as a list of [x, y] pixel pairs, e.g. [[0, 0], [100, 0]]"
    )


def parse_points(value: Any, where: str) -> tuple[Point, ...]:
    """[[x, y], ...] from YAML as float pairs, or an error naming the key."""
    if not isinstance(value, (list, tuple)):
        raise _fix(where, f"expected a list of [x, y] points, got {type(value).__name__}")
    points = []
    for i, pt in enumerate(value):
        if not isinstance(pt, (list, tuple)) or len(pt) != 2 or not all(_number(c) for c in pt):
            raise _fix(where, f"point {i} is {pt!r}, not an [x, y] pair of numbers")
        points.append((float(pt[0]), float(pt[1])))
    return tuple(points)


def validate_polygon(value: Any, where: str) -> Polygon:
    """A simple polygon of >= 3 points with a non-zero area and no crossing edges (a bow-tie is a typo)."""
    poly = parse_points(value, where)
    if len(poly) < 3:
        raise EdgecamError(
            f"{where}: a polygon needs at least 3 points, got {len(poly)}",
            fix="list the zone's corners in order, e.g. [[0, 0], [100, 0], [100, 80]]",
        )
    n = len(poly)
    for i in range(n):
        for j in range(i + 2, n):
            if i == 0 and j == n - 1:
                continue  # adjacent through the closing edge
            if segments_intersect(poly[i], poly[(i + 1) % n], poly[j], poly[(j + 1) % n]):
                raise EdgecamError(
                    f"{where}: edges {i} and {j} cross (self-intersecting polygon)",
                    fix="list the corners in order around the zone",
                )
    if polygon_area(poly) <= EPS:
        raise EdgecamError(f"{where}: the polygon has zero area", fix="use corners that are not all on one line")
    return poly


def validate_segment(value: Any, where: str) -> tuple[Point, Point]:
    """Exactly two distinct points."""
    pts = parse_points(value, where)
    if len(pts) != 2:
        raise EdgecamError(f"{where}: a line needs exactly 2 points, got {len(pts)}", fix="use [[x1, y1], [x2, y2]]")
    if math.dist(pts[0], pts[1]) <= EPS:
        raise EdgecamError(f"{where}: both points are the same", fix="use two different points")
    return pts[0], pts[1]


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def validate_roi(value: Any, where: str) -> tuple[int, int, int, int]:
    """[x, y, w, h] in whole pixels with a positive size (a zero-width slot can never hold a product)."""
    fix = "use [x, y, w, h] in pixels with x, y >= 0 and w, h > 0"
    if not isinstance(value, (list, tuple)) or len(value) != 4 or not all(_number(v) for v in value):
        raise EdgecamError(f"{where}: got {value!r}", fix=fix)
    x, y, w, h = (int(round(v)) for v in value)
    if w <= 0 or h <= 0 or x < 0 or y < 0:
        raise EdgecamError(f"{where}: non-positive size or negative origin in {list(value)}", fix=fix)
    return (x, y, w, h)


def validate_span(value: Any, where: str) -> tuple[float, float]:
    """[start, end] with start < end."""
    if not isinstance(value, (list, tuple)) or len(value) != 2 or not all(_number(v) for v in value):
        raise EdgecamError(f"{where}: got {value!r}", fix="use [start, end] in pixels with start < end")
    if value[0] >= value[1]:
        raise EdgecamError(
            f"{where}: start {value[0]} is not below end {value[1]}", fix="use [start, end], start < end"
        )
    return float(value[0]), float(value[1])
