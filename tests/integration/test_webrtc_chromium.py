"""Interop with headless Chromium on loopback, driven through the DevTools protocol.

Chromium runs with ``--disable-features=WebRtcHideLocalIpsWithMdns`` so its host candidates are
plain IP addresses (127.0.0.1 and the machine's own) instead of ``.local`` mDNS names, which our
agent does not resolve. Our side runs ``zmesh.tools.webrtc_echo`` in-process on 127.0.0.1.

- Chromium offers, we answer: the echo page's ``runEcho()`` (ordered, unordered, unreliable and
  lifetime-limited channels, 1 B .. 256 KiB, binary and string, 100 channels opened and closed by
  Chromium, one closed by us).
- We offer, Chromium answers: ``answerOffer(sdp)`` on the same page; we open channels and check
  the echoes, then close them from our side.
- The fingerprint test captures Chromium's ClientHello (Chromium answers ``a=setup:active`` and
  so is the DTLS client) and compares it with ours; ``docs/stealth.md`` records the outcome.
"""

from __future__ import annotations

import functools
import itertools
import json
import os
import pathlib
import shutil
import struct
import subprocess
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
from trio_websocket import open_websocket_url

from zmesh.io_trio.udp import UdpEndpoint
from zmesh.io_trio.webrtc import WebRtcPeer
from zmesh.sansio.webrtc import stun
from zmesh.sansio.webrtc.clienthello import ja4, parse_dtls_client_hello
from zmesh.sansio.webrtc.dtls import DtlsState, looks_like_dtls
from zmesh.sansio.wire import ProtocolError
from zmesh.tools import webrtc_echo

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
    "--disable-features=WebRtcHideLocalIpsWithMdns", "--remote-debugging-port=0",
]

pytestmark = [
    pytest.mark.integration,
    pytest.mark.browser,
    pytest.mark.slow,  # Chromium start-up: about 3 s per test on a busy 2-core machine
    pytest.mark.trio,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="chromium not installed"),
]


class Cdp:
    """Just enough of the DevTools protocol: open a page, evaluate a promise."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self._ids = itertools.count(1)
        self._session: str | None = None

    async def call(self, method: str, params: dict[str, Any] | None = None,
                   session: bool = True) -> dict[str, Any]:
        message: dict[str, Any] = {"id": next(self._ids), "method": method,
                                   "params": params or {}}
        if session and self._session:
            message["sessionId"] = self._session
        await self.ws.send_message(json.dumps(message))
        while True:
            reply = json.loads(await self.ws.get_message())
            if reply.get("id") == message["id"]:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return dict(reply.get("result", {}))

    async def open(self, url: str, ready: str = "document.readyState === 'complete'") -> None:
        target = await self.call("Target.createTarget", {"url": url}, session=False)
        attached = await self.call("Target.attachToTarget",
                                   {"targetId": target["targetId"], "flatten": True},
                                   session=False)
        self._session = attached["sessionId"]
        for _ in range(200):
            if await self.evaluate(f"location.href === {json.dumps(url)} && ({ready})"):
                return
            await trio.sleep(0.05)
        raise RuntimeError(f"page {url} did not load")

    async def evaluate(self, expression: str) -> Any:
        result = await self.call("Runtime.evaluate", {
            "expression": expression, "awaitPromise": True, "returnByValue": True})
        if "exceptionDetails" in result:
            raise RuntimeError(json.dumps(result["exceptionDetails"])[:2000])
        return result["result"].get("value")


@asynccontextmanager
async def chromium() -> AsyncIterator[Cdp]:
    with tempfile.TemporaryDirectory(prefix="zmesh-chromium-",
                                     ignore_cleanup_errors=True) as profile:
        proc = subprocess.Popen([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            port_file = pathlib.Path(profile, "DevToolsActivePort")
            with trio.fail_after(30):
                while not port_file.exists() or len(port_file.read_text().split()) < 2:
                    await trio.sleep(0.1)
            port, path = port_file.read_text().split()[:2]
            async with open_websocket_url(f"ws://127.0.0.1:{port}{path}",
                                          max_message_size=16 * 1024 * 1024) as ws:
                yield Cdp(ws)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


async def test_chromium_offers_we_answer() -> None:
    with trio.fail_after(150):
        async with trio.open_nursery() as nursery:
            http_port, _ = await nursery.start(functools.partial(
                webrtc_echo.serve, ("127.0.0.1", 0), ("127.0.0.1", 0)))
            async with chromium() as cdp:
                await cdp.open(f"http://127.0.0.1:{http_port}/", "typeof runEcho === 'function'")
                report = await cdp.evaluate("runEcho({channels: 100, serverCloses: true})")
            nursery.cancel_scope.cancel()
    print(json.dumps({k: report[k] for k in ("dtlsCipher", "tlsVersion", "sctpMaxMessageSize")}))
    for kind in ("ordered", "unordered", "unreliable", "lifetime"):
        assert all(item["ok"] for item in report[kind]), (kind, report[kind])
    assert [item["size"] for item in report["ordered"]][-2] == 262144
    assert report["channels"] == 100
    assert report["serverClosed"] is True
    assert report["sctpMaxMessageSize"] == 262144


async def test_we_offer_chromium_answers() -> None:
    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            http_port, _ = await nursery.start(functools.partial(
                webrtc_echo.serve, ("127.0.0.1", 0), ("127.0.0.1", 0)))
            async with chromium() as cdp:
                await cdp.open(f"http://127.0.0.1:{http_port}/", "typeof runEcho === 'function'")
                async with UdpEndpoint(("127.0.0.1", 0)) as endpoint, \
                        WebRtcPeer(endpoint) as peer:
                    offer = await peer.create_offer()
                    answer = await cdp.evaluate(f"answerOffer({json.dumps(offer)})")
                    await peer.set_remote_answer(answer)
                    await peer.wait_connected()
                    channel = await peer.create_channel("from-zmesh")
                    for size in (1, 1200, 65536, 262144):
                        payload = os.urandom(size)
                        await channel.send(payload)
                        with trio.fail_after(15):
                            assert await channel.receive() == payload
                    await channel.send("string ✓")
                    with trio.fail_after(15):
                        assert await channel.receive() == "string ✓"
                    unordered = await peer.create_channel("u", ordered=False, max_retransmits=0)
                    await unordered.send(b"x" * 500)
                    with trio.fail_after(15):
                        assert await unordered.receive() == b"x" * 500
                    for i in range(100):
                        many = await peer.create_channel(f"many-{i}")
                        await many.send(f"ping {i}")
                        with trio.fail_after(15):
                            assert await many.receive() == f"ping {i}"
                        await many.aclose()
            nursery.cancel_scope.cancel()


class NullSctp:
    """The fingerprint test stops at DTLS; SCTP packets are ignored."""

    def __init__(self, is_client: bool, random: Any, now: float) -> None:
        del is_client, random, now

    def receive_data(self, data: bytes, now: float) -> None:
        del data, now

    def data_to_send(self, now: float) -> list[bytes]:
        return []

    def get_timer(self) -> float | None:
        return None

    def handle_timer(self, now: float) -> None:
        del now

    def next_event(self) -> None:
        return None


async def test_dtls_client_hello_fingerprint_against_chromium(tmp_path: Any) -> None:
    """Chromium is DTLS client when it answers; capture its ClientHello and compare with ours."""
    captured: list[bytes] = []
    stun_requests: list[bytes] = []
    with trio.fail_after(60):
        async with chromium() as cdp:
            await cdp.open("about:blank")
            await cdp.evaluate(webrtc_echo.PAGE.split("<script>")[1].split("</script>")[0]
                               .replace('document.getElementById("run").addEventListener',
                                        "void 0 && document.body.addEventListener")
                               .replace('const logEl = document.getElementById("log");',
                                        "const logEl = {textContent: ''};"))
            async with UdpEndpoint(("127.0.0.1", 0)) as endpoint, \
                    WebRtcPeer(endpoint, sctp_factory=NullSctp) as peer:
                def tap(data: bytes, source: Any) -> None:
                    if looks_like_dtls(data) and data[0] == 22 and len(captured) < 4:
                        captured.append(data)
                    elif data[:2] == b"\x00\x01" and len(stun_requests) < 4:
                        stun_requests.append(data)

                endpoint.tap = tap
                offer = await peer.create_offer()
                await peer.set_remote_answer(await cdp.evaluate(
                    f"answerOffer({json.dumps(offer)})"))
                theirs = None
                while theirs is None:
                    try:
                        theirs = parse_dtls_client_hello(captured[:2])
                    except ProtocolError:
                        await trio.sleep(0.05)
                dtls = peer.pc.dtls
                assert dtls is not None and not dtls.is_client
                # Chromium offers DTLS 1.3 but settles for our 1.2 (research notes §10).
                while dtls.state is not DtlsState.CONNECTED:
                    await trio.sleep(0.05)
    from zmesh.sansio.webrtc.dtls import DtlsCertificate, DtlsTransport

    our_request = stun.binding_request(b"x" * 12, username="abcd:efgh", key=b"k",
                                       priority=1, controlling=False, tie_breaker=1)
    probe = DtlsTransport(DtlsCertificate.generate(), is_client=True)
    probe.start(0.0)
    mine = parse_dtls_client_hello(probe.datagrams_to_send(0.0))
    result = {
        "chromium_ja4": ja4(theirs), "ours_ja4": ja4(mine),
        "chromium_ciphers": [f"{c:04x}" for c in theirs.ciphers],
        "ours_ciphers": [f"{c:04x}" for c in mine.ciphers],
        "chromium_extensions": [f"{e:04x}" for e in theirs.extension_types],
        "ours_extensions": [f"{e:04x}" for e in mine.extension_types],
        "chromium_groups": [f"{g:04x}" for g in theirs.groups],
        "ours_groups": [f"{g:04x}" for g in mine.groups],
        "chromium_sigalgs": [f"{s:04x}" for s in theirs.signature_algorithms],
        "ours_sigalgs": [f"{s:04x}" for s in mine.signature_algorithms],
        "chromium_srtp": [f"{s:04x}" for s in theirs.srtp_profiles],
        "ours_srtp": [f"{s:04x}" for s in mine.srtp_profiles],
        "chromium_hello_datagrams": [len(d) for d in captured[:2]],
        "chromium_stun_request_attributes": [f"{t:04x}" for t in stun_attribute_types(
            stun_requests[0])],
        "ours_stun_request_attributes": [f"{t:04x}" for t in stun_attribute_types(
            our_request)],
    }
    print(json.dumps(result))
    # Everything we offer, Chromium offers too, in the same relative order.
    tls12 = [c for c in theirs.ciphers if c >> 8 != 0x13]
    assert list(mine.ciphers) == tls12
    assert set(mine.groups) <= set(theirs.groups)
    assert list(mine.signature_algorithms) == list(theirs.signature_algorithms)
    assert set(mine.srtp_profiles) == set(theirs.srtp_profiles)
    assert set(mine.extension_types) <= set(theirs.extension_types)
    # Our STUN check attributes appear in Chromium's order (Chromium may add more).
    chrome_order = result["chromium_stun_request_attributes"]
    ours_in_chrome = [a for a in result["ours_stun_request_attributes"] if a in chrome_order]
    assert ours_in_chrome == [a for a in chrome_order if a in ours_in_chrome]


def stun_attribute_types(data: bytes) -> list[int]:
    types, pos = [], 20
    while pos + 4 <= len(data):
        kind, length = struct.unpack_from("!HH", data, pos)
        types.append(kind)
        pos += 4 + length + (-length % 4)
    return types
