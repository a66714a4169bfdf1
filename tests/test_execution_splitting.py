"""Test splitting: what the child evaluates (holes) and what the parent keeps (templates)."""

import marshal

import pytest

from next_jax.execution.splitting import split_tests
from next_jax.execution.templates import CompiledSites, strict_eq


def sites_of(tests, strict=False):
    split = split_tests(tests, strict_types=strict)
    return split, CompiledSites(split.sites)


def test_expected_value_stays_in_the_parent():
    split, _ = sites_of(["assert f(1) == [2, 3]"])
    site = split.sites[0]
    assert site.holes == ("f(1)",)
    assert split.tests[0].form == "split"
    consts, todo = [], [marshal.loads(split.tests[0].code)]
    while todo:  # every constant of the child's code, nested code objects included
        for c in todo.pop().co_consts:
            (todo if hasattr(c, "co_consts") else consts).append(c)
    assert 1 in consts  # the candidate's argument is there ...
    assert not {2, 3, (2, 3)} & set(consts)  # ... the expected value is not


@pytest.mark.parametrize("test,holes,names", [
    ("assert math.isclose(f(2), 0.5, rel_tol=1e-3)", ("f(2)",), {"math", "isclose"}),
    ("assert set(f(4)) == {1, 2} and g(5) is None", ("f(4)", "g(5)"), {"set"}),
    ("assert sorted(f(3), key=lambda t: t[1]) == [(1, 2)]", ("sorted(f(3), key=lambda t: t[1])",), set()),
    ("assert all(f(x) for x in range(3))", ("all((f(x) for x in range(3)))",), set()),
    ("assert not f(0)", ("f(0)",), set()),
    ("assert f(2) ** 2 == 4", ("f(2)",), {"_nj_pow"}),
    ("assert True", (), set()),
])
def test_holes_and_templates(test, holes, names):
    split, _ = sites_of([test])
    assert split.sites[0].holes == holes
    assert names <= set(marshal.loads(split.sites[0].template).co_names)


def test_names_the_test_binds_are_not_builtins():
    split, sites = sites_of(["for _ in range(2):\n    str = 'ab'\n    assert f(str) == str"])
    assert split.sites[0].holes == ("f(str)", "str")
    assert split.tests[0].form == "guarded"
    assert sites.evaluate(0, [("v", "ab"), ("v", "ab")])[0] == "pass"


def test_check_function_form_and_required_sites():
    test = ("def check(candidate):\n    assert candidate(1) == 2\n    for x in range(3):\n"
            "        assert candidate(x) == x + 1\n    if x:\n        assert candidate(0) != 5\n\ncheck(f)\n")
    split, _ = sites_of([test])
    assert split.tests[0].form == "guarded"
    assert [s.required for s in split.sites] == [True, True, False]


def test_template_evaluation_outcomes():
    _, sites = sites_of(["assert f(1) == 3", "assert g(1) == 3"])
    assert sites.evaluate(0, [("v", 3)]) == ("pass", "")
    assert sites.evaluate(0, [("v", 4)])[0] == "fail"
    assert sites.evaluate(0, [("e", "ZeroDivisionError: x")])[0] == "error"
    assert sites.evaluate(0, [("n", "a value of type X is not plain data")])[0] == "fail"
    assert sites.evaluate(1, [("v", 3), ("v", 3)])[0] == "error"  # wrong number of values


def test_python_equality_by_default_strict_on_request():
    _, lax = sites_of(["assert f() == 1"])
    _, strict = sites_of(["assert f() == 1"], strict=True)
    assert lax.evaluate(0, [("v", 1.0)])[0] == "pass"
    assert lax.evaluate(0, [("v", True)])[0] == "pass"
    assert strict.evaluate(0, [("v", 1.0)])[0] == "fail"
    assert strict.evaluate(0, [("v", 1)])[0] == "pass"
    assert strict_eq([1, (2,)], [1, (2,)]) and not strict_eq([1, (2,)], [1, [2]])


def test_candidate_values_cannot_blow_up_the_parent():
    _, sites = sites_of(["assert 2 ** f() == 8", "assert [0] * f() == []", "assert f() << g() == 0"])
    assert sites.evaluate(0, [("v", 10 ** 12)])[0] == "error"
    assert sites.evaluate(1, [("v", 10 ** 12)])[0] == "error"
    assert sites.evaluate(2, [("v", 1), ("v", 10 ** 12)])[0] == "error"
    assert sites.evaluate(0, [("v", 3)])[0] == "pass"


def test_unparsable_test_raises_syntax_error():
    with pytest.raises(SyntaxError):
        split_tests(["assert f(1) =="])
