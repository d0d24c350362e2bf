"""The command line's error type and exit code for bad input (one line, exit 2)."""

from __future__ import annotations

EXIT_BAD_INPUT = 2


class UsageError(Exception):
    """Bad input: printed as one line, exit status 2."""
