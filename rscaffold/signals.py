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
from pathlib import Path


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


class LexiconError(ValueError):
    """A lexicon that cannot be read or parsed; the message names the file, the line and what is wrong."""


@cache
def load_lexicon(name: str) -> Lexicon:
    """Load a shipped lexicon by name, or a TSV file by path."""
    return _load(name, ())


def _load(name: str, chain: tuple[str, ...]) -> Lexicon:
    """A lexicon; ``chain``: the lexicons whose ``# extends:`` led here (a loop is an error)."""
    if name in chain:
        raise LexiconError(f"{name}: '# extends:' loops back to it ({' -> '.join((*chain, name))})")
    if name in LEXICONS:
        text = resources.files("rscaffold").joinpath(f"lexicons/{name}.tsv").read_text("utf-8")
        return parse_lexicon(text, name, (*chain, name))
    try:
        data = Path(name).read_bytes()
    except (OSError, ValueError) as e:  # ValueError: a NUL byte in the name
        why = e.strerror if isinstance(e, OSError) else e
        known = ", ".join(LEXICONS)
        raise LexiconError(f"lexicon {name!r}: not one of {known} and not a readable file ({why})") from None
    try:
        text = data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise LexiconError(f"{name}:{line}: not valid UTF-8 (byte 0x{data[e.start]:02x})") from None
    return parse_lexicon(text, name, (*chain, name))


def parse_lexicon(text: str, source: str, chain: tuple[str, ...] = ()) -> Lexicon:
    """Parse ``keyword<TAB>signal<TAB>reason`` lines.

    ``# version: X`` names the version; ``# extends: NAME`` first takes every entry of lexicon NAME.
    """
    entries: dict[str, tuple[Signal, str]] = {}
    version = "unversioned"
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        where = f"{source}:{lineno}"
        if line.startswith("# version:"):
            version = line.split(":", 1)[1].strip()
        if line.startswith("# extends:"):
            try:
                entries.update(_load(line.split(":", 1)[1].strip(), chain or (source,)).entries)
            except LexiconError as e:
                raise LexiconError(f"{where}: # extends: {e}") from None
        if not line or line.startswith("#"):
            continue
        keyword, signal, reason = _entry(raw, where)
        if keyword in entries and entries[keyword][0] is not signal:
            raise LexiconError(f"{where}: keyword {keyword!r} already maps to {entries[keyword][0].key}")
        entries[keyword] = (signal, reason)
    if not entries:
        raise LexiconError(f"{source}: no keywords")
    return Lexicon(name=source, version=version, entries=entries)


def _entry(raw: str, where: str) -> tuple[str, Signal, str]:
    """One ``keyword<TAB>signal[<TAB>reason]`` line."""
    cells = raw.split("\t")
    if len(cells) < 2:
        raise LexiconError(f"{where}: expected 'keyword<TAB>signal[<TAB>reason]': the signal column is missing")
    keyword = _normalise(cells[0])
    if not keyword:
        raise LexiconError(f"{where}: empty keyword (nothing before the tab)")
    try:
        signal = Signal.parse(cells[1])
    except ValueError as e:
        raise LexiconError(f"{where}: field 'signal': {e}") from None
    if signal is Signal.RESPONSE:
        raise LexiconError(f"{where}: Response Generation has no keywords (it is the answer step)")
    return keyword, signal, cells[2].strip() if len(cells) > 2 else ""


SIGNAL_TEXT = "[{title}] "
"""The text a signal-as-text student writes before each step and its answer (``{title}``: the signal's name)."""
