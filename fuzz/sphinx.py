"""atheris harness for the Sphinx parsers: ``python fuzz/sphinx.py -runs=N``.

Targets, chosen by the first input byte:
  0  decode_commands on arbitrary bytes (what parses must re-encode to a prefix + zeros)
  1  unwrap_header on arbitrary bytes of any length
  2  unwrap_header on a valid header with fuzzer bytes XORed in (must fail unless unchanged)
  3  unwrap_header on a header whose MAC verifies but whose routing slot is fuzzer-chosen, so
     the command parser is reached through the authenticated path
Anything other than a ProtocolError escaping is a bug.
"""

from __future__ import annotations

import os
import sys

import atheris

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

with atheris.instrument_imports():
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    from zmesh.sansio.onion import sphinx
    from zmesh.sansio.onion.commands import CellAead, CircuitSetup, decode_commands
    from zmesh.sansio.onion.sphinx import ZMESH_GEOMETRY, PathHop, create_header, unwrap_header
    from zmesh.sansio.wire import ProtocolError

GEOMETRY = ZMESH_GEOMETRY
NODE = X25519PrivateKey.from_private_bytes(b"\x01" * 32)
EXIT = X25519PrivateKey.from_private_bytes(b"\x02" * 32)
_SETUP = CircuitSetup(b"\x03" * 32, False, CellAead.CHACHA20_POLY1305, b"fuzz")
VALID = create_header(
    GEOMETRY,
    [
        PathHop(b"\x10" * 32, NODE.public_key().public_bytes_raw(), (_SETUP,)),
        PathHop(b"\x20" * 32, EXIT.public_key().public_bytes_raw(), ()),
    ],
    lambda n: b"\x05" * n,
).header

# Forged-header material (fixed ephemeral key): keys for an authentic single-hop header.
_EPHEMERAL = X25519PrivateKey.from_private_bytes(b"\x09" * 32)
_ALPHA = _EPHEMERAL.public_key().public_bytes_raw()
_OKM = sphinx._kdf(_EPHEMERAL.exchange(NODE.public_key()))


def _forge(slot: bytes) -> bytes:
    plain = slot[: GEOMETRY.routing_info_length]
    plain += bytes(GEOMETRY.routing_info_length - len(plain))
    routing_info = sphinx._header_stream(_OKM).encryptor().update(plain)
    mac = sphinx._mac(_OKM, b"\x00\x00", _ALPHA, routing_info)
    return b"\x00\x00" + _ALPHA + routing_info + mac


def test_one_input(data: bytes) -> None:
    if not data:
        return
    mode, body = data[0] % 4, data[1:]
    try:
        if mode == 0:
            commands = decode_commands(body)
            encoded = b"".join(c.encode() for c in commands)
            assert body.startswith(encoded) and not any(body[len(encoded) :])
        elif mode == 1:
            unwrap_header(GEOMETRY, NODE, body)
            raise AssertionError("random bytes passed the MAC")
        elif mode == 2:
            mask = body[: len(VALID)].ljust(len(VALID), b"\x00")
            mutated = bytes(a ^ b for a, b in zip(VALID, mask, strict=True))
            result = unwrap_header(GEOMETRY, NODE, mutated)
            assert mutated == VALID and result.commands == (_SETUP,)
        else:
            unwrap_header(GEOMETRY, NODE, _forge(body))
    except ProtocolError:
        pass


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
