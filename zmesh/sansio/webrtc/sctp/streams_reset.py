"""Stream reconfiguration: outgoing SSN reset requests and responses (RFC 6525 §4.1, §4.4, §5).

WebRTC closes a data channel by resetting the stream's outgoing direction (RFC 8831 §6.7); the
peer answers by resetting its own. This module holds the RE-CONFIG parameter codec and the
sender-side bookkeeping (:class:`ResetRequester`): which streams wait to be reset, the one
request in flight (RFC 6525 §5.1.1 allows one outstanding request per direction), its sequence
numbers, and its retransmission deadline. The association decides *when*: a stream is only put
in a request after its queued messages have all been given TSNs, so the request's "sender's last
assigned TSN" covers them and the peer delivers them before it resets its SSN.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final, TypeAlias

from zmesh.sansio.wire import MalformedInput, TruncatedInput

from .chunks import Params

__all__ = [
    "PARAM_ADD_INCOMING_STREAMS",
    "PARAM_ADD_OUTGOING_STREAMS",
    "PARAM_INCOMING_RESET_REQUEST",
    "PARAM_OUTGOING_RESET_REQUEST",
    "PARAM_RECONFIG_RESPONSE",
    "PARAM_SSN_TSN_RESET_REQUEST",
    "RESULT_DENIED",
    "RESULT_ERROR_BAD_SEQUENCE",
    "RESULT_ERROR_IN_PROGRESS",
    "RESULT_IN_PROGRESS",
    "RESULT_NOTHING_TO_DO",
    "RESULT_PERFORMED",
    "OtherReconfigParam",
    "OutgoingResetRequest",
    "ReconfigParam",
    "ReconfigResponse",
    "ResetRequester",
    "decode_reconfig",
]

PARAM_OUTGOING_RESET_REQUEST: Final = 13
PARAM_INCOMING_RESET_REQUEST: Final = 14
PARAM_SSN_TSN_RESET_REQUEST: Final = 15
PARAM_RECONFIG_RESPONSE: Final = 16
PARAM_ADD_OUTGOING_STREAMS: Final = 17
PARAM_ADD_INCOMING_STREAMS: Final = 18

# Re-configuration Response results (RFC 6525 §4.4).
RESULT_NOTHING_TO_DO: Final = 0
RESULT_PERFORMED: Final = 1
RESULT_DENIED: Final = 2
RESULT_ERROR_WRONG_SSN: Final = 3
RESULT_ERROR_IN_PROGRESS: Final = 4
RESULT_ERROR_BAD_SEQUENCE: Final = 5
RESULT_IN_PROGRESS: Final = 6

_OUT_REQ: Final = struct.Struct("!III")
_RESP: Final = struct.Struct("!II")
_U16: Final = struct.Struct("!H")
_U32: Final = struct.Struct("!I")


@dataclass(frozen=True, slots=True)
class OutgoingResetRequest:
    """Outgoing SSN Reset Request Parameter (RFC 6525 §4.1)."""

    request_seq: int
    response_seq: int
    last_tsn: int
    stream_ids: tuple[int, ...]

    def encode(self) -> tuple[int, bytes]:
        value = _OUT_REQ.pack(self.request_seq, self.response_seq, self.last_tsn) + b"".join(
            _U16.pack(s) for s in self.stream_ids
        )
        return (PARAM_OUTGOING_RESET_REQUEST, value)


@dataclass(frozen=True, slots=True)
class ReconfigResponse:
    """Re-configuration Response Parameter (RFC 6525 §4.4), without the optional TSNs."""

    response_seq: int
    result: int

    def encode(self) -> tuple[int, bytes]:
        return (PARAM_RECONFIG_RESPONSE, _RESP.pack(self.response_seq, self.result))


@dataclass(frozen=True, slots=True)
class OtherReconfigParam:
    """A request we do not perform (incoming/SSN-TSN reset, add streams): answered 'denied'."""

    param_type: int
    request_seq: int


ReconfigParam: TypeAlias = OutgoingResetRequest | ReconfigResponse | OtherReconfigParam


def decode_reconfig(params: Params) -> list[ReconfigParam]:
    """Decode a RE-CONFIG chunk's parameters (at most two, RFC 6525 §3.1)."""
    if not 1 <= len(params) <= 2:
        raise MalformedInput(f"RE-CONFIG with {len(params)} parameters")
    out: list[ReconfigParam] = []
    for ptype, value in params:
        if ptype == PARAM_OUTGOING_RESET_REQUEST:
            if len(value) < 12 or (len(value) - 12) % 2:
                raise MalformedInput(f"outgoing reset request of {len(value)} bytes")
            req, resp, last = _OUT_REQ.unpack_from(value, 0)
            streams = tuple(_U16.unpack_from(value, p)[0] for p in range(12, len(value), 2))
            out.append(OutgoingResetRequest(req, resp, last, streams))
        elif ptype == PARAM_RECONFIG_RESPONSE:
            if len(value) not in (8, 16):
                raise MalformedInput(f"reconfig response of {len(value)} bytes")
            resp, result = _RESP.unpack_from(value, 0)
            out.append(ReconfigResponse(resp, result))
        elif ptype in (
            PARAM_INCOMING_RESET_REQUEST,
            PARAM_SSN_TSN_RESET_REQUEST,
            PARAM_ADD_OUTGOING_STREAMS,
            PARAM_ADD_INCOMING_STREAMS,
        ):
            if len(value) < 4:
                raise TruncatedInput("reconfig request without sequence number")
            out.append(OtherReconfigParam(ptype, _U32.unpack_from(value, 0)[0]))
        else:
            raise MalformedInput(f"unknown RE-CONFIG parameter {ptype}")
    return out


class ResetRequester:
    """Sender side of outgoing stream resets: at most one request in flight, or one waiting
    to be asked again (with a new number) after the peer answered "in progress"."""

    __slots__ = ("deadline", "in_flight", "next_seq", "pending", "retransmits", "retry")

    def __init__(self, initial_seq: int) -> None:
        self.next_seq = initial_seq  # RFC 6525 §5.1.1: starts at our initial TSN
        self.pending: dict[int, None] = {}  # streams waiting, in request order
        self.in_flight: OutgoingResetRequest | None = None
        # a request the peer called "in progress": asked again, renumbered, at ``deadline``
        self.retry: OutgoingResetRequest | None = None
        self.deadline: float | None = None
        self.retransmits = 0

    @property
    def busy(self) -> bool:
        return self.in_flight is not None or self.retry is not None

    def make_request(
        self, ready: list[int], response_seq: int, last_tsn: int, now: float, rto: float
    ) -> OutgoingResetRequest:
        request = OutgoingResetRequest(self.next_seq, response_seq, last_tsn, tuple(ready))
        self.next_seq = (self.next_seq + 1) & 0xFFFFFFFF
        for stream_id in ready:
            self.pending.pop(stream_id, None)
        self.in_flight = request
        self.deadline = now + rto
        self.retransmits = 0
        return request
