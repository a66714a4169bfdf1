# task: add_check
# expect: pass
# threat: none (a correct program that computes with multiprocessing.Pool: worker processes and POSIX semaphores in /dev/shm)
import multiprocessing


def _sum(pair):
    return pair[0] + pair[1]


def add(a, b):
    with multiprocessing.Pool(2) as pool:
        return pool.map(_sum, [(a, b)])[0]
