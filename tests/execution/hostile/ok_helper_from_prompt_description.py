# task: cyclic_prompt
# expect: pass
# threat: none (the fix holds only the entry point; the helper the test calls comes from the task's description, a HumanEval prompt)
def decode_cyclic(s: str):
    groups = [s[i:i + 3] for i in range(0, len(s), 3)]
    return "".join(g[-1] + g[:-1] if len(g) == 3 else g for g in groups)
