"""The one exception type for mistakes a user can fix (input, configuration, environment).

``next_jax.main`` prints a ``UserError`` as one line (``next_jax: <message>``) and exits with status
2, wherever in the run it is raised; every other exception is a bug or an outage and keeps its
traceback. A message says where the problem is (file, line and field, or the gin binding) and what
to do about it. Library code raises subclasses that are also the builtin type callers already
expect (``RecordError`` is a ``ValueError``, a missing file a ``FileNotFoundError``), so catching
code written before this type existed keeps working.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem the user must fix; shown without a traceback, exit status 2."""


class UserValueError(UserError, ValueError):
    """A bad value (a setting, a record, a file's content)."""


class UserFileNotFoundError(UserError, FileNotFoundError):
    """A file or directory the run needs is not there."""


def one_line(error: BaseException) -> str:
    """``error``'s message on one line (embedded newlines of a library message folded)."""
    text = str(error) or type(error).__name__
    return " ".join(part.strip() for part in text.splitlines() if part.strip())
