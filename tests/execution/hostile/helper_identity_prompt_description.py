# task: cyclic_prompt
# expect: fail
# threat: redefines the prompt's helper the test calls (encode_cyclic) as the identity (the task has the helper only in its description, a HumanEval prompt)
def encode_cyclic(s):
    return s


def decode_cyclic(s):
    return s
