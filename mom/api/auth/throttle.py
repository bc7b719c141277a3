"""Login throttling: failed token requests lock a name, and an address, for a time that doubles per failure.

Guessing needs many tries; each failure beyond a few free ones locks the account name (and, with a higher
allowance, the client address) for 1 s, 2 s, 4 s ... up to a cap. While locked, a token request is answered 429
with Retry-After at once, before any password hashing, so a guesser gets a few tries per cap period instead of
hundreds per second, and spends no server CPU. The cap bounds what an attacker can do to the real user: after
the attacker's last failure the name is free again within `max_lockout_s`, and a successful login clears the
name's record. Records are forgotten after `forget_after_s` without failures, and at most `max_entries` are
kept (the oldest go first), so memory stays bounded under a flood of names.

Per node: a guesser spreading tries over N nodes gets N times the rate, which the cap still bounds.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from mom.errors import LoginThrottled


@dataclass
class _Record:
    failures: int = 0
    locked_until: float = 0.0
    last_failure: float = 0.0


@dataclass(frozen=True)
class Allowance:
    free_failures: int
    max_lockout_s: float


class _Book:
    def __init__(self, allowance: Allowance, forget_after_s: float, max_entries: int) -> None:
        self.allowance = allowance
        self._forget_after_s = forget_after_s
        self._max_entries = max_entries
        self._records: OrderedDict[str, _Record] = OrderedDict()

    def locked_for(self, key: str, now: float) -> float:
        record = self._get(key, now)
        return 0.0 if record is None else max(0.0, record.locked_until - now)

    def fail(self, key: str, now: float) -> float:
        """Count a failure; the lock it starts (0 while within the allowance)."""
        record = self._get(key, now) or _Record()
        record.failures += 1
        record.last_failure = now
        beyond = record.failures - self.allowance.free_failures
        lock = 0.0 if beyond <= 0 else min(self.allowance.max_lockout_s, 2.0 ** min(beyond - 1, 30))
        record.locked_until = now + lock
        self._records[key] = record
        self._records.move_to_end(key)
        while len(self._records) > self._max_entries:
            self._records.popitem(last=False)
        return lock

    def clear(self, key: str) -> None:
        self._records.pop(key, None)

    def _get(self, key: str, now: float) -> _Record | None:
        record = self._records.get(key)
        if record is not None and now - record.last_failure > max(self._forget_after_s, record.locked_until - now):
            del self._records[key]
            return None
        return record


class LoginThrottle:
    """Per-name and per-address failure books of one node. `check` before a login, then `failed`/`succeeded`."""

    def __init__(
        self,
        *,
        name: Allowance,
        address: Allowance,
        clock: Callable[[], float] = time.monotonic,
        forget_after_s: float = 900.0,
        max_entries: int = 10_000,
    ) -> None:
        self._clock = clock
        self._names = _Book(name, forget_after_s, max_entries)
        self._addresses = _Book(address, forget_after_s, max_entries)

    def check(self, name: str | None, address: str | None) -> None:
        """LoginThrottled (with the wait) if the name or the address is locked now."""
        now = self._clock()
        wait = max(
            self._names.locked_for(name.lower(), now) if name else 0.0,
            self._addresses.locked_for(address, now) if address else 0.0,
        )
        if wait > 0:
            error = LoginThrottled(
                f"too many failed logins for this account or from this address; retry in {math.ceil(wait)} s"
            )
            error.retry_after_s = float(math.ceil(wait))
            raise error

    def failed(self, name: str | None, address: str | None) -> float:
        """Record a failed login; returns the lock it started (0 if none), for the log."""
        now = self._clock()
        lock = self._names.fail(name.lower(), now) if name else 0.0
        if address:
            lock = max(lock, self._addresses.fail(address, now))
        return lock

    def succeeded(self, name: str | None) -> None:
        """A correct password clears the name's failures (not the address's: one valid account must not let a
        guesser reset its address's count between tries)."""
        if name:
            self._names.clear(name.lower())
