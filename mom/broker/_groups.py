"""Message groups of a FIFO queue: which messages may be delivered now without breaking a group's order.

A group's messages leave in publish order, and while any of them is in flight (leased) the group gives out no
other. Members are kept per group in offset order (dicts keep insertion order, and offsets only grow), so the
head of a group is its oldest message. Deliveries of a group always start at its head and take consecutive
visible members, so the members ever delivered form a prefix of the group: looking for a lease in that prefix
is enough to know whether the group is blocked, whatever its backlog.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Protocol

from mom.broker._leases import LEASED, READY


class Member(Protocol):
    deliveries: int
    state: int
    group_id: str | None


class FifoGroups:
    __slots__ = ("_members",)

    def __init__(self, records: Mapping[int, Member]) -> None:
        self._members: dict[str, dict[int, None]] = {}
        for offset, record in records.items():
            self.add(group_of(record, offset), offset)

    def add(self, group: str, offset: int) -> None:
        self._members.setdefault(group, {})[offset] = None

    def remove(self, group: str, offset: int) -> None:
        members = self._members.get(group)
        if members is not None:
            members.pop(offset, None)
            if not members:
                del self._members[group]

    def clear(self) -> None:
        self._members.clear()

    def _open(self, members: dict[int, None], records: Mapping[int, Member]) -> bool:
        """True when no member of the group is leased and its head is visible."""
        head = True
        for offset in members:
            record = records[offset]
            if head and record.state != READY:
                return False
            head = False
            if record.deliveries == 0:
                return True
            if record.state == LEASED:
                return False
        return True

    def available(self, records: Mapping[int, Member]) -> list[tuple[int, str]]:
        """(head offset, group) of every group that may deliver now, oldest head first."""
        heads = [
            (next(iter(members)), group) for group, members in self._members.items() if self._open(members, records)
        ]
        heads.sort()
        return heads

    def deliverable(self, group: str, records: Mapping[int, Member]) -> Iterator[int]:
        """The group's visible members from its head, stopping at the first that is not visible."""
        for offset in list(self._members.get(group, ())):
            if records[offset].state != READY:
                return
            yield offset


def group_of(record: Member, offset: int) -> str:
    """A message without a group (a dead letter from elsewhere) is a group of its own."""
    return record.group_id if record.group_id is not None else f"\x00{offset}"
