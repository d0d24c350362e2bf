"""The error for a bad setting (a config key, a device): one line at the command line."""

from __future__ import annotations


class ConfigError(ValueError):
    """A configuration key or value is wrong; the message names the key."""
