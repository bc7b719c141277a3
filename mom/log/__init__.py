"""Durable storage: a segmented, checksummed log with crash recovery, and snapshots."""

from mom.log.log import RecoveryReport, SegmentedLog
from mom.log.snapshot import SnapshotStore

__all__ = ["RecoveryReport", "SegmentedLog", "SnapshotStore"]
