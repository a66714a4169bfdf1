# task: no_mutate
# expect: pass
# threat: none (sorts copies of the rows; the input is untouched)
def sorted_rows(rows):
    return [sorted(row) for row in rows]
