"""Tiered lookups (datapipe.lookups): one call per tier per batch, write-back into the
faster tiers, expiry per tier, LookupMissing or a default. The cache tier is Django's
Redis cache on the PostgreSQL run (the test Redis) and the local-memory cache on SQLite."""

import os
import time
import uuid

import pytest
from django.core.cache import caches
from django.db import connection
from django.test import override_settings

from datapipe.exceptions import DatapipeError, LookupMissing
from datapipe.lookups import Cache, Function, Lookup, Memory, ModelTier
from tests.conftest import require
from tests.testapp.models import CodeItem


class Counted:
    """A Function tier's callable that counts its calls and the keys it was asked."""

    def __init__(self, values):
        self.values = values
        self.calls = []

    def __call__(self, keys):
        self.calls.append(list(keys))
        return {key: self.values[key] for key in keys if key in self.values}


@pytest.fixture
def cache_settings():
    """Redis (REDIS_URL) on PostgreSQL runs, local memory on SQLite; a fresh key prefix."""
    prefix = f"test-{uuid.uuid4().hex[:8]}"
    if connection.vendor == "postgresql":
        url = os.environ.get("REDIS_URL") or os.environ.get("CELERY_BROKER_URL")
        require(bool(url), "the Redis cache tier needs REDIS_URL")
        backend = {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": url,
                   "KEY_PREFIX": prefix}
    else:
        backend = {"BACKEND": "django.core.cache.backends.locmem.LocMemCache",
                   "LOCATION": prefix}
    with override_settings(CACHES={"default": backend}):
        yield backend
        if connection.vendor != "postgresql":  # never FLUSHDB the Redis the broker uses
            caches["default"].clear()


def test_each_tier_is_asked_once_for_the_keys_still_missing(cache_settings, db):
    CodeItem.objects.create(code="EUR", number=2)
    fetch = Counted({"USD": 1, "GBP": 3})
    memory = Memory()
    rates = Lookup("fx", tiers=[memory, Cache("default"), ModelTier(CodeItem, key="code",
                                                                   value="number"),
                                Function(fetch)])
    assert rates.get_many(["USD", "EUR", "GBP", "USD"]) == {"USD": 1, "EUR": 2, "GBP": 3}
    assert fetch.calls == [["USD", "GBP"]]
    # Written back: memory has all, the cache and the table what the function found.
    assert memory.get_many(["USD", "EUR", "GBP"]) == {"USD": 1, "EUR": 2, "GBP": 3}
    assert Cache("default").cache.get("datapipe.lookup:fx:GBP") == 3
    assert dict(CodeItem.objects.values_list("code", "number")) == {
        "EUR": 2, "USD": 1, "GBP": 3}
    memory.clear()
    assert rates.get("GBP") == 3 and fetch.calls == [["USD", "GBP"]]  # from the cache


def test_a_key_found_nowhere_raises_lookup_missing_or_gets_the_default():
    rates = Lookup("fx", tiers=[Memory(), Function(Counted({"USD": 1}))])
    with pytest.raises(LookupMissing, match="'fx': no value for 1 key in any tier: 'XYZ'"):
        rates.get("XYZ")
    assert issubclass(LookupMissing, DatapipeError)
    assert rates.get("XYZ", default=None) is None
    assert rates.get_many(["USD", "XYZ"], default=0) == {"USD": 1, "XYZ": 0}
    assert Lookup("fx", tiers=[Memory()], default=-1).get("A") == -1


def test_tiers_expire_each_after_its_own_timeout(cache_settings):
    fetch = Counted({"USD": 1})
    memory = Memory(timeout=0.2)
    rates = Lookup("fx.expiry", tiers=[memory, Cache("default", timeout=1),
                                       Function(fetch)])
    assert rates.get("USD") == 1 and len(fetch.calls) == 1
    assert rates.get("USD") == 1 and len(fetch.calls) == 1
    time.sleep(0.3)
    assert memory.get_many(["USD"]) == {}
    assert rates.get("USD") == 1 and len(fetch.calls) == 1  # the cache still has it
    time.sleep(1.2)
    memory.clear()
    assert rates.get("USD") == 1 and len(fetch.calls) == 2


def test_the_memory_tier_is_bounded():
    memory = Memory(size=2)
    rates = Lookup("fx", tiers=[memory, Function(lambda keys: {k: k * 2 for k in keys})])
    assert rates.get_many([1, 2, 3]) == {1: 2, 2: 4, 3: 6}
    assert len(memory) == 2 and memory.get_many([1, 2, 3]) == {2: 4, 3: 6}


def test_a_function_tier_batches_its_calls():
    fetch = Counted({n: n for n in range(10)})
    rates = Lookup("n", tiers=[Function(fetch, batch_size=4)])
    assert rates.get_many(range(10)) == {n: n for n in range(10)}
    assert [len(call) for call in fetch.calls] == [4, 4, 2]


def test_a_read_only_model_tier_takes_no_writes(db):
    rates = Lookup("fx", tiers=[ModelTier(CodeItem, key="code", value="number", write=False),
                                Function(Counted({"USD": 1}))])
    assert rates.get("USD") == 1 and not CodeItem.objects.exists()
    with pytest.raises(TypeError, match="not a tier"):
        Lookup("bad", tiers=[{}])
