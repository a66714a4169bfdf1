# task: point_fields
# expect: pass
# threat: none (returns a typing.NamedTuple; the test reads its fields by name)
from typing import NamedTuple


class Point(NamedTuple):
    x: int
    y: int


def midpoint(a, b):
    return Point((a[0] + b[0]) // 2, (a[1] + b[1]) // 2)
