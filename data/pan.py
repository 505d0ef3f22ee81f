"""The one card-number (PAN) detector: every string the service stores or sends goes through it.

A card number is a run of 13-19 digits that passes the Luhn checksum, however it is written:
`4111 1111 1111 1111`, `4111.1111.1111.1111`, tabs or no-break spaces between the groups, full-
width digits, or inside other text (`tok_4111111111111111`, `pan:...`, `...1111x`, a note). Digits
are grouped by any short run of non-alphanumeric characters; a letter ends a run. Groups must be
written like a card's (all but the last of 3+ digits, or all of one size), so date-times and
decimals are not taken for one. A run of 13-19 digits is checked as one number; in a longer
run, every stretch of whole consecutive groups of 13-19 digits is (`ref 2024 4111 1111 1111
1111` holds a card number; a bare 25-digit run does not).

One exception keeps keyed hashes usable as ids: bare digits inside a token of 16 or more hex
characters with letters (`9f4111111111111111e0`) are a hash's, not a card number (a card number
glued to hex letters on purpose gets through; a written-out one does not).

Identifier fields holding a card number are refused; free text gets it masked (`mask`).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterator

MASK = "[card number removed]"
MIN_DIGITS, MAX_DIGITS = 13, 19
MAX_SEPARATOR = 3  # characters between two digit groups of one number

# digit groups joined by short runs of non-alphanumeric characters ([\W_]: not a letter/digit)
_RUN = re.compile(rf"\d+(?:[\W_]{{1,{MAX_SEPARATOR}}}\d+)*")
_GROUP = re.compile(r"\d+")
# a quick test (pandas `str.contains`) that a value may hold one: 13 digits, separators only
CANDIDATE = rf"\d(?:[\W_]{{0,{MAX_SEPARATOR}}}\d){{{MIN_DIGITS - 1}}}"


def luhn_valid(digits: str) -> bool:
    """The card-number checksum over ASCII digits."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _ascii(digits: str) -> str:
    return digits if digits.isascii() else "".join(str(unicodedata.digit(c)) for c in digits)


_HEX_LETTER = frozenset("abcdefABCDEF")
MIN_HASH = 16  # hex characters of the shortest keyed hash an id is taken to be


def _inside_hash(text: str, start: int, end: int) -> bool:
    """A run of bare digits inside a hex token with letters (`ip_9f41112345678901234e...`):
    a keyed hash's digits, not a card number written out."""
    a, b = start, end
    while a > 0 and text[a - 1].isascii() and text[a - 1].isalnum():
        a -= 1
    while b < len(text) and text[b].isascii() and text[b].isalnum():
        b += 1
    token = text[a:b]
    return (
        len(token) >= MIN_HASH
        and (a < start or b > end)
        and all(c.isdigit() or c in _HEX_LETTER for c in token)
    )


def _card_groups(groups: list[str]) -> bool:
    """Digit groups that are written like one card number and pass Luhn. Several groups must
    look like a card's grouping: all but the last of 3 digits or more (4-4-4-4, 4-6-5,
    4-4-4-4-1 with the check digit apart) or all of one size
    (`41 11 11 ...`, `4 1 1 1 ...`); a date-time (`2024-03-05 12:00:43.123`) or a decimal
    (`1.6256046668998758`) mixes short and long groups and is not one."""
    if len(groups) > 1 and not (
        min(len(g) for g in groups[:-1]) >= 3 or len({len(g) for g in groups}) == 1
    ):
        return False
    return luhn_valid("".join(groups))


def find(text: str) -> Iterator[tuple[int, int]]:
    """(start, end) of each card number in `text`, left to right, not overlapping."""
    for run in _RUN.finditer(text):
        if run.end() - run.start() < MIN_DIGITS:
            continue
        groups = [(g.start(), g.end(), _ascii(g.group())) for g in _GROUP.finditer(run.group())]
        total = sum(len(d) for _, _, d in groups)
        if total < MIN_DIGITS:
            continue
        if len(groups) == 1 and _inside_hash(text, run.start(), run.end()):
            continue
        base, i = run.start(), 0
        if total <= MAX_DIGITS:  # the run is one number: it is a card number or it is not
            if _card_groups([d for _, _, d in groups]):
                yield run.start(), run.end()
            continue
        while i < len(groups):
            digits, found = "", None
            for j in range(i, len(groups)):
                digits += groups[j][2]
                if len(digits) > MAX_DIGITS:
                    break
                if len(digits) >= MIN_DIGITS and _card_groups([g[2] for g in groups[i : j + 1]]):
                    found = j  # the longest stretch from group i that is a card number
            if found is None:
                i += 1
                continue
            yield base + groups[i][0], base + groups[found][1]
            i = found + 1


def contains(text: object) -> bool:
    """True if `text` is a string holding a card number anywhere."""
    return isinstance(text, str) and next(find(text), None) is not None


def mask(text: str) -> str:
    """`text` with every card number replaced by MASK."""
    spans = list(find(text))
    if not spans:
        return text
    out, last = [], 0
    for start, end in spans:
        out += [text[last:start], MASK]
        last = end
    out.append(text[last:])
    return "".join(out)


def id_without_pan(make: Callable[[int], str], attempts: int = 64) -> str:
    """`make(attempt)` for the first attempt that holds no card number. A random UUID's digits
    read as one now and then (`41174806-5489-4d72-...`: 13 digits, Luhn-valid), and no stored or
    sent string may hold one; a deterministic id (uuid5) stays the same unless it does."""
    for attempt in range(attempts):
        text = make(attempt)
        if not contains(text):
            return text
    raise RuntimeError(f"no identifier without a card number in {attempts} attempts")
