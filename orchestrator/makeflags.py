"""What orchestrate reads from make's MAKEFLAGS: `-n` and the jobserver's address (no gevent)."""

from __future__ import annotations

from typing import NamedTuple

AUTH_OPTIONS = ("--jobserver-auth=", "--jobserver-fds=")


class MakeFlags(NamedTuple):
    """What orchestrate needs from MAKEFLAGS."""

    text: str = ""
    dry_run: bool = False
    auth: str | None = None  # the last --jobserver-auth= (or --jobserver-fds=) value

    @property
    def in_parallel_make(self) -> bool:
        """Make may run other recipes beside us, sharing the terminal."""
        return self.auth is not None


def parse_makeflags(text: str | None) -> MakeFlags:
    """Read MAKEFLAGS: single-letter flags come first (no dash), unless it starts with a space."""
    text = text or ""
    options = _options(text)
    letters = options[0] if options and not text[:1].isspace() and not options[0].startswith("-") else ""
    auth = None
    for word in options:
        for option in AUTH_OPTIONS:
            if word.startswith(option):
                auth = word[len(option) :]
    return MakeFlags(text=text, dry_run="n" in letters, auth=auth)


def _options(text: str) -> list[str]:
    """The words before ` -- ` (after it come variable overrides, which may contain anything)."""
    words = text.split()
    return words[: words.index("--")] if "--" in words else words
