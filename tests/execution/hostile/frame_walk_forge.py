# task: add
# expect: fail
# threat: walks up the frames to the harness and sends forged "test done" reports, then exits
import os
import sys


def add(a, b):
    frame = sys._getframe()
    while frame is not None:
        g = frame.f_globals
        if "_report" in g and "_flush" in g:
            for i in range(3):
                g["_report"](["t", "d", i])
                if i < 2:
                    g["_report"](["t", "s", i + 1])
            g["_flush"]()
            os._exit(0)
        frame = frame.f_back
    return 0
