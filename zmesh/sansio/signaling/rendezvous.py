"""The rendezvous protocol: nodes publish signed peer records and fetch the current set.

This is the WebSocket-over-HTTPS fallback of zmesh signaling (DESIGN.md §1; Web Push is the
primary channel in a later issue). Each binary WebSocket message holds exactly one message of
this module (docs/wire/peer-record.md, "Rendezvous messages")::

    PUBLISH  0x01 | record                          client -> service
    FETCH    0x02 | limit u16                       client -> service
    RECORDS  0x03 | count u16 | count x (len u16 | record)   service -> client
    RESULT   0x04 | status u8 (0 ok, 1 rejected) | len u8 | UTF-8 reason   service -> client

:class:`RecordStore` is the service's state: bounded, every record verified before it is kept,
the newest ``seq`` per node wins, expired records are dropped. Clients verify again on fetch;
the service is a mailbox, not a trust anchor.
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from dataclasses import dataclass
from typing import Final

from zmesh.sansio.signaling.peer_record import MAX_RECORD_SIZE, PeerRecord
from zmesh.sansio.wire import (
    LocalProtocolError,
    MalformedInput,
    OversizedInput,
    Reader,
    RemoteProtocolError,
    Writer,
)

__all__ = [
    "MAX_FETCH",
    "MAX_MESSAGE_SIZE",
    "MessageType",
    "Publish",
    "Fetch",
    "Records",
    "Result",
    "RendezvousMessage",
    "decode_message",
    "encode_message",
    "RecordStore",
    "StaleRecord",
]

#: Records in one RECORDS reply; 256 x 1 KiB keeps a reply under 300 KiB.
MAX_FETCH: Final = 256
MAX_MESSAGE_SIZE: Final = 3 + MAX_FETCH * (2 + MAX_RECORD_SIZE)
MAX_REASON: Final = 255


class MessageType(enum.IntEnum):
    PUBLISH = 1
    FETCH = 2
    RECORDS = 3
    RESULT = 4


@dataclass(frozen=True)
class Publish:
    record: bytes


@dataclass(frozen=True)
class Fetch:
    limit: int


@dataclass(frozen=True)
class Records:
    records: tuple[bytes, ...]


@dataclass(frozen=True)
class Result:
    ok: bool
    reason: str = ""


RendezvousMessage = Publish | Fetch | Records | Result


class StaleRecord(RemoteProtocolError):
    """A record whose ``seq`` is not newer than the one already held for that node."""


def encode_message(message: RendezvousMessage) -> bytes:
    w = Writer()
    match message:
        case Publish(record):
            if len(record) > MAX_RECORD_SIZE:
                raise LocalProtocolError("record too large")
            w.u8(MessageType.PUBLISH).bytes_(record)
        case Fetch(limit):
            w.u8(MessageType.FETCH).u16(limit)
        case Records(records):
            if len(records) > MAX_FETCH:
                raise LocalProtocolError(f"at most {MAX_FETCH} records per reply")
            w.u8(MessageType.RECORDS).u16(len(records))
            for record in records:
                if len(record) > MAX_RECORD_SIZE:
                    raise LocalProtocolError("record too large")
                w.u16(len(record)).bytes_(record)
        case Result(ok, reason):
            raw = reason.encode("utf-8")[:MAX_REASON]
            w.u8(MessageType.RESULT).u8(0 if ok else 1).u8(len(raw)).bytes_(raw)
    return w.getvalue()


def decode_message(data: bytes | bytearray | memoryview) -> RendezvousMessage:
    """Parse one message; raises a :class:`RemoteProtocolError` subclass on bad input."""
    if len(data) > MAX_MESSAGE_SIZE:
        raise OversizedInput(f"rendezvous message of {len(data)} bytes")
    r = Reader(data)
    kind = r.u8()
    message: RendezvousMessage
    if kind == MessageType.PUBLISH:
        record = bytes(r.rest())
        if not record or len(record) > MAX_RECORD_SIZE:
            raise MalformedInput("PUBLISH without a record of acceptable size")
        message = Publish(record)
    elif kind == MessageType.FETCH:
        message = Fetch(r.u16())
    elif kind == MessageType.RECORDS:
        count = r.u16()
        if count > MAX_FETCH:
            raise MalformedInput(f"{count} records in one reply")
        records = []
        for _ in range(count):
            length = r.u16()
            if length > MAX_RECORD_SIZE:
                raise MalformedInput(f"record of {length} bytes")
            records.append(r.bytes_(length))
        message = Records(tuple(records))
    elif kind == MessageType.RESULT:
        status = r.u8()
        if status > 1:
            raise MalformedInput(f"unknown result status {status}")
        try:
            reason = r.bytes_(r.u8()).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MalformedInput("reason is not UTF-8") from exc
        message = Result(status == 0, reason)
    else:
        raise MalformedInput(f"unknown rendezvous message type {kind}")
    r.expect_end()
    return message


class RecordStore:
    """Verified peer records, newest per node, at most ``capacity`` of them.

    When full, the record expiring soonest is evicted to make room, so a flood of fresh
    records from one attacker cannot pin the store (it still can churn it: rate limiting per
    connection is the service's job).
    """

    def __init__(self, capacity: int = 4096) -> None:
        if capacity < 1:
            raise LocalProtocolError("capacity must be positive")
        self.capacity = capacity
        self._records: OrderedDict[bytes, tuple[PeerRecord, bytes]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._records)

    def publish(self, data: bytes, now: float) -> PeerRecord:
        """Verify and store one encoded record; raises a :class:`RemoteProtocolError` if refused."""
        record = PeerRecord.decode(data).verify(now)
        node_id = record.node_id
        held = self._records.get(node_id)
        if held is not None and held[0].seq >= record.seq:
            raise StaleRecord(f"seq {record.seq} is not newer than {held[0].seq}")
        self.expire(now)
        if held is None and len(self._records) >= self.capacity:
            victim = min(self._records, key=lambda k: self._records[k][0].expires)
            del self._records[victim]
        self._records[node_id] = (record, bytes(data))
        self._records.move_to_end(node_id)
        return record

    def expire(self, now: float) -> int:
        """Drop expired records; returns how many went."""
        gone = [k for k, (rec, _) in self._records.items() if rec.expires <= now]
        for key in gone:
            del self._records[key]
        return len(gone)

    def snapshot(self, now: float, limit: int = MAX_FETCH) -> list[bytes]:
        """Encoded records, most recently published first, unexpired, at most ``limit``."""
        self.expire(now)
        limit = max(0, min(limit, MAX_FETCH))
        out: list[bytes] = []
        for _rec, raw in reversed(self._records.values()):
            if len(out) >= limit:
                break
            out.append(raw)
        return out

    def get(self, node_id: bytes) -> PeerRecord | None:
        held = self._records.get(node_id)
        return held[0] if held else None
