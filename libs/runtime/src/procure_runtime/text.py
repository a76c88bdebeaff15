"""Text no database of ours can store, found in a JSON document before it is applied.

PostgreSQL's text cannot hold U+0000, and no UTF-8 text holds half of a UTF-16
surrogate pair (`"\\ud800"` alone), which JSON can escape and Python's parser accepts.
SQLite stored the first and failed on the second; PostgreSQL refused both, deep in a
handler. They are refused where they enter, the same on every database: a request is a
422, an event a dead letter (`invalid-data`)."""

import json
import re
from typing import Any

NUL = "NUL characters are not allowed"
LONE_SURROGATE = "unpaired UTF-16 surrogates (\\ud800-\\udfff alone) are not allowed"

#: The escapes that can spell such text (a raw NUL byte is not JSON at all). A pair, as
#: an emoji is escaped, matches too and is then found fine by the parse.
_SUSPECT = re.compile(rb"\\u(?:0000|[dD][89a-fA-F][0-9a-fA-F]{2})")


def unstorable_text(raw: bytes) -> str | None:
    """Why the JSON document `raw` holds text no database can store, or None. Only a
    document that escapes U+0000 or a surrogate is parsed: for the rest this is one scan
    of the bytes."""
    if _SUSPECT.search(raw) is None:
        return None
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError):
        return None  # not JSON: its own validation says so
    stack: list[Any] = [doc]
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            if "\x00" in value:
                return NUL
            try:
                value.encode()
            except UnicodeEncodeError:
                return LONE_SURROGATE
        elif isinstance(value, dict):
            stack.extend(value)  # the keys are text too
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return None
