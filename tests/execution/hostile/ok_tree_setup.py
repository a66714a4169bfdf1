# task: tree_setup
# expect: pass
# threat: none (MBPP-style: the setup code's class builds the tree the fix walks; the fix does not define the class)
def max_height(node):
    if node is None:
        return 0
    return 1 + max(max_height(node.left), max_height(node.right))
