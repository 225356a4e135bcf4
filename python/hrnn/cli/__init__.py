"""The ``hrnn`` command line (``hrnn --help``; also ``python -m hrnn``)."""

from hrnn.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
