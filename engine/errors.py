"""The one exception type for bad user input, so the CLI can show it without a traceback.

The rule: a user's mistake (a file that cannot be used, an option value a config refuses in `__post_init__`,
a TOML key `options.from_dict` does not know, flags that exclude each other) raises `InputError`; the CLI
prints it as one line and exits 2. Everything else, a bare `ValueError` included, is a bug (ours, or a
library caller's passing arguments the CLI never would) and keeps its traceback. `InputError` stays a
`ValueError`, so library code and tests that catch `ValueError` from a config keep working; one type is
enough (no separate config error): the CLI treats every user mistake the same way.
"""

from __future__ import annotations


class InputError(ValueError):
    """Input that cannot be used: the message says what was found, where, and how to fix it."""
