"""Sphinx headers: create -> unwrap round trips, tampering, hostile bytes, geometry."""

from __future__ import annotations

import hashlib
import random as stdlib_random

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from zmesh.sansio.onion import sphinx
from zmesh.sansio.onion.commands import (
    CellAead,
    CircuitSetup,
    Command,
    NextNodeHop,
    NodeDelay,
    Recipient,
    SURBReply,
)
from zmesh.sansio.onion.sphinx import (
    KATZENPOST_GEOMETRY,
    ZMESH_GEOMETRY,
    Geometry,
    PathHop,
    create_header,
    unwrap_header,
)
from zmesh.sansio.wire import (
    AuthenticationFailed,
    LocalProtocolError,
    MalformedInput,
    ProtocolError,
    TruncatedInput,
)


def det_random(seed: int) -> sphinx.RandomSource:
    rng = stdlib_random.Random(seed)
    return rng.randbytes


NODE_KEYS = [X25519PrivateKey.from_private_bytes(bytes([i + 1]) * 32) for i in range(5)]
NODE_IDS = [hashlib.sha256(b"node %d" % i).digest() for i in range(5)]


def setup_command(i: int, last: bool) -> CircuitSetup:
    return CircuitSetup(bytes([0x40 + i]) * 32, last, CellAead.CHACHA20_POLY1305, b"tag%d" % i)


def zmesh_path(n: int) -> list[PathHop]:
    return [
        PathHop(
            NODE_IDS[i],
            NODE_KEYS[i].public_key().public_bytes_raw(),
            (setup_command(i, i == n - 1),),
        )
        for i in range(n)
    ]


def walk(geometry: Geometry, path: list[PathHop], header: bytes) -> list[sphinx.UnwrappedHeader]:
    results = []
    current: bytes | None = header
    for i in range(len(path)):
        assert current is not None
        result = unwrap_header(geometry, NODE_KEYS[i], current)
        results.append(result)
        current = result.next_header
    assert current is None
    return results


def test_geometry_sizes() -> None:
    assert KATZENPOST_GEOMETRY.header_length == 476  # Katzenpost's 5-hop X25519 header
    assert KATZENPOST_GEOMETRY.routing_info_length == 410
    assert ZMESH_GEOMETRY.header_length == 378
    # A relay's slot holds NextNodeHop + CircuitSetup + terminator exactly.
    assert (
        ZMESH_GEOMETRY.per_hop_routing_info_length == NextNodeHop.LENGTH + CircuitSetup.LENGTH + 1
    )
    with pytest.raises(LocalProtocolError):
        Geometry(max_hops=2, per_hop_routing_info_length=64)
    with pytest.raises(LocalProtocolError):
        Geometry(max_hops=0, per_hop_routing_info_length=100)


@pytest.mark.parametrize("n", [1, 2, 3])
def test_round_trip_zmesh(n: int) -> None:
    path = zmesh_path(n)
    created = create_header(ZMESH_GEOMETRY, path, det_random(n))
    assert len(created.header) == ZMESH_GEOMETRY.header_length
    results = walk(ZMESH_GEOMETRY, path, created.header)
    for i, result in enumerate(results):
        assert result.commands == path[i].commands
        assert result.shared_secret == created.shared_secrets[i]
        assert result.next_hop == (NODE_IDS[i + 1] if i < n - 1 else None)
        if result.next_header is not None:
            assert len(result.next_header) == ZMESH_GEOMETRY.header_length
    # Replay tags differ per hop (alpha is re-blinded at each hop).
    assert len({r.replay_tag for r in results}) == n


@pytest.mark.parametrize("n", [1, 3, 5])
def test_round_trip_katzenpost_geometry(n: int) -> None:
    commands: list[tuple[Command, ...]] = [(NodeDelay(0xDEADBABE),)] * (n - 1)
    commands.append((Recipient(b"r" * 32), SURBReply(b"s" * 16)))
    path = [
        PathHop(NODE_IDS[i], NODE_KEYS[i].public_key().public_bytes_raw(), commands[i])
        for i in range(n)
    ]
    created = create_header(KATZENPOST_GEOMETRY, path, det_random(10 + n))
    results = walk(KATZENPOST_GEOMETRY, path, created.header)
    assert [r.commands for r in results] == commands


def test_creation_is_deterministic_and_consumes_documented_randomness() -> None:
    path = zmesh_path(2)
    a = create_header(ZMESH_GEOMETRY, path, det_random(7))
    b = create_header(ZMESH_GEOMETRY, path, det_random(7))
    assert a == b
    calls: list[int] = []

    def counting(n: int) -> bytes:
        calls.append(n)
        return bytes(n)

    create_header(ZMESH_GEOMETRY, path, counting)
    assert calls == [32, ZMESH_GEOMETRY.per_hop_routing_info_length]
    calls.clear()
    create_header(ZMESH_GEOMETRY, zmesh_path(3), counting)
    assert calls == [32]


def test_alpha_is_client_public_key_and_tag_is_sha512_256() -> None:
    path = zmesh_path(2)
    created = create_header(ZMESH_GEOMETRY, path, det_random(1))
    ephemeral = det_random(1)(32)
    alpha = X25519PrivateKey.from_private_bytes(ephemeral).public_key().public_bytes_raw()
    assert created.header[:2] == b"\x00\x00"
    assert created.header[2:34] == alpha
    result = unwrap_header(ZMESH_GEOMETRY, NODE_KEYS[0], created.header)
    assert result.replay_tag == hashlib.new("sha512_256", alpha).digest()


def test_two_and_three_hop_headers_have_the_same_size() -> None:
    two = create_header(ZMESH_GEOMETRY, zmesh_path(2), det_random(2)).header
    three = create_header(ZMESH_GEOMETRY, zmesh_path(3), det_random(3)).header
    assert len(two) == len(three)
    # And so do the headers forwarded by hop 1.
    fwd2 = unwrap_header(ZMESH_GEOMETRY, NODE_KEYS[0], two).next_header
    fwd3 = unwrap_header(ZMESH_GEOMETRY, NODE_KEYS[0], three).next_header
    assert fwd2 is not None and fwd3 is not None and len(fwd2) == len(fwd3)


def test_tampering_any_byte_fails() -> None:
    header = create_header(ZMESH_GEOMETRY, zmesh_path(2), det_random(4)).header
    for offset in range(len(header)):
        tampered = bytearray(header)
        tampered[offset] ^= 0x01
        expected = MalformedInput if offset < 2 else AuthenticationFailed
        with pytest.raises(expected):
            unwrap_header(ZMESH_GEOMETRY, NODE_KEYS[0], bytes(tampered))


def test_tampering_forwarded_header_fails_at_next_hop() -> None:
    header = create_header(ZMESH_GEOMETRY, zmesh_path(3), det_random(5)).header
    forwarded = unwrap_header(ZMESH_GEOMETRY, NODE_KEYS[0], header).next_header
    assert forwarded is not None
    for offset in (2, 40, 200, len(forwarded) - 1):
        tampered = bytearray(forwarded)
        tampered[offset] ^= 0x80
        with pytest.raises(AuthenticationFailed):
            unwrap_header(ZMESH_GEOMETRY, NODE_KEYS[1], bytes(tampered))


def test_wrong_key_and_wrong_sizes() -> None:
    header = create_header(ZMESH_GEOMETRY, zmesh_path(2), det_random(6)).header
    with pytest.raises(AuthenticationFailed):
        unwrap_header(ZMESH_GEOMETRY, NODE_KEYS[1], header)
    with pytest.raises(TruncatedInput):
        unwrap_header(ZMESH_GEOMETRY, NODE_KEYS[0], header[:-1])
    with pytest.raises(MalformedInput):
        unwrap_header(ZMESH_GEOMETRY, NODE_KEYS[0], header + b"\x00")
    # memoryview input works the same as bytes.
    assert unwrap_header(ZMESH_GEOMETRY, NODE_KEYS[0], memoryview(header)).next_hop == NODE_IDS[1]


def test_low_order_alpha_is_malformed() -> None:
    header = bytearray(create_header(ZMESH_GEOMETRY, zmesh_path(1), det_random(8)).header)
    header[2:34] = bytes(32)  # u = 0 is a low-order point; X25519 output would be all zero
    with pytest.raises(MalformedInput):
        unwrap_header(ZMESH_GEOMETRY, NODE_KEYS[0], bytes(header))


def forge_single_hop(geometry: Geometry, node: X25519PrivateKey, slot: bytes) -> bytes:
    """A header whose MAC verifies but whose (attacker-chosen) slot plaintext is ``slot``."""
    ephemeral = X25519PrivateKey.from_private_bytes(b"\x99" * 32)
    alpha = ephemeral.public_key().public_bytes_raw()
    okm = sphinx._kdf(ephemeral.exchange(node.public_key()))
    plain = slot + bytes(geometry.routing_info_length - len(slot))
    routing_info = sphinx._header_stream(okm).encryptor().update(plain)
    mac = sphinx._mac(okm, b"\x00\x00", alpha, routing_info)
    return b"\x00\x00" + alpha + routing_info + mac


@pytest.mark.parametrize(
    "slot",
    [
        b"\x7f" + bytes(10),  # unknown command
        NodeDelay(1).encode() + b"\x00\x01",  # garbage after terminator
        NextNodeHop(b"a" * 32, b"b" * 32).encode() * 2,  # two next hops
        SURBReply(b"s" * 16).encode() * 2,
        setup_command(0, False).encode() * 2,
    ],
)
def test_authentic_but_bad_commands_are_malformed(slot: bytes) -> None:
    geometry = Geometry(max_hops=3, per_hop_routing_info_length=140)
    header = forge_single_hop(geometry, NODE_KEYS[0], slot)
    with pytest.raises(MalformedInput):
        unwrap_header(geometry, NODE_KEYS[0], header)


def test_forge_helper_produces_valid_headers() -> None:
    # Guards the test above: the forged header is accepted when its slot is well formed.
    geometry = Geometry(max_hops=3, per_hop_routing_info_length=140)
    header = forge_single_hop(geometry, NODE_KEYS[0], NodeDelay(9).encode())
    assert unwrap_header(geometry, NODE_KEYS[0], header).commands == (NodeDelay(9),)


def test_create_rejects_bad_paths() -> None:
    key = NODE_KEYS[0].public_key().public_bytes_raw()
    with pytest.raises(LocalProtocolError):
        create_header(ZMESH_GEOMETRY, [])
    with pytest.raises(LocalProtocolError):
        create_header(ZMESH_GEOMETRY, zmesh_path(4))
    with pytest.raises(LocalProtocolError):
        PathHop(NODE_IDS[0], key, (NextNodeHop(NODE_IDS[1], bytes(32)),))
    with pytest.raises(LocalProtocolError):
        PathHop(b"short", key, ())
    # A relay's slot has no room for a second CircuitSetup beside NextNodeHop ...
    crowded = PathHop(NODE_IDS[0], key, (setup_command(0, False), NodeDelay(1)))
    last = zmesh_path(2)[1]
    with pytest.raises(LocalProtocolError):
        create_header(ZMESH_GEOMETRY, [crowded, last])
    # ... but the last hop's slot (no NextNodeHop) does.
    create_header(ZMESH_GEOMETRY, [zmesh_path(1)[0], crowded], det_random(9))
    with pytest.raises(LocalProtocolError):
        create_header(ZMESH_GEOMETRY, [PathHop(NODE_IDS[0], bytes(32), ())], det_random(9))


@settings(max_examples=150, deadline=None)
@given(st.binary(min_size=ZMESH_GEOMETRY.header_length, max_size=ZMESH_GEOMETRY.header_length))
def test_random_headers_raise_only_protocol_errors(data: bytes) -> None:
    with pytest.raises(ProtocolError):
        unwrap_header(ZMESH_GEOMETRY, NODE_KEYS[0], data)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=2 * ZMESH_GEOMETRY.header_length))
def test_random_lengths_raise_only_protocol_errors(data: bytes) -> None:
    with pytest.raises(ProtocolError):
        unwrap_header(ZMESH_GEOMETRY, NODE_KEYS[0], b"\x00\x00" + data)


@settings(max_examples=20, deadline=None)
@given(
    n=st.integers(1, 3),
    seed=st.integers(0, 2**32),
    exit_aead=st.sampled_from(CellAead),
    delays=st.lists(st.integers(0, 2**32 - 1), min_size=3, max_size=3),
)
def test_round_trip_property(n: int, seed: int, exit_aead: CellAead, delays: list[int]) -> None:
    path = []
    for i in range(n):
        cmds: tuple[Command, ...] = (
            CircuitSetup(bytes([i]) * 32, i == n - 1, exit_aead, seed.to_bytes(5, "big")[1:]),
        )
        if i == n - 1:
            cmds += (NodeDelay(delays[i]),)
        path.append(PathHop(NODE_IDS[i], NODE_KEYS[i].public_key().public_bytes_raw(), cmds))
    created = create_header(ZMESH_GEOMETRY, path, det_random(seed))
    results = walk(ZMESH_GEOMETRY, path, created.header)
    assert [r.commands for r in results] == [p.commands for p in path]
    assert tuple(r.shared_secret for r in results) == created.shared_secrets
