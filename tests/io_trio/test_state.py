"""State directory: permissions, persistence, sequence numbers."""

from __future__ import annotations

import os
import pathlib
import stat

import pytest

from zmesh.io_trio.state import StateDir, UnsafeStateDir


def mode(p: pathlib.Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_keys_are_private_and_persist(tmp_path: pathlib.Path) -> None:
    d = StateDir(tmp_path / "node")
    first = d.load_or_create()
    assert mode(tmp_path / "node") == 0o700
    for name in ("identity.key", "link.key", "link.crt"):
        assert mode(tmp_path / "node" / name) == 0o600
    again = StateDir(tmp_path / "node").load_or_create()
    assert again.node_id == first.node_id
    assert again.cert_sha256 == first.cert_sha256
    assert len(first.node_id) == 32


def test_group_readable_key_is_refused(tmp_path: pathlib.Path) -> None:
    d = StateDir(tmp_path)
    d.load_or_create()
    os.chmod(tmp_path / "identity.key", 0o644)
    with pytest.raises(UnsafeStateDir, match="chmod 600"):
        StateDir(tmp_path).load_or_create()


def test_sequence_numbers_only_grow(tmp_path: pathlib.Path) -> None:
    d = StateDir(tmp_path)
    a = d.next_seq(now=1000.0)
    b = d.next_seq(now=1000.0)
    c = StateDir(tmp_path).next_seq(now=5.0)  # clock stepped back
    assert a < b < c
