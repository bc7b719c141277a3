"""The fault-testing settings: the injected disk delay (agreed with the nemesis suite), and the groups it slows."""

from __future__ import annotations

from pathlib import Path

import pytest

from mom.config import StorageSection, load_settings
from mom.errors import InvalidInput
from mom.replication._storage import fault_delay_s


def test_the_disk_delay_is_off_by_default() -> None:
    assert load_settings(env={}).storage.fault_delay_ms == 0
    assert fault_delay_s(StorageSection(), "meta") == 0.0


def test_the_disk_delay_comes_from_the_environment_or_the_file(tmp_path: Path) -> None:
    env = {"MOM_FAULT_DISK_DELAY_MS": "1500", "MOM_FAULT_DISK_DELAY_GROUPS": "q.*"}
    storage = load_settings(env=env).storage
    assert (storage.fault_delay_ms, storage.fault_delay_groups) == (1500, "q.*")
    config = tmp_path / "mom.toml"
    config.write_text('[storage]\nfault_delay_ms = 250\nfault_delay_groups = "meta"\n')
    assert load_settings(config, env={}).storage.fault_delay_ms == 250


@pytest.mark.parametrize("raw", ["soon", "-5", "1.5"])
def test_a_bad_disk_delay_is_refused_with_its_name(raw: str) -> None:
    with pytest.raises(InvalidInput, match="MOM_FAULT_DISK_DELAY_MS"):
        load_settings(env={"MOM_FAULT_DISK_DELAY_MS": raw})


def test_the_delay_applies_to_the_groups_its_glob_matches() -> None:
    storage = StorageSection(fault_delay_ms=2000, fault_delay_groups="q.orders@*")
    assert fault_delay_s(storage, "q.orders@1700000000000") == 2.0
    assert fault_delay_s(storage, "q.invoices@1700000000000") == 0.0
    assert fault_delay_s(storage, "meta") == 0.0
    assert fault_delay_s(StorageSection(fault_delay_ms=10), "meta") == 0.01
