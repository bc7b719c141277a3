"""The per-node security state the routes consult: accounts and revocations, quotas, login throttling."""

from __future__ import annotations

from dataclasses import dataclass

from mom.api.auth.revocation import AccountChanges, LiveAccounts
from mom.api.auth.throttle import Allowance, LoginThrottle
from mom.api.metrics import Metrics
from mom.api.quotas import Quotas
from mom.config import Settings


@dataclass(frozen=True)
class Guard:
    accounts: LiveAccounts
    changes: AccountChanges
    quotas: Quotas
    logins: LoginThrottle

    @classmethod
    def build(cls, settings: Settings, accounts: LiveAccounts, metrics: Metrics) -> Guard:
        auth = settings.auth
        return cls(
            accounts=accounts,
            changes=AccountChanges(),
            quotas=Quotas(settings.quotas, metrics),
            logins=LoginThrottle(
                name=Allowance(auth.login_free_failures, auth.login_max_lockout_s),
                address=Allowance(auth.address_free_failures, auth.address_max_lockout_s),
            ),
        )
