"""`unstorable_text` finds U+0000 and lone surrogates anywhere in a JSON document, keys
included, and nothing else: a surrogate pair, or a backslash followed by `u0000`, is
text like any other."""

import pytest

from procure_runtime.text import LONE_SURROGATE, NUL, unstorable_text


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (rb'{"a": "x\u0000y"}', NUL),
        (rb'{"a": [{"b": ["ok", "\u0000"]}]}', NUL),
        (rb'{"\u0000": 1}', NUL),
        (rb'{"a": "\ud800"}', LONE_SURROGATE),
        (rb'{"a": "\uDFFF x"}', LONE_SURROGATE),
        (rb'{"a": "\ud83d\ude00"}', None),  # an emoji, escaped as a pair
        (rb'{"a": "\\u0000"}', None),  # a backslash, then the text "u0000"
        (rb'{"a": "plain", "n": 0}', None),
        (rb'{"a": "\u0000', None),  # not JSON: its own validation says so
    ],
)
def test_what_no_database_can_store_is_found(raw: bytes, why: str | None) -> None:
    assert unstorable_text(raw) == why
