# task: tree_mirror
# expect: pass
# threat: none (mirrors the setup code's tree in place; the test reads the tree it holds)
def mirror(node):
    if node is not None:
        node.left, node.right = mirror(node.right), mirror(node.left)
    return node
