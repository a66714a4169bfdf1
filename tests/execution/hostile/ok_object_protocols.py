# task: stack
# expect: pass
# threat: none (the entry point is a class; the test calls methods, reads attributes, len(), str(), truth and iteration of its objects)
class Stack:
    def __init__(self):
        self.items = []

    def push(self, x):
        self.items.append(x)

    def pop(self):
        return self.items.pop() if self.items else None

    def peek(self):
        return self.items[-1]

    def __len__(self):
        return len(self.items)

    def __iter__(self):
        return iter(self.items)

    def __str__(self):
        return f"Stack{self.items}"
