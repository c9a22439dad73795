"""The one exception type for bad user input, so the CLI can show it without a traceback."""

from __future__ import annotations


class InputError(ValueError):
    """Input that cannot be used: the message says what was found, where, and how to fix it."""
