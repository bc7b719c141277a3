"""How old this node's data directory is: whether a replica with nothing of a group may have held it before.

A replica that starts with nothing of its group asks the others whether the group is new, and a majority of
empty answers says it is (`_membership`). An empty answer is only true of a disk that never held the group: one
older than the group (its node was down when the group was declared, or its catalog behind: it has not started
the group yet). A disk younger than the group (wiped, a replaced machine) may have held entries, acknowledged
them and lost them; counted as empty, it and a replica that never started the group would make an "empty
majority" and could elect a leader without the entries only the third replica holds.

So the node records, once and durably, when its data directory was first used (`born_ms`), and a replica of a
group declared at or before that time, which starts with nothing of it, may have held it before. The times
come from two clocks (this node's, and the metadata leader's for the declaration): a skew only matters for a
group declared, written to this node, and then wiped off it, all within the skew.
"""

from __future__ import annotations

from pathlib import Path

from mom.errors import StorageError
from mom.log.fs import FileSystem

BORN_FILE = "born_ms"


def born_ms(fs: FileSystem, data_dir: Path, now_ms: int) -> int:
    """When the data directory was first used (epoch milliseconds): read, or recorded now (durably) if this is
    its first use. A directory that holds groups already but no record (written by an older version) is as
    old as any group (0): nothing tells whether it was ever wiped."""
    path = data_dir / BORN_FILE
    try:
        text = fs.read_bytes(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise StorageError(f"cannot read {path}: {exc}") from exc
    else:
        try:
            return int(text.decode("ascii").strip())
        except ValueError:
            raise StorageError(
                f"{path} should hold the time the data directory was first used (epoch milliseconds), "
                f"not {text[:40]!r}: remove it only if this directory was never wiped"
            ) from None
    try:
        born = 0 if _holds_groups(fs, data_dir) else now_ms
        fs.makedirs(data_dir)
        temporary = data_dir / f"{BORN_FILE}.tmp"
        file = fs.open(temporary, create=True)
        try:
            file.write(f"{born}\n".encode("ascii"))
            file.sync()
        finally:
            file.close()
        fs.replace(temporary, path)
        fs.sync_directory(data_dir)
    except OSError as exc:
        raise StorageError(f"cannot record when {data_dir} was first used: {exc}") from exc
    return born


def _holds_groups(fs: FileSystem, data_dir: Path) -> bool:
    try:
        return bool(fs.listdir(data_dir / "groups"))
    except FileNotFoundError:
        return False


def held_before(born: int, declared_ms: int) -> bool:
    """Whether a disk first used at `born` may have held a group declared at `declared_ms` before this run."""
    return declared_ms <= born
