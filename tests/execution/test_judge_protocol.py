"""The judge's side of the call protocol, against a candidate server in a thread (no sandbox).

What crosses from the candidate and how the judge rebuilds it: plain values, changed arguments,
builtin exceptions, iterables, callables, opaque objects; and faults for what is not allowed.
"""

import marshal
import os
import threading

from collections import Counter, OrderedDict, defaultdict, deque

import pytest

from next_jax.execution import channel, judge, plain
from next_jax.execution.candidate import Server
from next_jax.execution.judge import Candidate, CandidateFault, Opaque, Proxy

PROGRAM = '''
from collections import Counter
from fractions import Fraction


class Box:
    def __init__(self, n):
        self.n = n

    def __eq__(self, other):
        return True

    def __str__(self):
        return f"Box({self.n})"

    def __len__(self):
        return self.n

    def __iter__(self):
        return iter(range(self.n))

    def __getitem__(self, i):
        return -i

    def __contains__(self, x):
        return True


def add(a, b):
    return a + b


def gen(n):
    yield from range(n)


def endless():
    i = 0
    while True:
        yield i
        i += 1


def broken_gen():
    yield 1
    raise KeyError("k")


def views(d):
    return d.keys(), d.values(), d.items()


def lazy(xs):
    return map(lambda x: x * 2, xs), filter(lambda x: x % 2, xs), range(1, 10, 3)


def sort_it(xs, extra=None):
    xs.sort()
    if extra is not None:
        extra["seen"] = True


def raise_(kind):
    if kind == "value":
        raise ValueError("bad value")
    if kind == "custom":
        class Mine(KeyError):
            pass
        raise Mine("mine")
    if kind == "stop":
        raise StopIteration
    if kind == "exit":
        raise SystemExit(0)
    if kind == "assert":
        assert False, "own"


def make(n):
    return Box(n)


def size(box):
    return box.n


def adder(n):
    return lambda x: x + n


def half(n):
    return Fraction(n, 2)


def counts(s):
    return Counter(s)


def kinds(*args, **kwargs):
    return [type(a).__name__ for a in args] + sorted(f"{k}:{type(v).__name__}" for k, v in kwargs.items())


def same(a, b):
    return a is b


def abs(x):
    return 0


def ident(x):
    return x


def get_add():
    return add


def rows(grid, d):
    for row in grid:
        row.sort()
    grid.sort()
    d["k"][0].append(len(grid))
    grid.append(grid)
    return grid


def relink(node):
    node.child.value = 9
    node.tags = [len(node.tags)]
    return node.child.other is node


def shadow(node):
    node.total = lambda: 100


def sort_by(xs, key, swallow=False):
    try:
        return sorted(xs, key=key)
    except AssertionError:
        if swallow:
            return [3, 2, 1]
        raise


def apply(f, *args):
    return f(*args)


def touch_all(box):
    s, b, od, c, dq = box["set"], box["bytes"], box["od"], box["counter"], box["deque"]
    s.add(9)
    b.extend(b"!")
    od.move_to_end("a")
    c["x"] += 2
    dq.appendleft(0)


def half_done(xs, ys):
    xs.append(1)
    ys[0].append(2)
    raise ValueError("stopped")


def ordered():
    from collections import OrderedDict, deque
    return OrderedDict([("b", 1), ("a", 2)]), Counter(x=0), deque([1], 3)


def defaults():
    from collections import defaultdict
    return defaultdict(list, a=[1]), defaultdict(lambda: "?"), defaultdict(None)


Box.KIND = "box"
'''


@pytest.fixture
def cand():
    req_r, req_w = os.pipe()
    rep_r, rep_w = os.pipe()
    server = threading.Thread(target=Server().serve, args=(req_r, rep_w), daemon=True)
    server.start()
    c = Candidate(request_fd=req_w, reply_fd=rep_r)
    names = ["add", "gen", "endless", "broken_gen", "views", "lazy", "sort_it", "raise_", "make",
             "size", "adder", "half", "counts", "Box", "Counter", "kinds", "same", "missing",
             "ident", "get_add", "rows", "relink", "ordered", "shadow", "defaults", "half_done",
             "sort_by", "apply", "touch_all"]
    c.found = c.load([marshal.dumps(compile(PROGRAM, "<fix>", "exec"))], names)
    yield c
    os.close(req_w)
    server.join(5)
    for fd in (req_r, rep_r, rep_w):
        os.close(fd)


def test_globals_come_back_as_proxies(cand):
    f = cand.found
    assert "missing" not in f
    assert isinstance(f["add"], Proxy) and f["add"](2, 3) == 5 and f["add"]("a", "b") == "ab"


def test_iterables_are_rebuilt_as_the_same_kind(cand):
    f = cand.found
    g = f["gen"](3)
    assert type(g).__name__ == "generator" and list(g) == [0, 1, 2]
    keys, values, items = f["views"]({"b": 1, "a": 2})
    assert type(keys) is type({}.keys()) and sorted(keys) == ["a", "b"]
    assert type(values) is type({}.values()) and sorted(values) == [1, 2]
    assert type(items) is type({}.items()) and sorted(items) == [("a", 2), ("b", 1)]
    doubled, odd, r = f["lazy"]([1, 2, 3])
    assert type(doubled) is map and list(doubled) == [2, 4, 6]
    assert type(odd) is filter and list(odd) == [1, 3]
    assert r == range(1, 10, 3)
    assert f["counts"]("aab") == {"a": 2, "b": 1}


def test_endless_and_failing_generators(cand):
    endless = cand.found["endless"]()
    assert [next(endless) for _ in range(5)] == [0, 1, 2, 3, 4]
    with pytest.raises(CandidateFault, match="more than"):
        list(endless)
    broken = cand.found["broken_gen"]()
    assert next(broken) == 1
    with pytest.raises(KeyError):
        next(broken)


def test_changed_arguments_are_updated_in_place(cand):
    xs, extra = [3, 1, 2], {}
    assert cand.found["sort_it"](xs, extra=extra) is None
    assert xs == [1, 2, 3] and extra == {"seen": True}


@pytest.mark.parametrize("kind,exc", [("value", ValueError), ("custom", KeyError),
                                      ("stop", RuntimeError), ("exit", CandidateFault),
                                      ("assert", AssertionError)])
def test_exceptions_are_raised_as_builtin_types(cand, kind, exc):
    with pytest.raises(exc) as info:
        cand.found["raise_"](kind)
    if kind == "assert":
        assert info.value.from_candidate  # the program's own assert: an error, not a fail


def test_comparing_an_object_of_the_programs_is_a_fault(cand):
    box = cand.found["make"](4)
    assert isinstance(box, Opaque) and box is not None and type(box).__name__ == "Box"
    assert cand.found["size"](box) == 4  # passed back by handle
    with pytest.raises(CandidateFault, match="comparison"):
        box == box  # noqa: B015 (its __eq__ is always true: it would judge itself)
    assert "comparison" in cand.fault
    with pytest.raises(CandidateFault):  # every later call faults too
        cand.found["add"](1, 2)


def test_the_same_object_crosses_as_the_same_proxy_or_marker(cand):
    f = cand.found
    assert f["get_add"]() is f["get_add"]() is f["add"] and f["add"] == f["add"]
    assert len({f["get_add"](), f["add"], f["adder"](1)}) == 2
    box = f["make"](1)
    assert f["ident"](box) is box and f["make"](1) is not box


def test_attributes_of_the_programs_objects_are_read_by_the_candidate(cand):
    f = cand.found
    box = f["make"](4)
    assert box.n == 4 and f["Box"].KIND == "box" and box.KIND == "box"
    with pytest.raises(AttributeError):
        box.nothing  # noqa: B018 (the point of the test)
    assert not cand.fault  # a missing attribute is the test's AttributeError, as in Python
    with pytest.raises(CandidateFault, match="comparison"):
        box == 4  # noqa: B015 (reading is plain data; comparing would be the candidate's __eq__)


def test_changed_parts_are_updated_in_place_at_every_depth(cand):
    grid, d = [[3, 1], [2, 0]], {"k": [[]]}
    first, inner = grid[0], d["k"][0]
    out = cand.found["rows"](grid, d)
    assert out is grid  # the result is the argument itself
    assert grid[1] is first and first == [1, 3] and grid[0] == [0, 2]  # moved, not replaced
    assert grid[2] is grid and inner == [2] and d["k"][0] is inner


def test_a_function_of_the_tests_is_called_back_in_the_judge(cand):
    f = cand.found
    seen = []

    def key(x):
        seen.append(x)
        return -x

    assert f["sort_by"]([1, 3, 2], key) == [3, 2, 1] and sorted(seen) == [1, 2, 3]
    assert f["sort_by"](["b", "A"], str.lower) == ["A", "b"]  # a method of a builtin type
    assert f["apply"](len, [1, 2]) == 2 and f["apply"](isinstance, 1, int) is True  # builtins
    # The test's function calls the program again while the program waits for it.
    assert f["apply"](lambda n: f["add"](n, 1), 4) == 5
    with pytest.raises(ZeroDivisionError):
        f["apply"](lambda: 1 / 0)
    assert not cand.fault


def test_the_tests_own_assert_inside_a_callback_fails_the_test_even_if_swallowed(cand):
    def key(x):
        assert x != 2, "the program passed 2"
        return x

    with pytest.raises(AssertionError, match="passed 2") as info:
        cand.found["sort_by"]([1, 2, 3], key, swallow=True)
    assert not getattr(info.value, "from_candidate", False)  # the test's own: a fail
    assert cand.found["add"](1, 1) == 2 and not cand.fault  # and the channel is in step


def test_every_kind_of_mutable_part_is_updated_in_place(cand):
    box = {"set": {1}, "bytes": bytearray(b"hi"), "od": OrderedDict(a=1, b=2),
           "counter": Counter(x=1), "deque": deque([1], 2)}
    parts = dict(box)
    cand.found["touch_all"](box)
    assert all(box[k] is parts[k] for k in box)  # each the test's own object, changed
    assert box["set"] == {1, 9} and box["bytes"] == bytearray(b"hi!")
    assert list(box["od"]) == ["b", "a"] and box["counter"] == Counter(x=3)
    assert box["deque"] == deque([0, 1]) and box["deque"].maxlen == 2


def test_a_call_that_raises_still_changes_its_arguments(cand):
    xs, ys = [], [[]]
    inner = ys[0]
    with pytest.raises(ValueError, match="stopped"):
        cand.found["half_done"](xs, ys)
    assert xs == [1] and inner == [2] and ys[0] is inner


def test_objects_of_the_tests_classes_cross_by_value_and_come_back_updated(cand):
    ns = {"__name__": judge.TEST_MODULE}
    exec("class Node:\n    def __init__(self, tags):\n        self.tags = tags\n", ns)
    a, b = ns["Node"]([1, 2]), ns["Node"]([])
    a.child, b.other = b, a  # a cycle
    assert cand.found["relink"](a) is True  # the cycle arrived as one
    assert b.value == 9 and a.tags == [2] and a.child is b and b.other is a
    assert cand.found["kinds"](a) == ["Node"]


def test_a_changed_object_cannot_bring_back_a_method_over_its_classs(cand):
    ns = {"__name__": judge.TEST_MODULE}
    exec("class Tree:\n    def total(self):\n        return 1\n", ns)
    with pytest.raises(CandidateFault, match="over its class's method"):
        cand.found["shadow"](ns["Tree"]())


def test_what_python_asks_an_object_is_asked_of_the_candidate(cand):
    box = cand.found["make"](3)
    assert str(box) == f"{box}" == "Box(3)" and len(box) == 3 and list(box) == [0, 1, 2]
    assert box[2] == -2 and bool(box) and "Box" in repr(box)
    assert isinstance(box, cand.found["Box"]) and not isinstance(3, cand.found["Box"])
    assert not cand.fault
    with pytest.raises(CandidateFault, match="`in`"):
        5 in box  # noqa: B015 (an object that contains everything would judge itself)


def test_ordered_counted_and_double_ended_results_keep_their_type(cand):
    od, counter, dq = cand.found["ordered"]()
    assert type(od) is OrderedDict and list(od) == ["b", "a"]
    assert od != OrderedDict([("a", 2), ("b", 1)])  # order compared, as in Python
    assert type(counter) is Counter and counter == Counter()  # a zero count is no count
    assert type(dq) is deque and dq.maxlen == 3 and dq != [1]


def test_a_defaultdict_answers_a_missing_key_with_its_factory(cand):
    lists, asks, plain_one = cand.found["defaults"]()
    assert type(lists) is defaultdict and lists == {"a": [1]} and lists["b"] == []
    assert asks["k"] == "?" and isinstance(asks.default_factory, Proxy)  # called in the candidate
    with pytest.raises(KeyError):
        plain_one["k"]


def test_functions_and_classes_cross_as_proxies(cand):
    inc = cand.found["adder"](1)
    assert isinstance(inc, Proxy) and [inc(i) for i in range(3)] == [1, 2, 3]
    assert type(cand.found["Box"](1)).__name__ == "Box"
    assert cand.found["half"](3) * 2 == 3


def test_judge_side_values_that_cannot_cross(cand):
    with pytest.raises(TypeError, match="cannot pass"):
        cand.found["add"](object(), 1)
    with pytest.raises(TypeError, match="cannot pass"):
        cand.found["apply"](lambda: object())  # its result cannot cross: raised in the program
    assert not cand.fault  # the test's own mistake, not the candidate's


def _fake_candidate(reply: bytes):
    """A judge end whose candidate answers every request with ``reply`` (raw frame bytes)."""
    req_r, req_w = os.pipe()
    rep_r, rep_w = os.pipe()

    def serve():
        while channel.read_frame(req_r) is not None:
            os.write(rep_w, reply)
        os.close(rep_w)

    threading.Thread(target=serve, daemon=True).start()
    return Candidate(request_fd=req_w, reply_fd=rep_r, max_reply_bytes=1 << 20)


@pytest.mark.parametrize("reply", [b'["t","ok",["@",1],null]', b'["t","ok",["@",0,"d"],null]',
                                   b'["t","ok",1,["@",0,"l",["@",7]]]', b'["t","ok",["@",0,5],null]'])
def test_forged_part_numbers_are_faults(reply):
    cand = _fake_candidate(channel.HEADER.pack(len(reply), 0) + reply)
    with pytest.raises(CandidateFault, match="not plain data|another type"):
        cand.call("f", ([1],), {})


@pytest.mark.parametrize("reply,why", [
    (channel.HEADER.pack(60 << 20, 0) + b"[", "over"),
    (channel.HEADER.pack(12, 0) + b'{"t": "ok"} ', "not plain data"),
    (channel.HEADER.pack(9, 0) + b'["t","ok"', "not plain data"),
    (channel.HEADER.pack(23, 0) + b'["t","raise","nope",""]', "unknown exception"),
    (channel.HEADER.pack(20, 0) + b'["t","ok",["o",1],1]', "not plain data"),
])
def test_malformed_replies_are_faults(reply, why):
    cand = _fake_candidate(reply)
    with pytest.raises(CandidateFault, match=why):
        cand.call("f", (), {})


def test_strict_eq():
    from collections import namedtuple
    assert judge.strict_eq([1, (2.0,)], [1, (2.0,)])
    assert not judge.strict_eq(1, 1.0) and not judge.strict_eq([True], [1])
    assert not judge.strict_eq(OrderedDict(a=1, b=2), OrderedDict(b=2, a=1))
    assert not judge.strict_eq(deque([1]), deque([1.0])) and not judge.strict_eq(deque([1]), [1])
    assert judge.strict_eq(namedtuple("P", "x")(1), namedtuple("P", "x")(1))  # two classes
    assert not judge.strict_eq(namedtuple("P", "x")(1), namedtuple("Q", "x")(1))


def _code(source, name="<x>"):
    return marshal.dumps(compile(source, name, "exec"))


def _payload(tests, names=("add", "raise_"), trusted="", setup=""):
    return {"program": [_code(PROGRAM, "<fix>")],
            "tests": [_code(t, f"<test {i}>") for i, t in enumerate(tests)],
            "names": list(names), "timeout": 5.0,
            "trusted": [_code(trusted)] if trusted else [], "setup": [_code(setup)] if setup else []}


TRUSTED = "def helper(x):\n    return 2 * x\n\n\ndef add(a, b):\n    return 0\n\n\nMISSING = 1\n"


@pytest.mark.parametrize("names,test,outcome", [
    (["add"], "assert add(helper(1), 1) == 3", "pass"),  # the candidate's add, the task's helper
    (["add"], "assert abs(-2) == 2", "pass"),  # the program's own abs() is not the test's
    (["add"], "assert ident(1) == 1", "error"),  # nor any other of its globals: NameError
    (["MISSING"], "MISSING", "error"),  # the program lacks the entry: the task's is removed
    (["add"], "assert add(1, 2) == Y", "pass"),  # setup code runs in the judge, after the entry
])
def test_the_tests_namespace_comes_from_trusted_sources(cand, names, test, outcome):
    reports = judge.run_tests(_payload([test], names, TRUSTED, "Y = add(1, 2)\n"), cand)
    assert reports[1][:3] == ("t", 0, outcome), reports


def test_the_strict_equality_is_under_a_name_no_source_can_bind():
    assert not judge.STRICT_EQ.isidentifier()


@pytest.mark.parametrize("first,outcome", [
    ("assert add(1, 2) == 4", "fail"),
    ("raise_('value')", "error"),
])
def test_the_first_test_that_does_not_pass_ends_the_run(cand, first, outcome):
    # The later tests would pass, or call the candidate: neither happens once one did not pass.
    reports = judge.run_tests(_payload(
        ["assert add(1, 2) == 3", first, "assert add(2, 2) == 4", "add(0, 0)"]), cand)
    assert [r[:3] for r in reports] == [("p", "ok", ""), ("t", 0, "pass"), ("t", 1, outcome)]
    assert cand.last in (3, judge._NOTHING)  # no call after the failing test's own
    assert cand.found["add"](7, 8) == 15 and cand.last == 15  # and the channel is in step


def _recording_candidate(kinds_seen: list):
    """A judge end whose candidate records each request's frame kind and answers None."""
    req_r, req_w = os.pipe()
    rep_r, rep_w = os.pipe()
    reply = b'["t","ok",null,null]'

    def serve():
        while (frame := channel.read_frame(req_r)) is not None:
            kinds_seen.append(frame[0])
            channel.write_frame(rep_w, 0, reply)
        os.close(rep_w)

    threading.Thread(target=serve, daemon=True).start()
    return Candidate(request_fd=req_w, reply_fd=rep_r)


def test_requests_of_exact_builtin_values_go_as_marshal_and_others_as_plain_data():
    seen: list = []
    c = _recording_candidate(seen)
    c.call("f", (1, 2.5, "s", [1, (2, {3: b"x"})], {4}, frozenset(), None, 2 ** 5000, 1j), {"k": [1]})
    c.call(Proxy(c, 7, "g"), (1,), {})  # a proxy callee goes by its handle number
    c.call("f", (bytearray(b"x"),), {})  # marshal would turn it into bytes
    c.call("f", ([range(3)],), {})  # ranges and handles need plain data's tags
    c.call("f", (Proxy(c, 7, "g"),), {})
    deep = []
    for _ in range(plain.MAX_DEPTH + 5):
        deep = [deep]
    with pytest.raises(TypeError, match="cannot pass"):  # too deep: plain data's refusal
        c.call("f", (deep,), {})
    assert seen == [channel.KIND_TRUSTED] * 2 + [0] * 3


def test_arguments_arrive_with_their_exact_types_either_way(cand):
    f = cand.found
    assert f["kinds"](1, 2.5, True, None, "s", b"b", bytearray(b"y"), (1,), [1], {1}, frozenset(),
                      {1: 2}, 1j, 2 ** 100, range(2), f["add"], k=bytearray(), j=[()]) == [
        "int", "float", "bool", "NoneType", "str", "bytes", "bytearray", "tuple", "list", "set",
        "frozenset", "dict", "complex", "int", "range", "function", "j:list", "k:bytearray"]
    shared = [1]
    assert f["same"](shared, shared) is False  # no aliasing across the channel, on either path
    assert f["same"](shared, [bytearray()]) is False
