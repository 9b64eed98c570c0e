"""``python -m zmesh.tools.webrtc_echo --http 127.0.0.1:PORT``: a WebRTC data-channel echo peer.

``GET /`` serves a test page (open it in a browser and press the button; the interop tests
drive the same page through the DevTools protocol). ``POST /offer`` takes an SDP offer as the
body and answers with the SDP answer (non-trickle: every candidate is in it); from then on
every message on every channel is echoed back on the channel it arrived on, as binary or as
string, exactly as it came. A message ``__close__`` makes us close that channel from our side.
``GET /status`` prints one line per live connection (ICE pair, DTLS cipher, channels).
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import sys
from typing import Final

import trio

from zmesh.io_trio.udp import UdpEndpoint
from zmesh.io_trio.webrtc import ChannelClosedError, WebRtcChannel, WebRtcError, WebRtcPeer
from zmesh.sansio.webrtc.sdp import SessionDescription
from zmesh.sansio.wire import ProtocolError

log = logging.getLogger("zmesh.webrtc_echo")

MAX_HEADER: Final = 16 * 1024
MAX_BODY: Final = 64 * 1024  # an SDP offer is a few KiB
MAX_PEERS: Final = 256
PEER_IDLE_LIMIT: Final = 600.0

PAGE: Final = r"""<!doctype html>
<html><head><meta charset="utf-8"><title>zmesh WebRTC echo</title></head>
<body>
<h1>zmesh WebRTC echo</h1>
<button id="run">Run echo test</button>
<pre id="log"></pre>
<script>
"use strict";
const logEl = document.getElementById("log");
function say(text) { logEl.textContent += text + "\n"; }

function gathered(pc) {
  return new Promise(resolve => {
    if (pc.iceGatheringState === "complete") return resolve();
    pc.addEventListener("icegatheringstatechange", () => {
      if (pc.iceGatheringState === "complete") resolve();
    });
  });
}

function opened(ch, ms) {
  return new Promise((resolve, reject) => {
    if (ch.readyState === "open") return resolve();
    ch.addEventListener("open", resolve);
    setTimeout(() => reject(new Error("channel " + ch.label + " did not open")), ms || 15000);
  });
}

function nextMessage(ch, ms) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("no echo on " + ch.label)), ms || 15000);
    ch.addEventListener("message", ev => { clearTimeout(timer); resolve(ev.data); },
                        {once: true});
  });
}

function pattern(size, seed) {
  const data = new Uint8Array(size);
  for (let i = 0; i < size; i++) data[i] = (i * 31 + seed) & 255;
  return data;
}

function sameBytes(a, b) {
  const x = new Uint8Array(a), y = new Uint8Array(b);
  if (x.length !== y.length) return false;
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
  return true;
}

// We offer, the echo server answers (POST /offer).
async function connect() {
  const pc = new RTCPeerConnection();
  const first = pc.createDataChannel("echo");
  first.binaryType = "arraybuffer";
  await pc.setLocalDescription(await pc.createOffer());
  await gathered(pc);
  const response = await fetch("/offer", {method: "POST", body: pc.localDescription.sdp});
  if (!response.ok) throw new Error("offer refused: " + await response.text());
  await pc.setRemoteDescription({type: "answer", sdp: await response.text()});
  await opened(first);
  return {pc, first};
}

async function echoOn(ch, sizes, reliable) {
  const results = [];
  for (const size of sizes) {
    const payload = pattern(size, size & 255);
    const reply = nextMessage(ch);
    ch.send(payload);
    const got = await reply;
    results.push({size, ok: sameBytes(got, payload.buffer)});
  }
  const text = "text \u2713 " + ch.label;
  const reply = nextMessage(ch);
  ch.send(text);
  results.push({size: "string", ok: (await reply) === text});
  return results;
}

async function runEcho(options) {
  options = options || {};
  const sizes = options.sizes || [1, 100, 1200, 16384, 65536, 262144];
  const {pc, first} = await connect();
  const report = {ordered: await echoOn(first, sizes)};
  const unordered = pc.createDataChannel("unordered", {ordered: false});
  unordered.binaryType = "arraybuffer";
  await opened(unordered);
  report.unordered = await echoOn(unordered, [1, 1000, 50000]);
  const unreliable = pc.createDataChannel("unreliable", {ordered: false, maxRetransmits: 0});
  unreliable.binaryType = "arraybuffer";
  await opened(unreliable);
  report.unreliable = await echoOn(unreliable, [1, 500]);
  const lifetime = pc.createDataChannel("lifetime", {ordered: false, maxPacketLifeTime: 500});
  lifetime.binaryType = "arraybuffer";
  await opened(lifetime);
  report.lifetime = await echoOn(lifetime, [10]);
  report.sctpMaxMessageSize = pc.sctp ? pc.sctp.maxMessageSize : null;
  if (options.channels) report.channels = await manyChannels(pc, options.channels);
  if (options.serverCloses) {
    const ch = pc.createDataChannel("server-closes");
    await opened(ch);
    const closed = new Promise(resolve => ch.addEventListener("close", resolve));
    ch.send("__close__");
    await closed;
    report.serverClosed = true;
  }
  const stats = await pc.getStats();
  stats.forEach(s => { if (s.type === "transport") report.dtlsCipher = s.dtlsCipher;
                       if (s.type === "transport") report.tlsVersion = s.tlsVersion; });
  pc.close();
  return report;
}

async function manyChannels(pc, count) {
  let ok = 0;
  for (let i = 0; i < count; i++) {
    const ch = pc.createDataChannel("many-" + i);
    await opened(ch);
    const reply = nextMessage(ch);
    ch.send("ping " + i);
    if ((await reply) === "ping " + i) ok++;
    const closed = new Promise(resolve => ch.addEventListener("close", resolve));
    ch.close();
    await closed;
  }
  return ok;
}

// The other direction: someone hands us an offer, we answer and echo whatever arrives.
window.answered = [];
async function answerOffer(sdp) {
  const pc = new RTCPeerConnection();
  window.answered.push(pc);
  pc.addEventListener("datachannel", ev => {
    const ch = ev.channel;
    ch.binaryType = "arraybuffer";
    ch.addEventListener("message", m => {
      if (m.data === "__close__") { ch.close(); return; }
      ch.send(m.data);
    });
  });
  await pc.setRemoteDescription({type: "offer", sdp});
  await pc.setLocalDescription(await pc.createAnswer());
  await gathered(pc);
  return pc.localDescription.sdp;
}

document.getElementById("run").addEventListener("click", async () => {
  try { say(JSON.stringify(await runEcho(), null, 1)); } catch (e) { say("failed: " + e); }
});
</script>
</body></html>
"""


class EchoServer:
    def __init__(self, endpoint: UdpEndpoint) -> None:
        self.endpoint = endpoint
        self.peers: list[WebRtcPeer] = []

    async def handle_offer(self, nursery: trio.Nursery, offer: str) -> str:
        if len(self.peers) >= MAX_PEERS:
            raise WebRtcError("too many peers")
        SessionDescription.parse(offer, "offer")  # a bad offer fails here, with a clear message
        try:
            answer: str = await nursery.start(self._run_peer, offer)
        except ExceptionGroup as group:
            # Errors from inside the peer's task arrive grouped; report the first one plainly.
            first = group.exceptions[0]
            if isinstance(first, ProtocolError | WebRtcError):
                raise first from None
            raise
        return answer

    async def _run_peer(self, offer: str,
                        task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        async with WebRtcPeer(self.endpoint) as peer:
            answer = await peer.create_answer(offer)
            self.peers.append(peer)
            task_status.started(answer)
            try:
                with trio.move_on_after(PEER_IDLE_LIMIT):
                    async with trio.open_nursery() as channels:
                        try:
                            await peer.wait_connected()
                            while True:
                                channel = await peer.accept_channel()
                                channels.start_soon(_echo, channel)
                        except WebRtcError as exc:
                            log.info("peer ended: %s", exc)
            finally:
                self.peers.remove(peer)

    def status_lines(self) -> list[str]:
        lines = []
        for peer in self.peers:
            pc = peer.pc
            pair = pc.ice.selected if pc.ice is not None else None
            lines.append(json.dumps({
                "state": pc.state.value,
                "ice": pc.ice.state.value if pc.ice else None,
                "pair": f"{pair.local.host}:{pair.local.port}->{pair.remote.host}:"
                        f"{pair.remote.port}" if pair else None,
                "dtls": pc.dtls.cipher_name() if pc.dtls else None,
                "dtls_role": ("client" if pc.dtls.is_client else "server") if pc.dtls else None,
                "dropped": pc.dropped,
            }))
        return lines


async def _echo(channel: WebRtcChannel) -> None:
    try:
        async for message in channel:
            if message == "__close__":
                await channel.aclose()
                return
            await channel.send(message)
    except (ChannelClosedError, WebRtcError, ProtocolError):
        return


async def _read_request(stream: trio.abc.Stream) -> tuple[str, str, bytes]:
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        chunk = await stream.receive_some(4096)
        if not chunk:
            raise ValueError("connection closed")
        buffer += chunk
        if len(buffer) > MAX_HEADER:
            raise ValueError("header too large")
    head, _, body = buffer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    if length > MAX_BODY:
        raise ValueError("body too large")
    while len(body) < length:
        chunk = await stream.receive_some(length - len(body))
        if not chunk:
            raise ValueError("connection closed")
        body += chunk
    return method, path, body[:length]


async def _respond(stream: trio.abc.Stream, status: str, body: bytes, content_type: str) -> None:
    head = (f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\nCache-Control: no-store\r\n"
            "Connection: close\r\n\r\n")
    await stream.send_all(head.encode() + body)


async def serve(http: tuple[str, int], udp: tuple[str, int],
                task_status: trio.TaskStatus[tuple[int, tuple[str, int]]]
                = trio.TASK_STATUS_IGNORED) -> None:
    """Run the echo server; reports ``(http_port, udp_address)`` through ``task_status``."""
    async with UdpEndpoint(udp) as endpoint, trio.open_nursery() as nursery:
        server = EchoServer(endpoint)

        async def handle(stream: trio.SocketStream) -> None:
            try:
                with trio.fail_after(30):
                    method, path, body = await _read_request(stream)
                    if method == "GET" and path in ("/", "/index.html"):
                        await _respond(stream, "200 OK", PAGE.encode(), "text/html; charset=utf-8")
                    elif method == "GET" and path == "/status":
                        text = "\n".join(server.status_lines()) + "\n"
                        await _respond(stream, "200 OK", text.encode(), "text/plain")
                    elif method == "POST" and path == "/offer":
                        try:
                            answer = await server.handle_offer(nursery, body.decode())
                        except (ProtocolError, WebRtcError, UnicodeDecodeError) as exc:
                            await _respond(stream, "400 Bad Request", str(exc).encode(),
                                           "text/plain")
                        else:
                            await _respond(stream, "200 OK", answer.encode(), "application/sdp")
                    else:
                        await _respond(stream, "404 Not Found", b"not found\n", "text/plain")
            except (ValueError, trio.BrokenResourceError, trio.TooSlowError) as exc:
                log.debug("http: %s", exc)
            finally:
                await stream.aclose()

        listeners = await nursery.start(functools.partial(trio.serve_tcp, handle, http[1],
                                                          host=http[0]))
        port = int(listeners[0].socket.getsockname()[1])
        log.info("echo page on http://%s:%d/ , UDP on %s", http[0], port, endpoint.local_address)
        task_status.started((port, endpoint.local_address))


def _host_port(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host or "127.0.0.1", int(port)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m zmesh.tools.webrtc_echo",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--http", default="127.0.0.1:8080", help="HOST:PORT for the page")
    parser.add_argument("--udp", default=None, help="HOST:PORT for WebRTC (default: HTTP host)")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO)
    http = _host_port(args.http)
    udp = _host_port(args.udp) if args.udp else (http[0], 0)
    try:
        trio.run(serve, http, udp)
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
