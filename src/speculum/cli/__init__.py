"""The ``speculum`` command line: the only code that prints."""

from speculum.cli.app import app, main

__all__ = ["app", "main"]
