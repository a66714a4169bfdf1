"""Bounded value text: exact repr when it fits, a visible cut when not, cost bounded by the cap."""

import collections
import dataclasses

import pytest

from next_jax.tracing.values import ValueRenderer, is_code_value, is_immutable, shorten

Point = collections.namedtuple("Point", "x y")


@dataclasses.dataclass
class Pair:
    left: object
    right: object = None


class Node:
    def __init__(self, val, nxt=None):
        self.val = val
        self.next = nxt


class Slotted:
    __slots__ = ("a", "b")

    def __init__(self):
        self.a = 1


class CountingRepr:
    calls = 0

    def __repr__(self):
        CountingRepr.calls += 1
        return "C"


class BadRepr:
    def __repr__(self):
        raise ZeroDivisionError("no")


SMALL_VALUES = [
    0, -7, 2 ** 70, 3.25, float("inf"), 1 + 2j, True, None, "it's", 'say "hi"', "tab\tnew\nline",
    b"\x00ab", bytearray(b"xy"), [], [1, [2, [3]]], (), (1,), (1, "a", None), {}, {"a": [1, 2], 3: (4,)},
    set(), {5}, frozenset(), frozenset({1}), range(3), Ellipsis,
    collections.deque([1, 2]), collections.deque([1], maxlen=3), collections.defaultdict(list, {"k": [1]}),
    collections.Counter("abracadabra"), collections.OrderedDict(a=1, b=2), collections.OrderedDict(),
    Point(1, "y"), Pair([1], {"r": 2}), ValueError("bad", 3), KeyError("k"), AssertionError(),
    int, len, [Point(0, 0), {1: Pair(1)}],
]


@pytest.mark.parametrize("value", SMALL_VALUES, ids=lambda v: type(v).__name__)
def test_small_values_render_exactly_as_repr(value):
    assert ValueRenderer(200).render(value) == repr(value)


def test_long_list_is_cut_with_visible_ellipsis_and_bounded_length():
    text = ValueRenderer(40).render(list(range(100_000)))
    assert text.startswith("[0, 1, 2, 3")
    assert text.endswith("...]")
    assert len(text) <= 40 + 10


def test_renderer_only_visits_the_visible_items():
    CountingRepr.calls = 0
    ValueRenderer(50).render([CountingRepr() for _ in range(10_000)])
    assert 0 < CountingRepr.calls <= 50
    CountingRepr.calls = 0
    ValueRenderer(50).render({i: CountingRepr() for i in range(10_000)})
    assert CountingRepr.calls <= 50


def test_long_strings_keep_their_quote_and_mark_the_cut():
    text = ValueRenderer(20).render("x" * 1000)
    assert text == "'" + "x" * 20 + "'..."
    escaped = ValueRenderer(20).render("\n" * 1000)
    assert escaped.endswith("'...") and len(escaped) <= 30


def test_nested_structures_close_their_brackets_when_cut():
    text = ValueRenderer(30).render({"key": [[i] * 5 for i in range(50)]})
    assert text.startswith("{'key': [[0, 0, 0, 0, 0], [1")
    assert text == "{'key': [[0, 0, 0, 0, 0], [1, ...], ...]}"


def test_cycles_and_deep_nesting_terminate():
    a = [1]
    a.append(a)
    assert ValueRenderer(50).render(a) == "[1, [...]]"
    deep = []
    for _ in range(5000):
        deep = [deep]
    assert "..." in ValueRenderer(50).render(deep)


def test_huge_int_is_described_not_converted():
    text = ValueRenderer(50).render(10 ** 20000)
    assert text == "<int with about 20001 digits>"
    assert ValueRenderer(10).render(10 ** 30) == "1000000000..."


def test_objects_without_repr_show_attributes_and_no_address():
    r = ValueRenderer(100)
    assert r.render(Node(1, Node(2))) == "Node(val=1, next=Node(val=2, next=None))"
    assert r.render(Slotted()) == "Slotted(a=1)"
    assert r.render(object()) == "<object object>"
    assert r.render(lambda x: x) == "<function test_objects_without_repr_show_attributes_and_no_address.<locals>.<lambda>>"
    assert " at 0x" not in r.render(iter([1]))
    loop = Node(1)
    loop.next = loop
    assert r.render(loop) == "Node(val=1, next=...)"


def test_failing_repr_is_marked():
    assert ValueRenderer(100).render(BadRepr()) == "<repr failed: ZeroDivisionError>"


def test_immutability_and_code_values():
    assert is_immutable(3) and is_immutable("s") and is_immutable((1, "a")) and is_immutable(frozenset({1}))
    assert not is_immutable([1]) and not is_immutable((1, [2])) and not is_immutable(Node(1))
    assert is_code_value(len) and is_code_value(int) and is_code_value(collections)
    assert not is_code_value(3)


@pytest.mark.parametrize(
    "text,limit,expected",
    [
        ("[1, 2, 3, 4, 5, 6]", 100, "[1, 2, 3, 4, 5, 6]"),
        ("[1, 2, 3, 4, 5, 6]", 10, "[1, 2, 3, ...]"),
        ("{'a': [1, 2], 'b': [3, 4]}", 15, "{'a': [1, 2], ...}"),
        ("'" + "y" * 50 + "'", 12, "'yyyyyyyyyyy'..."),
        ("12345678901234567890", 8, "12345678..."),
        ("['" + "z" * 40 + "', 1]", 20, "['zzzzzzzzzzzzzzzzzz'...]"),
    ],
)
def test_shorten_keeps_text_well_formed(text, limit, expected):
    assert shorten(text, limit) == expected


def test_renderer_rejects_tiny_caps():
    with pytest.raises(ValueError):
        ValueRenderer(3)
