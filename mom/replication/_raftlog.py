"""The in-memory view of one group's log: a snapshot base, the entries after it, and what of it is durable.

Raft's safety rests on what is on disk, so the log tracks the boundary between durable and not-yet-durable
entries itself: `stable` is the last index known to be identical on disk and in memory, and `disk_last` the
last index the disk may hold (beyond `stable` after a conflict truncated memory), which tells the driver when
it must drop a suffix of its persisted log before appending.
"""

from __future__ import annotations

from msgspec import Struct

from mom.replication.membership import Membership, decode_config, is_config
from mom.replication.messages import LogEntry


class HardState(Struct, frozen=True):
    """What must be durable before any message that depends on it leaves the node."""

    term: int = 0
    voted_for: str | None = None
    commit: int = 0
    learner: bool = False
    """This replica lost entries it may have acknowledged (damaged log, replaced disk): it must not vote or stand
    for election until it has caught up with a leader."""
    member: bool = False
    """This replica has taken its place in the group (as a voter of a new group, or as a learner): from then on
    it tells a replica that starts empty that the group exists, even if it holds nothing else yet."""


class Snapshot(Struct, frozen=True):
    """The state machine at `index`; `term` is the term of the entry at `index` (0 for the empty snapshot).

    What the driver stores and restores; the Raft core sees only its `SnapshotMeta` and never holds the data.
    """

    index: int = 0
    term: int = 0
    data: bytes = b""
    membership: Membership | None = None
    """The group's configuration at `index` (None: no configuration entry ever reached the log, so the replicas
    use the one they are constructed with)."""

    @property
    def meta(self) -> SnapshotMeta:
        return SnapshotMeta(self.index, self.term, self.membership)


class SnapshotMeta(Struct, frozen=True):
    """Which snapshot: the log position it stands for. The data stays with the driver (on disk)."""

    index: int = 0
    term: int = 0
    membership: Membership | None = None
    """The configuration at `index`, as in `Snapshot`."""


class PersistedState(Struct, frozen=True):
    """What survived on disk: a fresh node passes `PersistedState()`."""

    hard_state: HardState = HardState()
    snapshot: Snapshot = Snapshot()
    entries: list[LogEntry] = []
    """The entries after `snapshot.index`, in order."""

    @property
    def empty(self) -> bool:
        """Nothing at all: a replica that never ran, or whose disk was wiped (it cannot tell which alone)."""
        return self.hard_state == HardState() and not self.snapshot.index and not self.entries


class RaftLog:
    """Entries `snapshot.index + 1 .. last_index`, with the snapshot they follow, and the configurations they
    hold (the latest one, appended or committed, is the group's: see `mom.replication.membership`)."""

    def __init__(self, snapshot: SnapshotMeta, entries: list[LogEntry], fallback: Membership) -> None:
        self.snapshot = snapshot
        self._entries: list[LogEntry] = []
        self._fallback = fallback
        """The configuration the replica was constructed with: used while neither snapshot nor log holds one."""
        self._configs: list[tuple[int, Membership]] = []
        """(index, configuration) of every configuration entry in the log, in order."""
        self.version = 0
        """Bumped on every change, so observers (the simulation's checkers) can skip unchanged logs."""
        self.append(list(entries))
        self.version = 0
        self.stable = self.last_index
        self.disk_last = self.last_index

    @property
    def first_index(self) -> int:
        return self.snapshot.index + 1

    @property
    def last_index(self) -> int:
        return self.snapshot.index + len(self._entries)

    @property
    def last_term(self) -> int:
        return self._entries[-1].term if self._entries else self.snapshot.term

    @property
    def config(self) -> Membership:
        """The group's configuration: the latest in the log, else the snapshot's, else the fallback."""
        if self._configs:
            return self._configs[-1][1]
        return self.snapshot.membership or self._fallback

    @property
    def previous_config(self) -> Membership:
        """The configuration the latest configuration entry replaced (`config` itself when there is none)."""
        if len(self._configs) >= 2:
            return self._configs[-2][1]
        return self.snapshot.membership or self._fallback

    @property
    def config_is_explicit(self) -> bool:
        """The configuration comes from a configuration entry or a snapshot, not from the fallback."""
        return bool(self._configs) or self.snapshot.membership is not None

    @property
    def config_index(self) -> int:
        """The index of the entry that made `config` the configuration (the snapshot's index when the snapshot
        or the fallback did: committed either way)."""
        return self._configs[-1][0] if self._configs else self.snapshot.index

    def explicit_config_at(self, index: int) -> Membership | None:
        """The configuration in force at `index` (>= the snapshot's), or None when it is the fallback (what a
        snapshot at `index` records)."""
        found = self.snapshot.membership
        for at, config in self._configs:
            if at > index:
                break
            found = config
        return found

    def configs(self) -> list[tuple[int, Membership]]:
        """(index, configuration) of the configuration entries in the log."""
        return list(self._configs)

    def term_at(self, index: int) -> int | None:
        """The term of the entry at `index`, or None when it was compacted away or does not exist yet."""
        if index == self.snapshot.index:
            return self.snapshot.term
        if self.snapshot.index < index <= self.last_index:
            return self._entries[index - self.snapshot.index - 1].term
        return None

    def entry(self, index: int) -> LogEntry:
        return self._entries[index - self.snapshot.index - 1]

    def slice(self, start: int, stop: int) -> list[LogEntry]:
        """Entries `start .. stop - 1` (all must be present)."""
        offset = self.snapshot.index + 1
        return self._entries[start - offset : stop - offset]

    def is_up_to_date(self, last_index: int, last_term: int) -> bool:
        """The election restriction: is a log ending at (last_index, last_term) as complete as ours?"""
        return (last_term, last_index) >= (self.last_term, self.last_index)

    def append(self, entries: list[LogEntry]) -> None:
        first = self.last_index + 1
        self._entries.extend(entries)
        self._configs.extend((first + i, decode_config(e)) for i, e in enumerate(entries) if is_config(e))
        self.version += 1

    def truncate_after(self, index: int) -> None:
        """Drop entries after `index` (a conflict with the leader); the disk must drop them too."""
        del self._entries[index - self.snapshot.index :]
        while self._configs and self._configs[-1][0] > index:
            self._configs.pop()  # the previous configuration is back in force
        self.stable = min(self.stable, index)
        self.version += 1

    def compact(self, index: int) -> None:
        """The state machine saved itself at `index`: forget the entries it covers."""
        term = self.term_at(index)
        assert term is not None and index <= self.stable, "compacting past the durable log"
        membership = self.explicit_config_at(index)
        del self._entries[: index - self.snapshot.index]
        self._configs = [(at, config) for at, config in self._configs if at > index]
        self.snapshot = SnapshotMeta(index, term, membership)
        self.version += 1

    def bytes_between(self, first: int, last: int) -> int:
        """The payload bytes of entries `first .. last` (those present)."""
        first = max(first, self.snapshot.index + 1)
        return sum(len(entry.payload) for entry in self.slice(first, min(last, self.last_index) + 1))

    def restore(self, snapshot: SnapshotMeta) -> None:
        """Replace the whole log with a snapshot from the leader (the driver resets its disk log the same
        way)."""
        self.snapshot = snapshot
        self._entries = []
        self._configs = []
        self.stable = self.disk_last = snapshot.index
        self.version += 1

    def unstable(self) -> tuple[int, list[LogEntry], int | None]:
        """(first index, entries, truncate_after) that the driver must make durable."""
        start = self.stable + 1
        truncate = self.stable if self.disk_last > self.stable else None
        return start, self.slice(start, self.last_index + 1), truncate

    def persisted(self, first_index: int, entries: list[LogEntry], truncated: bool) -> None:
        """The driver made `entries` (from `first_index`) durable, after dropping its log beyond them if
        `truncated`.

        Memory may have changed meanwhile; an entry on disk with the same index and term as in memory is the
        same entry (a leader never rewrites its own log), so matching terms at the last index prove the whole
        range.
        """
        if not entries:
            if truncated:
                self.disk_last = first_index - 1
            return
        last = first_index + len(entries) - 1
        self.disk_last = last if truncated else max(self.disk_last, last)
        if self.term_at(last) == entries[-1].term and first_index <= self.stable + 1:
            self.stable = max(self.stable, last)
