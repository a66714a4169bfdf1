# task: no_mutate
# expect: fail
# threat: sorts the rows of its input in place (the test checks its alias of a row is unchanged)
def sorted_rows(rows):
    for row in rows:
        row.sort()
    return rows
