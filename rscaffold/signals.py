"""The seven semantic signals of the paper and the stage-1 keyword lexicons (METHOD.md section 2).

The ids follow the order of the paper's prompts. Lexicons are data files beside this module
(``lexicons/<name>.tsv``: keyword, signal key, reason), so a lexicon change is a data change with
its own version line, not a code change.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import IntEnum
from functools import cache, cached_property
from importlib import resources


class Signal(IntEnum):
    """One discourse role of a reasoning step; the value is the paper's signal id."""

    CONTRAST = 0
    ADDITION = 1
    EXAMPLE = 2
    OPINION = 3
    REASONING = 4
    CONCLUSION = 5
    RESPONSE = 6

    @property
    def key(self) -> str:
        """Short lowercase name used in files and on the command line."""
        return self.name.lower()

    @property
    def title(self) -> str:
        """The paper's name of the signal, as the judge and the predictor write it."""
        return TITLES[self]

    @classmethod
    def parse(cls, value: object) -> Signal:
        """Accept a Signal, an id, a key (``conclusion``) or a paper name (``Conclusion and Summary``)."""
        if isinstance(value, Signal):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return cls(value)
        if isinstance(value, str):
            found = _BY_NAME.get(value.strip().lower())
            if found is not None:
                return found
        names = ", ".join(s.key for s in cls)
        raise ValueError(f"unknown signal {value!r}; expected one of {names} or an id 0-6")


TITLES = {
    Signal.CONTRAST: "Contrast and Concession",
    Signal.ADDITION: "Addition and Elaboration",
    Signal.EXAMPLE: "Examples and Illustration",
    Signal.OPINION: "Personal Opinion and Recall",
    Signal.REASONING: "Reasoning and Analysis",
    Signal.CONCLUSION: "Conclusion and Summary",
    Signal.RESPONSE: "Response Generation",
}
_BY_NAME = {s.key: s for s in Signal} | {t.lower(): s for s, t in TITLES.items()}

LEXICONS = ("paper", "extended")
"""Lexicons shipped with the package: ``paper`` is the paper's table exactly."""

# What may stand before the keyword: whitespace, markdown emphasis/headings/quotes/list markers
# and quote marks (METHOD.md section 2, matching rules).
_PREFIX = r"(?:[\s*_#>`\"'“”‘’(\[-]|\d+[.)]\s|[-+*]\s)*"


@dataclass(frozen=True)
class Lexicon:
    """A keyword table: ``entries`` maps each lowercase keyword to its signal and reason."""

    name: str
    version: str
    entries: dict[str, tuple[Signal, str]]

    @cached_property
    def pattern(self) -> re.Pattern[str]:
        return _compile(tuple(self.entries))

    def match(self, text: str) -> tuple[Signal, str] | None:
        """The signal and keyword that open ``text``, or None; the longest keyword wins."""
        m = self.pattern.match(text)
        if m is None:
            return None
        keyword = _normalise(m.group(1))
        return self.entries[keyword][0], keyword


def _normalise(keyword: str) -> str:
    return " ".join(keyword.lower().replace("’", "'").split())


@cache
def _compile(keywords: tuple[str, ...]) -> re.Pattern[str]:
    # Longest first, so "on the other hand" beats "on" and "in fact" beats "in"; whole words only,
    # so "so" never matches "some"; any apostrophe and any run of spaces match.
    def alt(k: str) -> str:
        return r"\s+".join(re.escape(w).replace("'", "['’]") for w in k.split())

    body = "|".join(alt(k) for k in sorted(keywords, key=len, reverse=True))
    return re.compile(rf"{_PREFIX}({body})(?![\w'’])", re.IGNORECASE)


@cache
def load_lexicon(name: str) -> Lexicon:
    """Load a shipped lexicon by name, or a TSV file by path."""
    if name in LEXICONS:
        text = resources.files("rscaffold").joinpath(f"lexicons/{name}.tsv").read_text("utf-8")
        source = name
    else:
        try:
            with open(name, encoding="utf-8") as f:
                text = f.read()
        except OSError as e:
            raise ValueError(
                f"lexicon {name!r}: not one of {', '.join(LEXICONS)} and not a readable file ({e.strerror})"
            ) from e
        source = name
    return parse_lexicon(text, source)


def parse_lexicon(text: str, source: str) -> Lexicon:
    """Parse ``keyword<TAB>signal<TAB>reason`` lines.

    ``# version: X`` names the version; ``# extends: NAME`` first takes every entry of lexicon NAME.
    """
    entries: dict[str, tuple[Signal, str]] = {}
    version = "unversioned"
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if line.startswith("# version:"):
            version = line.split(":", 1)[1].strip()
        if line.startswith("# extends:"):
            entries.update(load_lexicon(line.split(":", 1)[1].strip()).entries)
        if not line or line.startswith("#"):
            continue
        cells = raw.split("\t")
        if len(cells) < 2:
            raise ValueError(f"{source}:{lineno}: expected 'keyword<TAB>signal[<TAB>reason]', got {raw!r}")
        keyword = _normalise(cells[0])
        try:
            signal = Signal.parse(cells[1])
        except ValueError as e:
            raise ValueError(f"{source}:{lineno}: field 'signal': {e}") from None
        if signal is Signal.RESPONSE:
            raise ValueError(f"{source}:{lineno}: Response Generation has no keywords (it is the answer step)")
        if keyword in entries and entries[keyword][0] is not signal:
            raise ValueError(f"{source}:{lineno}: keyword {keyword!r} already maps to {entries[keyword][0].key}")
        entries[keyword] = (signal, cells[2].strip() if len(cells) > 2 else "")
    if not entries:
        raise ValueError(f"{source}: no keywords")
    return Lexicon(name=source, version=version, entries=entries)


SIGNAL_TEXT = "[{title}] "
"""The text a signal-as-text student writes before each step and its answer (``{title}``: the signal's name)."""
