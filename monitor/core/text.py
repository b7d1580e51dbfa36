"""The one rule for text that came from outside: bounded in length and safe wherever it goes.

Text the API sends ends up in four places, and each breaks on something different:

* Prometheus label values: the text format escapes only ``\\``, ``"`` and newline, so any
  other control character reaches every scraper raw, and a label value must stay on one line;
* JSON lines in the file sink, written with ``ensure_ascii=False`` and encoded UTF-8 strictly:
  a lone surrogate (valid JSON, ``"\\ud800"``) fails the encoding, for that event and every
  retry of it;
* the HTML pages and the logs, which encode UTF-8 too and should not carry terminal control
  sequences;
* memory: one 5 MB value is copied into every label set of its job.

The code points a ``str`` can hold that UTF-8 cannot encode are the surrogates. ``json.loads``
joins an escaped pair (``"\\ud83d\\ude00"``) into one code point, but keeps a lone escape as a
surrogate, and so is any surrogate sent as raw bytes (it decodes bytes with ``surrogatepass``,
and a raw pair stays two surrogates). Replacing each surrogate, and the control characters,
makes any text encodable; clipping makes it small.

The rule, applied once where text enters (``modelarts/parse.py``):

1. clip first, so a huge value costs one slice and never a scan: at most ``limit``
   characters, and text that was cut ends in ``…``;
2. then replace with U+FFFD (the replacement character) every surrogate (U+D800..U+DFFF),
   every control character (C0 U+0000..U+001F, DEL U+007F, C1 U+0080..U+009F) and the
   Unicode line and paragraph separators (U+2028, U+2029).
   Free text (``free_text``: messages and reasons, shown in events and pages) keeps tab and
   newline, which messages use to lay themselves out and every sink escapes; one-line text
   (``label_text``: whatever may become a label value or an identifier) keeps neither.

Each replaced code point becomes exactly one, so step 2 never lengthens what step 1 bounded.
"""

from __future__ import annotations

import re

TEXT_LIMIT = 300
"""Longest free text (a reason, a message) kept; longer text is cut with ``…``."""
LABEL_LIMIT = 128
"""Longest one-line text (a label value, an enum, a task name) kept; longer is cut with ``…``.
Every documented value of these fields is far shorter; the limit only stops a hostile one."""
REPLACEMENT = "\ufffd"
ELLIPSIS = "…"

_ONE_LINE_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
_FREE_TEXT_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


def clip(text: str, limit: int = TEXT_LIMIT) -> str:
    """At most ``limit`` characters (``limit`` >= 1); text that was cut ends in ``…``."""
    return text if len(text) <= limit else text[: limit - 1] + ELLIPSIS


def first_unsafe(text: str) -> str | None:
    """The first character ``label_text`` would replace, or None: for input that is refused
    rather than cleaned (the config)."""
    found = _ONE_LINE_UNSAFE.search(text)
    return found[0] if found else None


def label_text(text: str, limit: int = LABEL_LIMIT) -> str:
    """One line of encodable text, at most ``limit`` characters: fit to be a label value."""
    return _ONE_LINE_UNSAFE.sub(REPLACEMENT, clip(text, limit))


def free_text(text: str, limit: int = TEXT_LIMIT) -> str:
    """Encodable text of at most ``limit`` characters that may keep its tabs and newlines."""
    return _FREE_TEXT_UNSAFE.sub(REPLACEMENT, clip(text, limit))
