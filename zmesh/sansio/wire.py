"""Binary reading and writing shared by every zmesh parser, and the error hierarchy.

Every parser in ``zmesh.sansio`` reads through one :class:`Reader` over a ``memoryview``
(bounds-checked, raising :class:`TruncatedInput` instead of ``IndexError``/``struct.error``)
and writes through one :class:`Writer`. Errors follow h11/wsproto:

- :class:`LocalProtocolError`: our caller misused an object (a bug to fix on our side).
- :class:`RemoteProtocolError`: the peer sent something wrong (drop, count, maybe close).

Both derive from :class:`ProtocolError`, so a driver can catch one family for "drop and count".
A parser finishes reading before it mutates any state, so a remote error never leaves an
object half-changed.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from typing import Final

__all__ = [
    "ProtocolError",
    "LocalProtocolError",
    "RemoteProtocolError",
    "TruncatedInput",
    "MalformedInput",
    "OversizedInput",
    "ReplayedInput",
    "AuthenticationFailed",
    "Reader",
    "Writer",
    "RandomSource",
    "DEFAULT_RANDOM",
]

#: Where keys, nonces and padding come from. Injected into every state machine so that tests
#: and conformance vectors are deterministic; production uses the OS CSPRNG.
RandomSource = Callable[[int], bytes]
DEFAULT_RANDOM: Final[RandomSource] = os.urandom


class ProtocolError(Exception):
    """Base class of every error a zmesh protocol object raises on purpose."""


class LocalProtocolError(ProtocolError):
    """The caller used an object wrongly (wrong state, bad argument)."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something we cannot accept."""


class TruncatedInput(RemoteProtocolError):
    """Input ended before a field it announced."""


class MalformedInput(RemoteProtocolError):
    """A field holds a value the format does not allow."""


class OversizedInput(RemoteProtocolError):
    """Input (or something it asks us to hold) is larger than our bound."""


class ReplayedInput(RemoteProtocolError):
    """Input we have already accepted once and must not accept again."""


class AuthenticationFailed(RemoteProtocolError):
    """A MAC or AEAD tag did not verify."""


_U16: Final = struct.Struct("!H")
_U32: Final = struct.Struct("!I")
_U64: Final = struct.Struct("!Q")


class Reader:
    """A bounds-checked cursor over bytes. Never copies until asked to (``bytes_``)."""

    __slots__ = ("_pos", "_view")

    def __init__(self, data: bytes | bytearray | memoryview) -> None:
        self._view = memoryview(data).cast("B") if not isinstance(data, memoryview) else data
        self._pos = 0

    @property
    def position(self) -> int:
        return self._pos

    @property
    def remaining(self) -> int:
        return len(self._view) - self._pos

    def at_end(self) -> bool:
        return self._pos >= len(self._view)

    def _take(self, n: int) -> memoryview:
        if n < 0:
            raise MalformedInput(f"negative length {n}")
        end = self._pos + n
        if end > len(self._view):
            raise TruncatedInput(f"need {n} bytes at offset {self._pos}, have {self.remaining}")
        chunk = self._view[self._pos : end]
        self._pos = end
        return chunk

    def u8(self) -> int:
        if self._pos >= len(self._view):
            raise TruncatedInput(f"need 1 byte at offset {self._pos}, have 0")
        value = self._view[self._pos]
        self._pos += 1
        return value

    def u16(self) -> int:
        return int(_U16.unpack(self._take(2))[0])

    def u24(self) -> int:
        return int.from_bytes(self._take(3), "big")

    def u32(self) -> int:
        return int(_U32.unpack(self._take(4))[0])

    def u64(self) -> int:
        return int(_U64.unpack(self._take(8))[0])

    def uint(self, n: int) -> int:
        """An unsigned big-endian integer of ``n`` bytes."""
        return int.from_bytes(self._take(n), "big")

    def view(self, n: int) -> memoryview:
        """The next ``n`` bytes without copying."""
        return self._take(n)

    def bytes_(self, n: int) -> bytes:
        return bytes(self._take(n))

    def rest(self) -> memoryview:
        return self._take(self.remaining)

    def skip(self, n: int) -> None:
        self._take(n)

    def expect_end(self) -> None:
        if not self.at_end():
            raise MalformedInput(f"{self.remaining} trailing bytes")


class Writer:
    """Appends big-endian fields to one growing ``bytearray``."""

    __slots__ = ("_buf",)

    def __init__(self, capacity_hint: int = 0) -> None:
        self._buf = bytearray()
        del capacity_hint  # bytearray grows geometrically; the hint documents intent only

    def __len__(self) -> int:
        return len(self._buf)

    def u8(self, value: int) -> Writer:
        if not 0 <= value <= 0xFF:
            raise LocalProtocolError(f"u8 out of range: {value}")
        self._buf.append(value)
        return self

    def u16(self, value: int) -> Writer:
        if not 0 <= value <= 0xFFFF:
            raise LocalProtocolError(f"u16 out of range: {value}")
        self._buf += _U16.pack(value)
        return self

    def u24(self, value: int) -> Writer:
        return self.uint(value, 3)

    def u32(self, value: int) -> Writer:
        if not 0 <= value <= 0xFFFFFFFF:
            raise LocalProtocolError(f"u32 out of range: {value}")
        self._buf += _U32.pack(value)
        return self

    def u64(self, value: int) -> Writer:
        if not 0 <= value <= 0xFFFFFFFFFFFFFFFF:
            raise LocalProtocolError(f"u64 out of range: {value}")
        self._buf += _U64.pack(value)
        return self

    def uint(self, value: int, n: int) -> Writer:
        if not 0 <= value < (1 << (8 * n)):
            raise LocalProtocolError(f"value {value} does not fit in {n} bytes")
        self._buf += value.to_bytes(n, "big")
        return self

    def bytes_(self, data: bytes | bytearray | memoryview) -> Writer:
        self._buf += data
        return self

    def zeros(self, n: int) -> Writer:
        self._buf += bytes(n)
        return self

    def getvalue(self) -> bytes:
        return bytes(self._buf)
