"""The HTML reader: quoted attribute values never end a tag or hide the text after it.

Notices from some forces' systems carry attributes such as ``title="dd/mm/yyyy > born"`` or
``data-rule='a>b'``: a reader that ends the tag at the first ``>`` shows the rest of the value as
text and glues it to the next label, so the label is no longer recognised. Browsers read a quoted
value to its closing quote; so does sgalert, within a bound that keeps the reader linear.
"""

from __future__ import annotations

import time

from hypothesis import given, settings
from hypothesis import strategies as st

from sgalert.intake.htmltext import html_to_text

# Attribute values made of the characters that confuse a tag reader.
_VALUE = st.text(alphabet="<>\"'=/ !-ax", max_size=20)


def test_a_quoted_attribute_value_holding_a_tag_end_does_not_end_the_tag() -> None:
    html = (
        '<table><tr><td title="dd/mm/yyyy > born">DOB</td><td>14/03/2017</td></tr>'
        "<tr><td data-rule='a>b && c<d'>Child's name</td><td>Ada Invented</td></tr></table>"
        '<p><span title = "x>y" class=note>School:</span> Example First School</p>'
    )
    assert [line for line in html_to_text(html).splitlines() if line] == [
        "DOB: 14/03/2017",
        "Child's name: Ada Invented",
        "School: Example First School",
    ]


@settings(max_examples=300, deadline=None)
@given(value=_VALUE, quote=st.sampled_from(['"', "'"]), spaces=st.sampled_from(["", " "]))
def test_text_after_any_quoted_attribute_is_never_lost(value: str, quote: str, spaces: str) -> None:
    value = value.replace(quote, "")
    html = (
        f"<p class=intro title{spaces}={spaces}{quote}{value}{quote}>Before</p>"
        f"<p>Child's name: Ada Invented</p>"
    )
    text = html_to_text(html)
    assert text.splitlines() == ["Before", "", "Child's name: Ada Invented"]


@settings(max_examples=200, deadline=None)
@given(value=st.text(alphabet="<>\"'=/ ax", max_size=12))
def test_unquoted_or_broken_attributes_never_hide_a_later_paragraph(value: str) -> None:
    """Whatever an attribute holds, a later paragraph (with no quote to close one it opened)
    is read: broken markup in one tag never swallows the rest of the notice."""
    html = f"<p title={value}>x</p><p>Child name: Ada Invented</p>"
    assert "Child name: Ada Invented" in html_to_text(html)


def test_an_unclosed_quote_does_not_swallow_the_notice() -> None:
    """A quote never closed within a long stretch is not a value: the tag ends as before."""
    html = '<p title="unclosed>Intro</p>' + "<p>filler</p>" * 10_000 + "<p>DOB: 14/03/2017</p>"
    text = html_to_text(html)
    assert "DOB: 14/03/2017" in text and "Intro" in text


def _timed(html: str) -> float:
    start = time.perf_counter()
    html_to_text(html)
    return time.perf_counter() - start


def test_quoted_attribute_bombs_stay_bounded() -> None:
    """Each try at a quoted value that fails scans a bounded stretch, and a failed try means
    no closing quote in that stretch, so the next try starts beyond it: linear overall."""
    bombs = [
        '<a title="' * 400_000,
        "<a b='" * 400_000,
        "<a b=" * 400_000,
        ('<a b="' + "x" * 70_000) * 30,
        ('<a b="' + "<" * 70_000) * 30,
    ]
    for bomb in bombs:
        assert _timed(bomb) < 5
