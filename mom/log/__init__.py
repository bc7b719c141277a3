"""Durable storage: a segmented, checksummed log with group commit and crash recovery, and snapshots."""

from mom.log.commit import GroupCommitter
from mom.log.log import RecoveryReport, SegmentedLog
from mom.log.snapshot import SnapshotStore

__all__ = ["GroupCommitter", "RecoveryReport", "SegmentedLog", "SnapshotStore"]
