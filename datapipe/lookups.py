"""Tiered lookups: read through ordered stores, fastest first, writing found values back.

.. code-block:: python

    rates = Lookup("fx", tiers=[
        Memory(),                                   # this process, bounded
        Cache("default", timeout=3600),             # Django's cache (Redis in production)
        ModelTier(Rate, key="code", value="rate"),  # a table
        Function(fetch_rates),                      # fetch_rates(["USD", ...]) -> dict
    ])
    rates.get("USD")                    # LookupMissing if no tier has it
    rates.get_many(["USD", "EUR"], default=None)

:meth:`Lookup.get_many` asks each tier once for the keys still missing (one batched
call per tier), and writes what a tier found into every faster tier that takes
writes, each with its own expiry. A key found nowhere raises
:class:`~datapipe.exceptions.LookupMissing`, or gets ``default``.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

from .exceptions import LookupMissing

__all__ = ["Cache", "Function", "Lookup", "LookupMissing", "Memory", "ModelTier", "Tier"]

_MISSING = object()


class Tier:
    """A store a :class:`Lookup` reads. ``writable``: values found in slower tiers are
    written back into it. Subclasses implement :meth:`get_many` (and :meth:`set_many`)."""

    writable = True
    name = ""

    def bind(self, lookup_name: str) -> None:
        """Called once by the :class:`Lookup` the tier belongs to."""
        self.name = lookup_name

    def get_many(self, keys: list) -> dict:
        """The values of those of ``keys`` this tier holds (one call for all)."""
        raise NotImplementedError

    def set_many(self, values: dict) -> None:
        """Store ``values`` (found in a slower tier). The base stores nothing."""

    def __repr__(self):
        return f"{type(self).__name__}()"


class Memory(Tier):
    """A dict in this process, of at most ``size`` keys (the least recently used go
    first); ``timeout``: seconds a value is kept (None: until pushed out)."""

    def __init__(self, size: int = 10_000, timeout: float | None = None):
        if not isinstance(size, int) or size < 1:
            raise ValueError(f"size must be a positive integer, not {size!r}")
        self.size = size
        self.timeout = timeout
        self._values: OrderedDict[Any, tuple[Any, float | None]] = OrderedDict()
        self._lock = threading.Lock()

    def get_many(self, keys: list) -> dict:
        found, now = {}, time.monotonic()
        with self._lock:
            for key in keys:
                entry = self._values.get(key)
                if entry is None:
                    continue
                value, expires = entry
                if expires is not None and expires <= now:
                    del self._values[key]
                    continue
                self._values.move_to_end(key)
                found[key] = value
        return found

    def set_many(self, values: dict) -> None:
        expires = None if self.timeout is None else time.monotonic() + self.timeout
        with self._lock:
            for key, value in values.items():
                self._values[key] = (value, expires)
                self._values.move_to_end(key)
            while len(self._values) > self.size:
                self._values.popitem(last=False)

    def clear(self) -> None:
        """Forget every value."""
        with self._lock:
            self._values.clear()

    def __len__(self):
        return len(self._values)


class Cache(Tier):
    """Django's cache ``alias`` (``CACHES``); ``timeout``: seconds (None: the cache's
    default). Keys are ``datapipe.lookup:<lookup name>:<key>``."""

    def __init__(self, alias: str = "default", timeout: float | None = None):
        self.alias = alias
        self.timeout = timeout

    def __repr__(self):
        return f"Cache({self.alias!r}, timeout={self.timeout!r})"

    @property
    def cache(self):
        """The Django cache of ``alias``."""
        from django.core.cache import caches

        return caches[self.alias]

    def _key(self, key: Any) -> str:
        return f"datapipe.lookup:{self.name}:{key}"

    def get_many(self, keys: list) -> dict:
        names = {self._key(key): key for key in keys}
        return {names[name]: value for name, value in self.cache.get_many(list(names)).items()}

    def set_many(self, values: dict) -> None:
        from django.core.cache.backends.base import DEFAULT_TIMEOUT

        timeout = DEFAULT_TIMEOUT if self.timeout is None else self.timeout
        self.cache.set_many({self._key(key): value for key, value in values.items()},
                            timeout=timeout)


class ModelTier(Tier):
    """The rows of ``model``: ``key`` and ``value`` are field names. Values found in a
    slower tier are inserted as rows (existing keys kept) unless ``write=False``; rows
    do not expire."""

    def __init__(self, model, key: str, value: str, *, using: str | None = None,
                 write: bool = True):
        self.model = model
        self.key = key
        self.value = value
        self.using = using
        self.writable = write

    def __repr__(self):
        return f"ModelTier({self.model.__name__}, key={self.key!r}, value={self.value!r})"

    def _manager(self):
        manager = self.model._default_manager
        return manager.using(self.using) if self.using else manager

    def get_many(self, keys: list) -> dict:
        rows = self._manager().filter(**{f"{self.key}__in": keys})
        return dict(rows.values_list(self.key, self.value))

    def set_many(self, values: dict) -> None:
        self._manager().bulk_create(
            [self.model(**{self.key: key, self.value: value}) for key, value in values.items()],
            ignore_conflicts=True,
        )


class Function(Tier):
    """A callable given a list of missing keys and returning a dict of those it found
    (the slowest tier: an API, a computation). ``batch_size``: at most that many keys
    per call (None: all at once). It takes no writes."""

    writable = False

    def __init__(self, function: Callable[[list], dict], batch_size: int | None = None):
        if not callable(function):
            raise TypeError(f"Function needs a callable, not {function!r}")
        self.function = function
        self.batch_size = batch_size

    def __repr__(self):
        return f"Function({getattr(self.function, '__qualname__', self.function)!r})"

    def get_many(self, keys: list) -> dict:
        size = self.batch_size or len(keys)
        found: dict = {}
        for start in range(0, len(keys), size):
            got = self.function(keys[start:start + size])
            if not isinstance(got, dict):
                raise TypeError(f"{self!r} returned {type(got).__name__}, not a dict of the "
                                "keys it found")
            found.update(got)
        return found


class Lookup:
    """Values by key, read through ``tiers`` in order (see the module docstring).

    ``default``: what a key found nowhere gets (omitted: :class:`LookupMissing`).
    """

    def __init__(self, name: str, tiers: Iterable[Tier], default: Any = _MISSING):
        self.name = name
        self.tiers = list(tiers)
        if not self.tiers:
            raise ValueError(f"Lookup {name!r} needs at least one tier")
        for tier in self.tiers:
            if not isinstance(tier, Tier):
                raise TypeError(f"Lookup {name!r}: {tier!r} is not a tier (Memory, Cache, "
                                "ModelTier, Function)")
            tier.bind(name)
        self.default = default

    def __repr__(self):
        return f"Lookup({self.name!r}, tiers={self.tiers!r})"

    def get(self, key: Any, default: Any = _MISSING) -> Any:
        """The value of ``key`` (see :meth:`get_many`)."""
        return self.get_many([key], default=default)[key]

    def get_many(self, keys: Iterable, default: Any = _MISSING) -> dict:
        """``{key: value}`` for ``keys``: each tier asked once for the keys still missing,
        what it found written back into the faster writable tiers. Keys found nowhere
        get ``default`` (this call's, else the lookup's) or raise :class:`LookupMissing`."""
        wanted = list(dict.fromkeys(keys))
        found: dict = {}
        missing = wanted
        for position, tier in enumerate(self.tiers):
            if not missing:
                break
            got = tier.get_many(missing)
            got = {key: got[key] for key in missing if key in got}
            if not got:
                continue
            for faster in self.tiers[:position]:
                if faster.writable:
                    faster.set_many(got)
            found.update(got)
            missing = [key for key in missing if key not in got]
        if missing:
            default = self.default if default is _MISSING else default
            if default is _MISSING:
                shown = ", ".join(map(repr, missing[:5])) + (" ..." if len(missing) > 5 else "")
                raise LookupMissing(f"Lookup {self.name!r}: no value for {len(missing)} "
                                    f"key{'s' if len(missing) > 1 else ''} in any tier: {shown}")
            found.update(dict.fromkeys(missing, default))
        return {key: found[key] for key in wanted}
