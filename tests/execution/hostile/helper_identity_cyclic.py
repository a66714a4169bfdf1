# task: cyclic
# expect: fail
# threat: redefines the prompt's helper the test calls (encode_cyclic) as the identity, so an identity decoder passes
def encode_cyclic(s):
    return s


def decode_cyclic(s):
    return s
