"""Key and team limits as both databases store them."""

from __future__ import annotations

import asyncio

import pytest

from polyroute.governance import manage
from polyroute.governance.keys import MAX_LIMIT, Limits, check_limits
from polyroute.governance.store import Store
from tests.helpers.governance import db_url  # noqa: F401
from tests.helpers.services import postgres  # noqa: F401


def test_limits_up_to_64_bits_are_stored(db_url: str) -> None:  # noqa: F811
    # A tpm in the trillions means "no practical limit"; PostgreSQL's INTEGER column refused it
    # and the admin API answered 500 (found by the benchmark's governed PostgreSQL row).
    async def main() -> None:
        store = Store.from_url(db_url)
        await store.open()
        try:
            team = await manage.ensure_team(store, "default")
            key, _ = await manage.create_key(store, team, "big", Limits(rpm=10**9, tpm=MAX_LIMIT), None)
            again = await store.key_by_ref(key.id)
            assert again is not None and again.limits.rpm == 10**9 and again.limits.tpm == MAX_LIMIT
        finally:
            await store.close()

    asyncio.run(main())


def test_limits_beyond_64_bits_are_refused_by_validation() -> None:
    assert check_limits({"tpm": MAX_LIMIT}) == {"tpm": MAX_LIMIT}
    with pytest.raises(ValueError, match="whole number from 1 to"):
        check_limits({"tpm": MAX_LIMIT + 1})
