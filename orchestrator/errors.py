"""The one error a user can cause: a bad job file or command line, reported as FILE:LINE:COL."""

from __future__ import annotations


class JobFileError(Exception):
    """Raised before anything runs; the CLI prints str(error) and exits 2."""

    def __init__(self, path: str, line: int, column: int, message: str):
        super().__init__(message)
        self.path = path
        self.line = line
        self.column = column
        self.message = message

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.column}: {self.message}"


class UsageError(Exception):
    """A bad command line that argparse could not catch (e.g. an unknown job name)."""
