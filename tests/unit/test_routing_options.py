"""Per-request options: `x-polyroute-*` headers merged with the body's `polyroute` object."""

from __future__ import annotations

import pytest

from polyroute.core import types as t
from polyroute.core.errors import InvalidRequest
from polyroute.inbound.options import merge


def h(**kw: str) -> list[tuple[bytes, bytes]]:
    return [(b"content-type", b"application/json")] + [
        (("x-polyroute-" + k.replace("_", "-")).encode(), v.encode()) for k, v in kw.items()
    ]


def test_no_headers_keeps_the_body_object() -> None:
    body = t.RequestOptions(retries=1)
    assert merge(body, h()) is body
    assert merge(None, h()) is None


def test_every_header() -> None:
    o = merge(
        None,
        h(timeout="2.5", retries="1", fallbacks="false", models="a, b", providers_allowed="x,y",
          providers_excluded="z", max_price="3", tags="team-a, batch", end_user="u1", sticky_key="conv"),
    )
    assert o == t.RequestOptions(
        timeout=2.5, retries=1, fallbacks=False, models=["a", "b"], providers_allowed=["x", "y"],
        providers_excluded=["z"], max_price_per_million=3.0, tags=["team-a", "batch"], end_user="u1",
        sticky_key="conv",
    )


def test_body_wins_over_headers_which_fill_the_gaps() -> None:
    o = merge(t.RequestOptions(retries=3, tags=["body"]), h(retries="0", timeout="9"))
    assert o is not None and o.retries == 3 and o.timeout == 9.0 and o.tags == ["body"]


@pytest.mark.parametrize(
    ("headers", "fragment"),
    [
        (h(timeout="soon"), "x-polyroute-timeout"),
        (h(fallbacks="maybe"), "true or false"),
        (h(retris="1"), "unknown header 'x-polyroute-retris'"),
        (h(timeout="0"), "polyroute.timeout"),
        (h(retries="11"), "polyroute.retries"),
        (h(max_price="-1"), "max_price_per_million"),
    ],
)
def test_bad_values_are_400_naming_the_option(headers: list[tuple[bytes, bytes]], fragment: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        merge(None, headers)
    assert fragment in info.value.message


def test_body_values_are_validated_too() -> None:
    with pytest.raises(InvalidRequest, match=r"polyroute\.timeout"):
        merge(t.RequestOptions(timeout=-1), h())
