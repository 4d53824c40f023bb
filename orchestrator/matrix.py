"""Matrix expansion names: built, parsed and matched in one place, for the file and the CLI."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

_SELECTOR = re.compile(r"(?P<base>[A-Za-z0-9_.-]+)\[(?P<pairs>.*)\]", re.DOTALL)
# Pairs are split at a comma that starts the next KEY=, so a value may itself hold a comma;
# spaces after the comma are allowed, as people type them.
_PAIR_SEPARATOR = re.compile(r",\s*(?=[^=,\s]+=)")


def expansion_name(base: str, values: Mapping[str, str]) -> str:
    """`build` and {ARCH: arm64, OS: linux} -> `build[ARCH=arm64,OS=linux]` (keys in file order)."""
    return base + "[" + ",".join(f"{key}={value}" for key, value in values.items()) + "]"


def base_name(name: str) -> str:
    """`build[ARCH=arm64]` -> `build`: the name a matrix job was written under."""
    return name.split("[", 1)[0]


def parse_selector(text: str) -> tuple[str, dict[str, str]] | None:
    """`test[PY=3.12, OS=linux]` -> ("test", {PY: 3.12, OS: linux}); None when `text` is not
    a selector (no brackets, or a part without `=`). Keys may come in any order."""
    match = _SELECTOR.fullmatch(text.strip())
    if not match:
        return None
    values: dict[str, str] = {}
    for pair in _PAIR_SEPARATOR.split(match["pairs"].strip()):
        key, separator, value = pair.partition("=")
        if not separator or not key.strip():
            return None
        values[key.strip()] = value
    return match["base"], values


class MatrixIndex:
    """Every job name, and for each matrix job its expansions with their values, so a name
    written in `needs:` or on the command line resolves the same way in both places."""

    def __init__(self) -> None:
        self.values: dict[str, Mapping[str, str]] = {}  # job name -> its matrix values
        self.groups: dict[str, list[str]] = {}  # matrix job as written -> its expansions

    @classmethod
    def of(cls, jobs: Iterable[tuple[str, Mapping[str, str]]]) -> MatrixIndex:
        """The index of (name, matrix values) pairs, e.g. a JobFile's jobs."""
        index = cls()
        for name, values in jobs:
            index.add(name, values)
        return index

    def add(self, name: str, values: Mapping[str, str]) -> None:
        self.values[name] = values
        if values:
            self.groups.setdefault(base_name(name), []).append(name)

    def resolve(self, text: str) -> list[str]:
        """A job, every expansion of a matrix job, or those a selector picks: exactly as
        written, by its bare name, or `build[ARCH=arm64]` (a subset of keys, any order).
        Empty when nothing matches."""
        if text in self.values:
            return [text]
        if text in self.groups:
            return list(self.groups[text])
        selector = parse_selector(text)
        if selector is None or selector[0] not in self.groups:
            return []
        base, wanted = selector
        return [
            name
            for name in self.groups[base]
            if all(self.values[name].get(key) == value for key, value in wanted.items())
        ]

    def names_to_suggest(self) -> list[str]:
        """What a did-you-mean hint may offer: matrix jobs by their bare name, then all names."""
        return [*self.groups, *self.values]

    def values_of(self, text: str) -> str | None:
        """For a selector of a known matrix job that matched nothing, the values it takes:
        `t takes OS=linux|mac, PY=3.11|3.12`; None otherwise."""
        selector = parse_selector(text)
        if selector is None or selector[0] not in self.groups:
            return None
        axes: dict[str, dict[str, None]] = {}
        for name in self.groups[selector[0]]:
            for key, value in self.values[name].items():
                axes.setdefault(key, {})[value] = None
        return f"{selector[0]} takes " + ", ".join(
            f"{key}={'|'.join(values)}" for key, values in axes.items()
        )
