"""Plain data: exact builtin types out, strict rebuilding of untrusted bytes in."""

import pytest

from next_jax.execution import plain
from next_jax.execution.harness import to_wire as lenient_to_wire


VALUES = [None, False, 3, -(2 ** 70), 2 ** 20000, 0.1, float("-inf"), -0.0, 1j, "é\udcff", b"",
          [], (), {}, set(), frozenset(), [(1, {"k": {2, 3}}), frozenset({(4,)})]]


@pytest.mark.parametrize("value", VALUES, ids=lambda v: type(v).__name__)
def test_round_trip_keeps_exact_types(value):
    back = plain.loads(plain.dumps(value))
    assert back == value or (back != back and value != value)
    assert type(back) is type(value)


def test_nan_round_trips():
    back = plain.loads(plain.dumps(float("nan")))
    assert back != back


@pytest.mark.parametrize("value", [object(), type("I", (int,), {})(3), [1, object()], {1: print},
                                   range(3), Ellipsis])
def test_non_plain_values_are_refused(value):
    with pytest.raises(plain.PlainDataError):
        plain.dumps(value)


@pytest.mark.parametrize("data", [b"not json", b"[1, 2]", b'["l", ["x"]]', b'["d", 1]',
                                  b'["s", ["l", 1]]', b'{"a": 1}', b'["b", "zz"]',
                                  b'["c", "1", 2]', b"[" * 100000, b'["i", "nothex"]'])
def test_malformed_wire_is_refused(data):
    with pytest.raises(plain.PlainDataError):
        plain.loads(data)


def test_too_deep_is_refused():
    deep = []
    for _ in range(plain.MAX_DEPTH + 5):
        deep = [deep]
    with pytest.raises(plain.PlainDataError):
        plain.dumps(deep)


def test_lenient_encoding_reads_subclasses_as_their_base_data():
    from collections import Counter, OrderedDict, namedtuple

    class Liar(int):
        def __eq__(self, other):
            return True

        __hash__ = int.__hash__

    point = namedtuple("Point", "x y")(1, 2)
    for value, expected in [(Liar(0), 0), (point, (1, 2)), (Counter("aab"), {"a": 2, "b": 1}),
                            (OrderedDict(z=1), {"z": 1}), ([Liar(5)], [5])]:
        back = plain.from_wire(lenient_to_wire(value))
        assert back == expected and type(back) is type(expected)
    with pytest.raises(plain.PlainDataError):
        lenient_to_wire(object())
