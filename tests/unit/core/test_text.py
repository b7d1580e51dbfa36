"""core/text.py: outside text comes out short and safe to encode, render and log."""

from __future__ import annotations

import json
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.core.text import LABEL_LIMIT, TEXT_LIMIT, clip, first_unsafe, free_text, label_text

R = "\ufffd"

HOSTILE = [
    ("\ud800", R),
    ("\udfff", R),
    ("a\ud83dz", f"a{R}z"),  # half of a pair, as json.loads leaves it: lone
    ("\ud83d\ude00", f"{R}{R}"),  # a pair sent as raw bytes: json.loads keeps two surrogates
    ("nul\x00", f"nul{R}"),
    ("bell\x07 esc\x1b[31m", f"bell{R} esc{R}[31m"),
    ("del\x7f", f"del{R}"),
    ("c1\x85\x9f", f"c1{R}{R}"),
    ("cr\r", f"cr{R}"),
    ("ls\u2028ps\u2029", f"ls{R}ps{R}"),
]
KEPT = ["train-a", "训练作业", "emoji 😀", 'quote " and \\ backslash', "ünïcödé", ""]


@pytest.mark.parametrize(("raw", "clean"), HOSTILE)
def test_label_text_replaces_what_cannot_be_encoded_or_shown_on_one_line(
    raw: str, clean: str
) -> None:
    assert label_text(raw) == clean


@pytest.mark.parametrize(("raw", "clean"), HOSTILE)
def test_free_text_replaces_the_same_characters(raw: str, clean: str) -> None:
    assert free_text(raw) == clean


@pytest.mark.parametrize("raw", ["line one\nline two", "col\tcol"])
def test_free_text_keeps_tabs_and_newlines_a_label_does_not(raw: str) -> None:
    assert free_text(raw) == raw
    assert label_text(raw) == raw.replace("\n", R).replace("\t", R)


@pytest.mark.parametrize("raw", KEPT)
def test_printable_text_of_any_script_is_kept_as_it_is(raw: str) -> None:
    assert label_text(raw) == raw and free_text(raw) == raw


@pytest.mark.parametrize(
    ("text", "limit", "expected"),
    [
        ("abc", 3, "abc"),
        ("abcd", 3, "ab…"),
        ("x" * 64, 64, "x" * 64),
        ("x" * 65, 64, "x" * 63 + "…"),
        ("", 5, ""),
    ],
)
def test_clip_cuts_long_text_to_the_limit_and_marks_the_cut(
    text: str, limit: int, expected: str
) -> None:
    assert clip(text, limit) == expected


def test_a_five_megabyte_value_comes_out_at_the_limit() -> None:
    huge = "n" * 5_000_000
    assert label_text(huge) == "n" * (LABEL_LIMIT - 1) + "…"
    assert free_text(huge) == "n" * (TEXT_LIMIT - 1) + "…"
    assert len(label_text(huge, 64)) == 64


def test_replacement_never_lengthens_clipped_text() -> None:
    dirty = "\ud800\x00" * 1000
    assert len(label_text(dirty, 64)) == 64
    assert label_text(dirty, 64) == R * 63 + "…"


ANY_TEXT = st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=400)


@settings(max_examples=300, deadline=None)
@given(text=ANY_TEXT, limit=st.integers(min_value=1, max_value=200))
def test_any_text_comes_out_encodable_bounded_and_without_control_characters(
    text: str, limit: int
) -> None:
    for cleaned, kept in ((label_text(text, limit), ""), (free_text(text, limit), "\t\n")):
        assert len(cleaned) <= limit
        cleaned.encode("utf-8")  # strict: what the file sink and the pages do
        json.dumps(cleaned, ensure_ascii=False).encode("utf-8")
        for ch in cleaned:
            assert ch in kept or unicodedata.category(ch) not in {"Cc", "Cs", "Zl", "Zp"}, ch


@pytest.mark.parametrize(
    ("text", "found"),
    [("plain", None), ("a\tb", "\t"), ("x\u2028y", "\u2028"), ("\ud800", "\ud800"), ("é✓", None)],
)
def test_first_unsafe_names_the_first_character_label_text_would_replace(
    text: str, found: str | None
) -> None:
    assert first_unsafe(text) == found
    assert (label_text(text) == text) is (found is None)
