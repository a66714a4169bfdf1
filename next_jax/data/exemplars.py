"""The three worked examples of NExT's 3-shot prompt (iteration 0 samples the base model 3-shot).

Written for next_jax in the paper's rationale style: restate the spec, explain the program,
compare each assertion's traced value with the expected one, name the root cause, then "Here is
a fixed version" and one python block (``prompts.format_answer``). The traces are the tracer's
own output for these programs with the default ``TraceConfig`` (a test re-traces them and
compares), and every fix passes its tests in the sandbox (also tested).
"""

from __future__ import annotations

from typing import List, Tuple

from next_jax.data.records import RepairTask, Trace, TracedTask

_COUNT_VOWELS = TracedTask(
    task_id='exemplar/count_vowels', source='exemplar',
    description='Write a function to count the vowels in a string, ignoring case.',
    buggy_code='def count_vowels(s):\n    count = 0\n    for ch in s:\n        if ch in "aeiou":\n            count += 1\n    return count\n',
    entry_point='count_vowels',
    tests=['assert count_vowels("hello") == 2', 'assert count_vowels("AEIOU") == 5', 'assert count_vowels("xyz") == 0'],
    traces=[
        Trace(test='assert count_vowels("hello") == 2', outcome='pass', traced_code=(
            "def count_vowels(s):  # (0) s='hello';\n"
            '    count = 0  # (1) count=0;\n'
            "    for ch in s:  # (2) ch='h'; (3) ch='e'; (5) ch='l'; (6) ch='o';\n"
            '        if ch in "aeiou":\n'
            '            count += 1  # (4) count=1; (7) count=2;\n'
            '    return count  # (8) __return__=2\n'
            '\n'
            'assert count_vowels("hello") == 2'
        )),
        Trace(test='assert count_vowels("AEIOU") == 5', outcome='fail', traced_code=(
            "def count_vowels(s):  # (0) s='AEIOU';\n"
            '    count = 0  # (1) count=0;\n'
            "    for ch in s:  # (2) ch='A'; (3) ch='E'; ...; (6) ch='U';\n"
            '        if ch in "aeiou":\n'
            '            count += 1\n'
            '    return count  # (7) __return__=0;\n'
            '\n'
            'assert count_vowels("AEIOU") == 5  # (8) __exception__ = AssertionError()'
        )),
        Trace(test='assert count_vowels("xyz") == 0', outcome='pass', traced_code=(
            "def count_vowels(s):  # (0) s='xyz';\n"
            '    count = 0  # (1) count=0;\n'
            "    for ch in s:  # (2) ch='x'; (3) ch='y'; (4) ch='z';\n"
            '        if ch in "aeiou":\n'
            '            count += 1\n'
            '    return count  # (5) __return__=0\n'
            '\n'
            'assert count_vowels("xyz") == 0'
        )),
    ])
_COUNT_VOWELS_RATIONALE = (
    "The problem spec asks for the number of vowels in a string, counting upper-case and lower-"
    "case vowels alike.\n\n"
    "Now let's look at the program. It starts a counter at 0, walks over the characters of the "
    'string and adds 1 whenever the character is in the string "aeiou", then returns the '
    "counter. For the first assertion, the trace shows count going to 1 at 'e' and to 2 at 'o',"
    " so the return value is 2, as expected. The third assertion also holds: 'xyz' has no "
    "vowels and the return value is 0. But for the second assertion, the loop visits 'A', 'E', "
    "..., 'U' and count never changes, so the return value is 0 while the expected output is 5."
    " The reason is that the membership test compares the character as it is with lower-case "
    "vowels only, so every upper-case vowel is missed."
)
_COUNT_VOWELS_FIX = 'def count_vowels(s):\n    count = 0\n    for ch in s:\n        if ch.lower() in "aeiou":\n            count += 1\n    return count\n'

_SECOND_LARGEST = TracedTask(
    task_id='exemplar/second_largest', source='exemplar',
    description='Write a function to find the second largest distinct number in a list.',
    buggy_code='def second_largest(nums):\n    ordered = sorted(nums)\n    return ordered[-2]\n',
    entry_point='second_largest',
    tests=['assert second_largest([1, 3, 2]) == 2', 'assert second_largest([5, 5, 4]) == 4', 'assert second_largest([7, 1, 7, 3]) == 3'],
    traces=[
        Trace(test='assert second_largest([1, 3, 2]) == 2', outcome='pass', traced_code=(
            'def second_largest(nums):  # (0) nums=[1, 3, 2];\n'
            '    ordered = sorted(nums)  # (1) ordered=[1, 2, 3];\n'
            '    return ordered[-2]  # (2) __return__=2\n'
            '\n'
            'assert second_largest([1, 3, 2]) == 2'
        )),
        Trace(test='assert second_largest([5, 5, 4]) == 4', outcome='fail', traced_code=(
            'def second_largest(nums):  # (0) nums=[5, 5, 4];\n'
            '    ordered = sorted(nums)  # (1) ordered=[4, 5, 5];\n'
            '    return ordered[-2]  # (2) __return__=5;\n'
            '\n'
            'assert second_largest([5, 5, 4]) == 4  # (3) __exception__ = AssertionError()'
        )),
        Trace(test='assert second_largest([7, 1, 7, 3]) == 3', outcome='fail', traced_code=(
            'def second_largest(nums):  # (0) nums=[7, 1, 7, 3];\n'
            '    ordered = sorted(nums)  # (1) ordered=[1, 3, 7, 7];\n'
            '    return ordered[-2]  # (2) __return__=7;\n'
            '\n'
            'assert second_largest([7, 1, 7, 3]) == 3  # (3) __exception__ = AssertionError()'
        )),
    ])
_SECOND_LARGEST_RATIONALE = (
    "The problem spec asks for the second largest distinct number in a list, so repeated values"
    " count once.\n\n"
    "Now let's look at the program. It sorts the list and returns the element before the last "
    "one. This works for the first assertion: ordered is [1, 2, 3] and the return value is 2, "
    "as expected. But for the second assertion, ordered is [4, 5, 5] and the return value is 5 "
    "while the expected output is 4, and for the third assertion, ordered is [1, 3, 7, 7] and "
    "the return value is 7 while the expected output is 3. The reason is that the largest value"
    " appears twice in those lists, so the second to last element of the sorted list is the "
    "largest value again, not the second largest distinct one."
)
_SECOND_LARGEST_FIX = 'def second_largest(nums):\n    ordered = sorted(set(nums))\n    return ordered[-2]\n'

_RUNNING_SUM = TracedTask(
    task_id='exemplar/running_sum', source='exemplar',
    description='Write a function that returns the running totals of a list of numbers.',
    buggy_code='def running_sum(nums):\n    totals = []\n    total = 0\n    for i in range(1, len(nums)):\n        total += nums[i]\n        totals.append(total)\n    return totals\n',
    entry_point='running_sum',
    tests=['assert running_sum([1, 2, 3]) == [1, 3, 6]', 'assert running_sum([]) == []', 'assert running_sum([5]) == [5]'],
    traces=[
        Trace(test='assert running_sum([1, 2, 3]) == [1, 3, 6]', outcome='fail', traced_code=(
            'def running_sum(nums):  # (0) nums=[1, 2, 3];\n'
            '    totals = []  # (1) totals=[];\n'
            '    total = 0  # (2) total=0;\n'
            '    for i in range(1, len(nums)):  # (3) i=1; (6) i=2;\n'
            '        total += nums[i]  # (4) total=2; (7) total=5;\n'
            '        totals.append(total)  # (5) totals=[2]; (8) totals=[2, 5];\n'
            '    return totals  # (9) __return__=[2, 5];\n'
            '\n'
            'assert running_sum([1, 2, 3]) == [1, 3, 6]  # (10) __exception__ = AssertionError()'
        )),
        Trace(test='assert running_sum([]) == []', outcome='pass', traced_code=(
            'def running_sum(nums):  # (0) nums=[];\n'
            '    totals = []  # (1) totals=[];\n'
            '    total = 0  # (2) total=0;\n'
            '    for i in range(1, len(nums)):\n'
            '        total += nums[i]\n'
            '        totals.append(total)\n'
            '    return totals  # (3) __return__=[]\n'
            '\n'
            'assert running_sum([]) == []'
        )),
        Trace(test='assert running_sum([5]) == [5]', outcome='fail', traced_code=(
            'def running_sum(nums):  # (0) nums=[5];\n'
            '    totals = []  # (1) totals=[];\n'
            '    total = 0  # (2) total=0;\n'
            '    for i in range(1, len(nums)):\n'
            '        total += nums[i]\n'
            '        totals.append(total)\n'
            '    return totals  # (3) __return__=[];\n'
            '\n'
            'assert running_sum([5]) == [5]  # (4) __exception__ = AssertionError()'
        )),
    ])
_RUNNING_SUM_RATIONALE = (
    "The problem spec asks for the running totals of a list: the i-th output is the sum of the "
    "first i + 1 numbers.\n\n"
    "Now let's look at the program. It keeps a total, and for each index it adds the number at "
    "that index to the total and appends the total to the result. The second assertion holds: "
    "the list is empty and the return value is []. But for the first assertion, the loop "
    "variable i takes the values 1 and 2 only, so totals becomes [2, 5] and the return value is"
    " [2, 5] while the expected output is [1, 3, 6]. For the third assertion, the loop body "
    "never runs and the return value is [] while the expected output is [5]. The reason is that"
    " the loop runs over range(1, len(nums)), which skips the first element of the list."
)
_RUNNING_SUM_FIX = 'def running_sum(nums):\n    totals = []\n    total = 0\n    for i in range(len(nums)):\n        total += nums[i]\n        totals.append(total)\n    return totals\n'


EXEMPLARS: Tuple[Tuple[TracedTask, str, str], ...] = (
    (_COUNT_VOWELS, _COUNT_VOWELS_RATIONALE, _COUNT_VOWELS_FIX),
    (_SECOND_LARGEST, _SECOND_LARGEST_RATIONALE, _SECOND_LARGEST_FIX),
    (_RUNNING_SUM, _RUNNING_SUM_RATIONALE, _RUNNING_SUM_FIX),
)



def repair_tasks() -> List[RepairTask]:
    """The exemplars as RepairTasks with their fixes as ``reference_fix`` (for checking)."""
    return [RepairTask(**dict(task.repair_task().__dict__, reference_fix=fix)) for task, _, fix in EXEMPLARS]
