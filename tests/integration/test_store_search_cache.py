"""Store contract, SearchCachePort: the search cache and its active index.

Runs on the embedded SQLite and on a real Cassandra 5.0 (the `store` fixture)."""
from __future__ import annotations

import datetime as dt

import pytest

from tests.support import random_account

pytestmark = pytest.mark.integration

T0 = dt.datetime(2026, 3, 1, 12, 0, 0, 123000, tzinfo=dt.timezone.utc)


def test_search_cache_transitions_and_active_index(store):
    acct = random_account()
    assert store.get_search("public", acct) is None
    assert store.transition_search("public", acct, None, "PENDING", created_at=T0, updated_at=T0)
    assert not store.transition_search("public", acct, None, "PENDING", created_at=T0, updated_at=T0)
    active = {(r["network_name"], r["stellar_account"]): r for r in store.list_active("cache")}
    assert active[("public", acct)]["status"] == "PENDING"
    assert store.transition_search("public", acct, ["PENDING"], "COMPLETE", cached_json='{"a":1}', last_fetched_at=T0)
    assert ("public", acct) not in {(r["network_name"], r["stellar_account"]) for r in store.list_active("cache")}
    entry = store.get_search("public", acct)
    assert entry.status == "COMPLETE" and entry.cached_json == '{"a":1}' and entry.last_fetched_at == T0
