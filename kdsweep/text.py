"""Text for people: did-you-mean suggestions and URLs with their passwords hidden."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable

# scheme://user:secret@host and scheme://:secret@host (the user may be empty)
_PASSWORD = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.\-]*://[^:/@\s]*):[^@\s]*@")
# ...?password=secret&... (libpq and SQLAlchemy query parameters)
_QUERY_PASSWORD = re.compile(r"(?P<key>[?&](?:password|passwd|pwd|secret|token)=)[^&#\s]*", re.I)


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` when a close candidate exists, else ``""``."""
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def redact_url(url: str) -> str:
    """``postgresql://user:secret@host/db`` -> ``postgresql://user:***@host/db``; also a
    password without a user and one in the query string (``?password=...``)."""
    return _QUERY_PASSWORD.sub(r"\g<key>***", _PASSWORD.sub(r"\g<scheme>:***@", url))


_ROLE = re.compile(r":[a-z]+:`~?([^`]+)`")  # :class:`~pkg.Name`, :func:`name`
_LITERAL = re.compile(r"``([^`]+)``")


def plain_text(text: str) -> str:
    """A docstring's reStructuredText as plain words: ``x`` -> x, :class:`~a.B` -> B,
    and its lines joined into one paragraph."""
    text = _ROLE.sub(lambda m: m.group(1).rsplit(".", 1)[-1], text)
    return " ".join(_LITERAL.sub(r"\1", text).split())
