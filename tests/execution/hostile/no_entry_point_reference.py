# task: cyclic
# expect: error
# threat: defines only the helper, not the entry point: the task's trusted program (run for the helper) must not stand in for it
def encode_cyclic(s):
    groups = [s[i:i + 3] for i in range(0, len(s), 3)]
    return "".join(g[1:] + g[0] if len(g) == 3 else g for g in groups)
