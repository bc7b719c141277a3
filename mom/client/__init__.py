"""The Python client of mom: `Client` (blocking) and `AsyncClient` (trio or asyncio), with the same methods.

Errors are the `mom.errors` classes the server maps to its answers, re-exported here for convenience.
"""

from mom.client.aio import AsyncClient
from mom.client.sync import Client
from mom.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    MomError,
    NotFound,
    OutcomeUnknown,
    Overloaded,
    QueueFull,
    StorageError,
    TooLarge,
    Unauthorized,
    Unavailable,
)

__all__ = [
    "AsyncClient",
    "Client",
    "Conflict",
    "Forbidden",
    "InvalidInput",
    "MomError",
    "NotFound",
    "OutcomeUnknown",
    "Overloaded",
    "QueueFull",
    "StorageError",
    "TooLarge",
    "Unauthorized",
    "Unavailable",
]
