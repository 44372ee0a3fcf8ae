"""How strong a secret looks from its text alone: the settings refuse a production SECRET_KEY
estimated below MIN_BITS. An estimate, not a proof: it cannot tell a random key from a
memorable sentence of the same alphabet, but it refuses the short, the narrow and the
repeated (`abcde` ten times, `password` seven times) and passes what the usual generators
make (Django's get_random_secret_key, `openssl rand -hex 32`, secrets.token_urlsafe)."""

from __future__ import annotations

import math
import string

MIN_BITS = 256
# A stretch repeating an earlier one for at least this many characters adds nothing but the
# repeat itself. Long enough that a random key almost never holds one by chance (64 random
# hex characters: about 4 in 10 million), short enough to catch a repeated word or pattern.
MIN_REPEAT = 8
_CLASSES = (string.ascii_lowercase, string.ascii_uppercase, string.digits)
_OTHER = 33  # printable ASCII punctuation and the space
_HEX = (set("0123456789abcdef"), set("0123456789ABCDEF"))
# Only the first this many characters are read (the search for repeats is quadratic); no
# key needs more to reach MIN_BITS.
_READ = 512


def estimated_bits(secret: str) -> float:
    """Symbols x log2(alphabet). The alphabet is the sum of the classes the secret draws on
    (lowercase 26, uppercase 26, digits 10, anything else 33; 16 for hexadecimal); each
    repeat of an earlier stretch of MIN_REPEAT or more characters counts as one symbol."""
    secret = secret[:_READ]
    if not secret:
        return 0.0
    return _symbols(secret) * math.log2(_alphabet(secret))


def _alphabet(secret: str) -> int:
    used = set(secret)
    size = sum(len(chars) for chars in _CLASSES if used & set(chars))
    if used - set("".join(_CLASSES)):
        size += _OTHER
    if any(used <= hexadecimal for hexadecimal in _HEX):
        size = min(size, 16)
    return max(size, 2)


def _symbols(secret: str) -> int:
    """Greedy left-to-right: a repeat of MIN_REPEAT or more characters is one symbol."""
    count = position = 0
    while position < len(secret):
        repeat = _longest_repeat(secret, position)
        position += repeat if repeat >= MIN_REPEAT else 1
        count += 1
    return count


def _longest_repeat(secret: str, position: int) -> int:
    """The longest match of the text from `position` with text starting before it (the
    match may run into `position` itself, so `abcabcabc` is `abc` and one repeat)."""
    longest = 0
    for start in range(position):
        length = 0
        while (
            position + length < len(secret) and secret[start + length] == secret[position + length]
        ):
            length += 1
        longest = max(longest, length)
    return longest
