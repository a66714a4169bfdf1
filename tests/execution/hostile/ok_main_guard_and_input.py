# task: add
# expect: pass
# threat: none (has a __main__ block that would read stdin; it must not run)
def add(a, b):
    return a + b


if __name__ == "__main__":
    print(add(int(input()), int(input())))
