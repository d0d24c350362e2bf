"""The command line (`nethack-moe`): the parser and dispatch in `app`, one module per command group."""

from nethack_moe.cli.app import main

__all__ = ["main"]
