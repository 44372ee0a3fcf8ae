"""Free text people type: what of it can be seen, and whether it says anything."""

from __future__ import annotations

import unicodedata

from django.core.exceptions import ValidationError

from chestnet_site.errors import ServiceError

# Unicode's "other" characters: control, format (zero-width spaces and joiners, direction
# marks, soft hyphens), surrogate, private use and unassigned.
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn"})
# Characters Unicode files as letters or marks that nonetheless show nothing: the Hangul
# fillers, the Mongolian free variation selectors, the combining grapheme joiner, the
# variation selectors, and the blank braille pattern.
_BLANK = frozenset(
    "\u034f\u115f\u1160\u17b4\u17b5\u180b\u180c\u180d\u180f\u2800\u3164\uffa0"
    + "".join(chr(code) for code in range(0xFE00, 0xFE10))
    + "".join(chr(code) for code in range(0xE0100, 0xE01F0))
)


class WordsRequired(ServiceError, ValidationError):
    """A reason or note without enough visible letters. A ServiceError for the services'
    callers, and a ValidationError, so a form or a serializer that checks it answers 400
    with the message."""

    def __init__(self, message: str) -> None:
        ValidationError.__init__(self, message, code="words_required")

    def __str__(self) -> str:
        return str(self.message)


def visible(text: str) -> str:
    """`text` in Unicode's compatibility form (NFKC: full-width letters, ligatures and
    no-break spaces become the plain ones), with runs of white space made one space, and
    invisible characters (control and format characters such as zero-width spaces and
    joiners, direction marks and soft hyphens; fillers that show nothing) removed: a reason
    made only of them is empty, not a reason."""
    normal = unicodedata.normalize("NFKC", text)
    kept = "".join(
        ch
        for ch in normal
        if ch in "\t\n"
        or (unicodedata.category(ch) not in _INVISIBLE_CATEGORIES and ch not in _BLANK)
    )
    return " ".join(kept.split())


def letters(text: str) -> int:
    """How many letters (of any script) `text` holds."""
    return sum(1 for ch in text if unicodedata.category(ch).startswith("L") and ch not in _BLANK)


def require_words(text: str, *, field: str, minimum_letters: int = 3) -> str:
    """`text` as `visible` makes it, if it holds at least `minimum_letters` letters; raises
    WordsRequired otherwise. `field` names what was asked for ("the reason for the
    amendment"): the message says what to give."""
    shown = visible(text or "")
    if letters(shown) < minimum_letters:
        raise WordsRequired(
            f"Give {field} in words (at least {minimum_letters} letters); "
            "invisible characters, spaces and punctuation alone do not count."
        )
    return shown
