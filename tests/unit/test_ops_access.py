"""A caller's x-request-id is accepted as a correlation id only in a safe shape."""

from __future__ import annotations

import pytest

from polyroute.ops.access import client_request_id


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, None),
        (b"", None),
        (b"abc-123_x.y:z/+=@", "abc-123_x.y:z/+=@"),
        (b"has spaces <and> \"quotes\"\r\n", "hasspacesandquotes"),
        (b"<>", None),
        (b"a" * 300, "a" * 128),
        ("caf\u00e9-\u00fc".encode(), "caf-"),
    ],
)
def test_client_request_id_is_sanitised(raw: bytes | None, expected: str | None) -> None:
    assert client_request_id(raw) == expected
