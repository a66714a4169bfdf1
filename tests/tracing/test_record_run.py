"""The recorder and renderer on each Python construct a trace must handle (in-process)."""

import json
import textwrap

import pytest

from next_jax.tracing.config import TraceConfig
from next_jax.tracing.record_run import record
from next_jax.tracing.render import render_trace


def trace(program: str, test: str, setup: str = "", **config) -> str:
    cfg = TraceConfig(**config)
    program = textwrap.dedent(program).lstrip("\n")
    return render_trace(program, test, record(program, test, setup, cfg), cfg)


def check(program: str, test: str, expected: str, **config):
    assert trace(program, test, **config) == textwrap.dedent(expected).strip("\n")


def test_nested_calls_and_recursion_share_one_counter():
    check(
        """
        def fact(n):
            if n <= 1:
                return 1
            r = n * fact(n - 1)
            return r

        def f(x):
            y = fact(x)
            return y + 1
        """,
        "assert f(3) == 7",
        """
        def fact(n):  # (1) n=3; (2) n=2; (3) n=1;
            if n <= 1:
                return 1  # (4) __return__=1;
            r = n * fact(n - 1)  # (5) r=2; (7) r=6;
            return r  # (6) __return__=2; (8) __return__=6;

        def f(x):  # (0) x=3;
            y = fact(x)  # (9) y=6;
            return y + 1  # (10) __return__=7

        assert f(3) == 7
        """,
    )


def test_closures_nonlocal_comprehensions_and_lambdas():
    check(
        """
        def make():
            count = 0
            def inc(k):
                nonlocal count
                count += k
                return count
            inc(2)
            sq = [v * v for v in range(3)]
            key = sorted([3, 1], key=lambda t: -t)
            return count, sq, key
        """,
        "make()",
        """
        def make():
            count = 0  # (0) count=0;
            def inc(k):  # (1) k=2;
                nonlocal count
                count += k  # (2) count=2;
                return count  # (3) __return__=2;
            inc(2)  # (4) count=2;
            sq = [v * v for v in range(3)]  # (5) sq=[0, 1, 4];
            key = sorted([3, 1], key=lambda t: -t)  # (6) t=3; (7) __return__=-3; ...; (10) key=[3, 1];
            return count, sq, key  # (11) __return__=(2, [0, 1, 4], [3, 1])

        make()
        """,
    )


def test_generators_show_yields_and_the_resumed_value():
    check(
        """
        def gen(n):
            for i in range(n):
                got = yield i * 2
            return 'done'

        def use():
            total = sum(gen(2))
            return total
        """,
        "use()",
        """
        def gen(n):  # (0) n=2;
            for i in range(n):  # (1) i=0; (4) i=1;
                got = yield i * 2  # (2) __yield__=0; (3) got=None; (5) __yield__=2;
            return 'done'  # (6) __return__='done';

        def use():
            total = sum(gen(2))  # (7) total=2;
            return total  # (8) __return__=2

        use()
        """,
    )


def test_methods_classes_globals_try_finally_and_with():
    check(
        """
        import contextlib
        COUNT = 0
        class Box:
            kind = 'box'
            def __init__(self, v):
                self.items = [v]
            def add(self, x):
                self.items.append(x)

        def go():
            global COUNT
            b = Box(1)
            b.add(5)
            COUNT += 1
            try:
                z = 1 / 0
            except ZeroDivisionError as e:
                err = str(e)
            finally:
                done = True
            with contextlib.suppress(KeyError):
                q = {}['x']
            return err
        """,
        "go()",
        """
        import contextlib
        COUNT = 0  # (0) COUNT=0;
        class Box:
            kind = 'box'  # (1) kind='box';
            def __init__(self, v):  # (2) self=Box(); v=1;
                self.items = [v]  # (3) self=Box(items=[1]); (4) __return__=None;
            def add(self, x):  # (6) self=Box(items=[1]); x=5;
                self.items.append(x)  # (7) self=Box(items=[1, 5]); (8) __return__=None;

        def go():
            global COUNT
            b = Box(1)  # (5) b=Box(items=[1]);
            b.add(5)  # (9) b=Box(items=[1, 5]);
            COUNT += 1  # (10) COUNT=1;
            try:
                z = 1 / 0  # (11) __exception__ = ZeroDivisionError('division by zero');
            except ZeroDivisionError as e:  # (12) e=ZeroDivisionError('division by zero');
                err = str(e)  # (13) err='division by zero';
            finally:
                done = True  # (14) done=True;
            with contextlib.suppress(KeyError):
                q = {}['x']  # (15) __exception__ = KeyError('x');
            return err  # (16) __return__='division by zero'

        go()
        """,
    )


def test_exceptions_are_shown_on_every_traced_frame_they_leave_and_the_test_line():
    program = """
    def g(d):
        d.append(1)
        return d[5]
    def f(d):
        return g(d)
    """
    check(
        program,
        "assert f([]) == 1",
        """
        def g(d):  # (1) d=[];
            d.append(1)  # (2) d=[1];
            return d[5]  # (3) __exception__ = IndexError('list index out of range');
        def f(d):  # (0) d=[];
            return g(d)  # (4) d=[1]; (5) __exception__ = IndexError('list index out of range');

        assert f([]) == 1  # (6) __exception__ = IndexError('list index out of range')
        """,
    )
    data = record(textwrap.dedent(program).lstrip("\n"), "assert f([]) == 1")
    assert data["outcome"] == "error" and data["exception"] == "IndexError('list index out of range')"
    failing = record(textwrap.dedent(program).replace("d[5]", "d[0]"), "assert f([]) == 2")
    assert failing["outcome"] == "fail" and failing["returns"] == ["1"]


def test_in_place_mutation_through_calls_and_library_code():
    check(
        """
        import heapq
        def f(xs):
            h = []
            for x in xs:
                heapq.heappush(h, -x)
            xs.sort()
            return h
        """,
        "f([2, 1])",
        """
        import heapq
        def f(xs):  # (0) xs=[2, 1];
            h = []  # (1) h=[];
            for x in xs:  # (2) x=2; (4) x=1;
                heapq.heappush(h, -x)  # (3) h=[-2]; (5) h=[-2, -1];
            xs.sort()  # (6) xs=[1, 2];
            return h  # (7) __return__=[-2, -1]

        f([2, 1])
        """,
    )


def test_only_changed_values_get_steps():
    text = trace(
        """
        def f(n):
            a = 1
            a = 1
            b = [a]
            b = [1]
            c = n
            return c
        """,
        "f(5)",
    )
    assert "(1) a=1;" in text and "(2) b=[1];" in text and "(3) c=5;" in text
    assert "(4) __return__=5" in text


def test_library_frames_are_never_traced():
    data = record("import json\ndef f(x):\n    return json.dumps(x)\n", "f({'a': [1]})")
    assert [line[0:2] for line in data["lines"]] == [[0, 2], [0, 3]]
    assert data["returns"] == ["'{\"a\": [1]}'"]


def test_endless_loop_ends_with_a_visible_timeout_mark():
    data = record("def f():\n    i = 0\n    while True:\n        i += 1\n", "f()",
                  config=TraceConfig(max_events=500, timeout_s=None))
    assert data["outcome"] == "timeout"
    text = render_trace("def f():\n    i = 0\n    while True:\n        i += 1\n", "f()", data)
    assert "__timeout__ = 'stopped after 500 trace events'" in text
    assert "...;" in text


def test_endless_loop_without_state_changes_is_stopped_too():
    data = record("def f():\n    while True:\n        pass\n", "f()", config=TraceConfig(max_events=300, timeout_s=None))
    assert data["outcome"] == "timeout" and data["stopped"]


def test_wall_clock_cap_stops_the_run():
    data = record("def f():\n    i = 0\n    while True:\n        i += 1\n", "f()",
                  config=TraceConfig(max_seconds=0.2, timeout_s=None))
    assert data["outcome"] == "timeout" and "0.2 s" in data["stopped"]


def test_a_program_that_catches_everything_still_stops():
    program = "def f():\n    n = 0\n    while n < 10 ** 9:\n        try:\n            n += 1\n        except Exception:\n            pass\n    return n\n"
    data = record(program, "f()", config=TraceConfig(max_events=1000, timeout_s=None))
    assert data["outcome"] == "timeout"
    # Catching BaseException too: both the untraced run under the test timeout and the traced run
    # after its cap are stopped again until the exception leaves the loop.
    data = record(program.replace("except Exception", "except BaseException"), "f()",
                  config=TraceConfig(timeout_s=0.3, timeout_events=1000))
    assert data["outcome"] == "timeout" and data["stopped"] == "stopped after 1000 trace events"


def test_a_program_that_outlives_the_test_timeout_is_traced_only_briefly():
    program = "def f():\n    i = 0\n    while True:\n        i += 1\n"
    config = TraceConfig(timeout_s=0.3, timeout_events=600)
    data = record(program, "f()", config=config)
    assert data["outcome"] == "timeout" and data["stopped"] == "stopped after 600 trace events"
    # Same trace as the event cap alone gives: the untraced run changes how long, not what.
    alone = record(program, "f()", config=TraceConfig(max_events=600, timeout_s=None))
    assert render_trace(program, "f()", data) == render_trace(program, "f()", alone)
    # A program that ends in time is traced in full, with the same result as without the untraced run.
    slow = "def g(n):\n    s = 0\n    for i in range(n):\n        s += i\n    return s\n"
    full = record(slow, "assert g(5000) == 12497500", config=config)
    assert full["outcome"] == "pass" and full["stopped"] is None
    assert full == record(slow, "assert g(5000) == 12497500", config=TraceConfig(timeout_s=None))


def test_program_output_never_reaches_the_trace(capsys):
    program = "import sys\ndef f():\n    print('LEAK')\n    sys.stderr.write('LEAK2')\n    return 1\n"
    data = record(program, "f()")
    out = capsys.readouterr()
    assert "LEAK" not in out.out + out.err
    assert "LEAK" not in json.dumps(data)
    assert data["stdout_chars"] == len("LEAK\n") + len("LEAK2")


def test_randomness_is_seeded_so_traces_repeat():
    program = "import random\ndef f():\n    x = random.random()\n    return [random.randint(0, 9) for _ in range(5)]\n"
    first = render_trace(program, "f()", record(program, "f()"))
    assert first == render_trace(program, "f()", record(program, "f()"))
    assert first != render_trace(program, "f()", record(program, "f()", config=TraceConfig(seed=1)))


def test_values_are_capped_with_a_visible_ellipsis():
    text = trace("def f(n):\n    xs = list(range(n))\n    return len(xs)\n", "f(10000)", max_value_chars=30)
    assert "xs=[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, ...]" in text


def test_multiline_strings_and_continuations_keep_comments_outside_strings():
    program = 'def f():\n    s = """a\nb"""\n    t = 1 + \\\n        2\n    return s, t\n'
    text = render_trace(program, "f()", record(program, "f()"))
    lines = text.split("\n")
    assert lines[2] == 'b"""  # (0) s=\'a\\nb\';'
    assert lines[3] == "    t = 1 + \\"
    assert lines[4] == "        2  # (1) t=3;"


def test_crlf_sources_and_tabs():
    program = "def f(x):\r\n\ty = x + 1\r\n\treturn y\r\n"
    text = render_trace(program, "f(1)", record(program, "f(1)"))
    assert text.split("\n")[1] == "\ty = x + 1  # (1) y=2;"


def test_syntax_errors_are_marked_on_their_line():
    data = record("def f(:\n    pass\n", "f()")
    assert data["outcome"] == "error"
    assert render_trace("def f(:\n    pass\n", "f()", data).startswith(
        "def f(:  # (0) __exception__ = SyntaxError('invalid syntax')")
    test_error = record("def f():\n    pass\n", "assert f(")
    assert test_error["outcome"] == "error" and test_error["lines"][0][0] == 1


def test_main_guard_stays_off_and_setup_is_untraced():
    program = "def f(x):\n    return x * 2\nif __name__ == '__main__':\n    input()\n"
    data = record(program, "assert f(K) == 6", setup_code="K = 3")
    assert data["outcome"] == "pass"
    assert render_trace(program, "assert f(K) == 6", data).split("\n")[0] == "def f(x):  # (0) x=3;"


def test_replacing_the_trace_function_is_marked():
    program = "import sys\ndef f():\n    sys.settrace(None)\n    y = 2\n    return y\n"
    data = record(program, "f()")
    assert data["marks"] and "replaced the trace function" in data["marks"][0]
    assert "__untraced__ = " in render_trace(program, "f()", data)


def test_threads_are_marked_not_traced():
    program = (
        "import threading\n"
        "def work(out):\n    out.append(1)\n"
        "def f():\n    out = []\n    t = threading.Thread(target=work, args=(out,))\n"
        "    t.start()\n    t.join()\n    return out\n"
    )
    data = record(program, "f()")
    assert data["returns"] == ["[1]"]
    assert any("another thread" in m and "work" in m for m in data["marks"])


def test_deleted_variables_are_dropped_and_rebound_values_shown():
    text = trace("def f():\n    a = [1]\n    del a\n    a = [1]\n    return a\n", "f()")
    assert "(0) a=[1];" in text and "(1) a=[1];" in text


def test_recursion_limit_errors_are_recorded_not_crashing():
    program = "def f(n):\n    return f(n + 1)\n"
    data = record(program, "f(0)", config=TraceConfig(max_events=10 ** 7))
    assert data["outcome"] == "error" and data["exception"].startswith("RecursionError(")


def test_same_input_gives_byte_identical_data():
    program = "def f(words):\n    d = {}\n    for w in words:\n        d[w] = len(w)\n    return sorted(d.items())\n"
    test = "f(['aa', 'b', 'aa'])"
    assert json.dumps(record(program, test)) == json.dumps(record(program, test))


@pytest.mark.parametrize("head,count,shown", [(3, 10, 4), (3, 5, 3), (3, 4, 4), (3, 2, 2), (1, 3, 1)])
def test_abbreviation_rule(head, count, shown):
    from next_jax.tracing.render import shown_visits

    visits = [(i, []) for i in range(count)]
    out = shown_visits(count, visits[:head], visits[-1], head, 2)
    assert len([v for v in out if v is not None]) == shown
    assert out[-1] == visits[-1]
    assert (None in out) == (shown < count)


def test_coroutines_show_their_steps_once_per_entry():
    check(
        """
        import asyncio
        async def double(x):
            await asyncio.sleep(0)
            y = x * 2
            return y
        async def main(xs):
            out = []
            for x in xs:
                out.append(await double(x))
            return out
        """,
        "asyncio.run(main([1, 2]))",
        """
        import asyncio
        async def double(x):  # (3) x=1; (8) x=2;
            await asyncio.sleep(0)
            y = x * 2  # (4) y=2; (9) y=4;
            return y  # (5) __return__=2; (10) __return__=4;
        async def main(xs):  # (0) xs=[1, 2];
            out = []  # (1) out=[];
            for x in xs:  # (2) x=1; (7) x=2;
                out.append(await double(x))  # (6) out=[2]; (11) out=[2, 4];
            return out  # (12) __return__=[2, 4]

        asyncio.run(main([1, 2]))
        """,
    )


def test_abandoned_generators_do_not_show_a_fake_yield():
    text = trace(
        """
        def evens():
            n = 0
            while True:
                yield n
                n += 2
        def first_over(k):
            for v in evens():
                if v > k:
                    return v
        """,
        "first_over(3)",
    )
    assert "    yield n  # (2) __yield__=0; (5) __yield__=2; (8) __yield__=4;\n" in text
    assert "__yield__=None" not in text and "GeneratorExit" not in text


def test_exceptions_thrown_into_generators():
    text = trace(
        """
        def g():
            got = 0
            while True:
                try:
                    got = yield got
                except ValueError:
                    got = -1
        def f():
            it = g()
            next(it)
            a = it.throw(ValueError('x'))
            it.close()
            return a
        """,
        "f()",
    )
    assert "got = yield got  # (2) __yield__=0; (3) __exception__ = ValueError('x'); (5) __yield__=-1;" in text
    assert "got = -1  # (4) got=-1;" in text
    assert "(7) __return__=-1" in text and "GeneratorExit" not in text


def test_match_walrus_and_dataclasses():
    text = trace(
        """
        from dataclasses import dataclass
        @dataclass
        class P:
            x: int
            y: int
        def f(items):
            total = 0
            for it in items:
                match it:
                    case P(x=0, y=yy):
                        total += yy
                    case [a, b]:
                        total += a * b
            if (n := len(items)) > 1:
                total += n
            return total
        """,
        "f([P(0, 5), [2, 3]])",
    )
    assert "def f(items):  # (0) items=[P(x=0, y=5), [2, 3]];" in text
    assert "case P(x=0, y=yy):  # (3) yy=5;" in text
    assert "case [a, b]:  # (6) a=2; b=3;" in text
    assert "if (n := len(items)) > 1:  # (8) n=2;" in text


def test_exec_and_processes_are_marked():
    data = record("def f():\n    exec('z = 1')\n    return 2\n", "f()")
    assert data["marks"] == ["code run through exec/eval is not traced"]
    data = record("import os\ndef f():\n    return os.system\n", "f()")
    assert data["marks"] == []


def test_changes_to_big_containers_are_found_by_their_shown_items_and_length():
    program = (
        "def f():\n"
        "    xs = list(range(100))\n"
        "    xs[0] = 1.0\n"
        "    xs.append(5)\n"
        "    d = dict.fromkeys(range(50), 0)\n"
        "    d[0] += 1\n"
        "    d[49] += 1\n"
        "    return 0\n"
    )
    data = record(program, "f()", config=TraceConfig(max_value_chars=20))
    lines = render_trace(program, "f()", data).split("\n")
    assert lines[1].endswith("# (0) xs=[0, 1, 2, 3, 4, 5, 6, ...];")
    assert lines[2].endswith("# (1) xs=[1.0, 1, 2, 3, 4, 5, ...];")  # 1 -> 1.0: equal, not the same
    assert lines[3].endswith("# (2) xs=[1.0, 1, 2, 3, 4, 5, ...];")  # longer, same shown items
    assert lines[5].endswith("# (4) d={0: 1, 1: 0, 2: 0, ...};")
    # A change past the cut that keeps the length is not seen (cost bounded by the cap).
    assert lines[6] == "    d[49] += 1"
