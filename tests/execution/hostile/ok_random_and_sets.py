# task: add_check
# expect: pass
# threat: none (uses random, sets and dataclasses)
import dataclasses
import random


@dataclasses.dataclass
class Pair:
    a: int
    b: int


def add(a, b):
    p = Pair(a, b)
    noise = random.random()
    return p.a + p.b + int(noise - noise)
