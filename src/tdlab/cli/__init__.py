"""The `tdlab` command line."""

from tdlab.cli.app import app

__all__ = ["app"]
