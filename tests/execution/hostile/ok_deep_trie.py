# task: trie
# expect: pass
# threat: none (returns a trie of nested dicts 1,000 levels deep)
def build_trie(words):
    root = {}
    for word in words:
        node = root
        for ch in word:
            node = node.setdefault(ch, {})
        node["#"] = True
    return root
