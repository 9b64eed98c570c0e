"""The mesh across network namespaces: curl through a 2-hop circuit with a lossy client link.

Topology (``netns.py``, a hub routing between spokes, one /30 each):

    rv      zmesh rendezvous + the test web site (python -m zmesh.io_trio.testsite)
    n1, n2  zmesh node (relay and exit; the exit may reach only 10.250.0.0/16, explicitly)
    client  zmesh proxy (SOCKS5 on its own 127.0.0.1) and curl; 5 % loss each way on its link,
            shaped to 20 Mbit/s

Node links are WebSocket over TLS (TCP), so the loss on the client's link costs TCP
retransmissions on the proxy's link to hop 1 and on its rendezvous connection; the download
must still arrive byte-exact (SHA-256 against the site's deterministic pattern).

The first tests here hold the ``netns.py`` helper itself to its promises: namespaces and the
processes inside them are gone after a failure, SIGINT or SIGTERM; nothing appears in the host's
namespace; orphans of a dead run are reaped; the loss rule drops about what it says.
"""

from __future__ import annotations

import hashlib
import json
import pathlib
import shutil
import signal
import subprocess
import sys
import time
from typing import Any

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import netns

from zmesh.io_trio.testsite import pattern_sha256

_SKIP = netns.skip_reason()
pytestmark = [
    pytest.mark.integration,
    pytest.mark.netns,
    pytest.mark.skipif(_SKIP is not None, reason=f"netns: {_SKIP}"),
]

LOSS_PERCENT = 5
RATE_MBIT = 20  # the client's link is also shaped (tbf or netem rate), as a home uplink is
DOWNLOAD_BYTES = 2 * 1024 * 1024
TEST_RANGE = f"{netns.SUBNET_BASE}.0.0/16"  # every address the topology created
READY_TIMEOUT = 30.0


class Started:
    """One ``python -m ...`` process in a namespace, ready once it printed ``{"ready": true}``."""

    def __init__(self, topology: netns.Topology, role: str, args: list[str], name: str,
                 logs: pathlib.Path) -> None:
        self.name = name
        self.log_path = logs / f"{name}.log"
        with open(self.log_path, "wb") as log:
            self.proc = topology.popen(role, [sys.executable, *args], stdout=subprocess.PIPE,
                                       stderr=log, bufsize=0)
        assert self.proc.stdout is not None
        try:
            self.info: dict[str, Any] = netns.read_json_line(
                self.proc.stdout, READY_TIMEOUT, name, "ready")
        except netns.NetnsError as exc:
            self.proc.kill()
            tail = self.log_path.read_text(errors="replace")[-3000:]
            raise AssertionError(f"{exc}\n{tail}") from None


def _our_namespaces(tag: str) -> list[str]:
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return [line.split()[0] for line in listing.stdout.splitlines()
            if line.split() and line.split()[0].startswith(tag)]


def test_topology_is_removed_after_a_failure() -> None:
    with pytest.raises(RuntimeError, match="boom"), netns.Topology(["a", "b"]) as topology:
        names = [topology.hub, topology.netns("a"), topology.netns("b")]
        assert sorted(_our_namespaces(topology.hub[:-4])) == sorted(names)
        sleeper = topology.popen("a", ["sleep", "60"])
        # The test's addresses exist only inside its namespaces, never in the host's.
        host = subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True, check=True)
        assert f" {netns.SUBNET_BASE}." not in host.stdout
        inside = topology.run("b", ["ip", "-o", "addr", "show", "dev", "eth0"])
        assert topology.address("b") in inside.stdout.decode()
        raise RuntimeError("boom")
    assert sleeper.poll() is not None
    assert not _our_namespaces(names[0][:-4])


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_topology_is_removed_when_the_run_is_interrupted(signum: int) -> None:
    script = (
        "import sys, time\n"
        f"sys.path.insert(0, {str(pathlib.Path(__file__).resolve().parent)!r})\n"
        "import netns\n"
        "with netns.Topology(['x']) as t:\n"
        "    t.popen('x', ['sleep', '60'])\n"
        "    print(t.hub, flush=True)\n"
        "    time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        hub = proc.stdout.readline().strip()
        assert hub and _our_namespaces(hub[:-4])
        proc.send_signal(signum)
        proc.wait(20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    assert not _our_namespaces(hub[:-4])


def test_orphans_of_a_dead_run_are_reaped() -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()  # a PID that no longer runs (reuse within this test is very unlikely)
    name = f"{netns.NS_PREFIX}{dead.pid}-1-hub"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        assert name in netns.reap_orphans()
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)
    assert not _our_namespaces(name)


def test_loss_rule_drops_about_what_it_says() -> None:
    # 2000 UDP datagrams from a to b across b's 20 %-lossy link, counted at the receiver.
    receiver = (
        "import socket, sys\n"
        "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        "s.bind((sys.argv[1], 9999)); s.settimeout(1.5); n = 0\n"
        "print('ready', flush=True)\n"
        "try:\n"
        "    while True: s.recv(2048); n += 1\n"
        "except TimeoutError: pass\n"
        "print(n, flush=True)\n"
    )
    sender = (
        "import socket, sys, time\n"
        "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        "for i in range(2000):\n"
        "    s.sendto(b'x' * 500, (sys.argv[1], 9999))\n"
        "    if i % 50 == 0: time.sleep(0.005)\n"
    )
    with netns.Topology(["a", "b"]) as topology:
        notes = topology.impair("b", netns.Impairment(loss_percent=20, delay_ms=5))
        print("\n" + "\n".join(notes))
        sink = topology.popen("b", [sys.executable, "-c", receiver, topology.address("b")],
                              stdout=subprocess.PIPE, text=True)
        assert sink.stdout is not None and sink.stdout.readline().strip() == "ready"
        sent = topology.run("a", [sys.executable, "-c", sender, topology.address("b")])
        assert sent.returncode == 0, sent.stderr
        received = int(sink.stdout.readline())
        drops = topology.drop_counts()
    rate = 1 - received / 2000
    assert 0.14 <= rate <= 0.26, rate  # 20 % ± ~6 standard deviations
    if not netns.netem_available():
        assert any("delay NOT emulated" in note for note in notes)
        assert drops["seen-down-b"] == 2000 and drops["down-b"] == 2000 - received


_SOCKS_PROBE = """
import socket, struct, sys
port, host, dport = int(sys.argv[1]), sys.argv[2].encode(), int(sys.argv[3])
with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
    s.sendall(b"\\x05\\x01\\x00")
    assert s.recv(2) == b"\\x05\\x00"
    s.sendall(b"\\x05\\x01\\x00\\x03" + bytes([len(host)]) + host + struct.pack("!H", dport))
    print(s.recv(4)[1])
"""


def _socks_reply(topology: netns.Topology, socks_port: int, host: str, port: int) -> int:
    """The REP byte of a SOCKS5 CONNECT (by name, as curl --socks5-hostname sends it) made
    from inside the client's namespace."""
    result = topology.run("client", [sys.executable, "-c", _SOCKS_PROBE, str(socks_port), host,
                                     str(port)], timeout=40)
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    return int(result.stdout)


def _circuit_path(status_file: pathlib.Path) -> list[str]:
    """The path of the proxy's first circuit once its status file (rewritten every second)
    shows one; empty if none appears within a few seconds."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            circuits = json.loads(status_file.read_text()).get("circuits", [])
        except (OSError, ValueError):
            circuits = []
        if circuits:
            return list(circuits[0]["path"])
        time.sleep(0.2)
    return []


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
def test_curl_through_two_hops_with_lossy_client_link(tmp_path: pathlib.Path) -> None:
    with netns.Topology(["rv", "n1", "n2", "client"]) as topology:
        topology.impair("client", netns.Impairment(loss_percent=LOSS_PERCENT,
                                                   rate_mbit=RATE_MBIT))
        rv_host = topology.address("rv")
        rendezvous = Started(topology, "rv", [
            "-m", "zmesh.cli", "rendezvous", "--host", rv_host, "--port", "0",
            "--state-dir", str(tmp_path / "rv")], "rendezvous", tmp_path)
        url = rendezvous.info["url"]
        web = Started(topology, "rv", ["-m", "zmesh.io_trio.testsite", "--host", rv_host],
                      "web", tmp_path)
        for role in ("n1", "n2"):
            Started(topology, role, [
                "-m", "zmesh.cli", "node", "--host", topology.address(role), "--port", "0",
                "--state-dir", str(tmp_path / role), "--rendezvous", url, "--keepalive", "1",
                "--status-file", str(tmp_path / f"{role}.status"),
                # Private addresses stay refused except the test's own range, named explicitly;
                # everything else is refused too, so the exit can reach nothing outside.
                "--exit-allow-private", "--exit-policy", f"accept {TEST_RANGE}:*",
                "--exit-policy", "reject *:*"], role, tmp_path)
        proxy = Started(topology, "client", [
            "-m", "zmesh.cli", "proxy", "--host", topology.address("client"), "--port", "0",
            "--socks-port", "0", "--state-dir", str(tmp_path / "client"),
            "--rendezvous", url, "--hops", "2", "--keepalive", "1",
            "--status-file", str(tmp_path / "client.status")], "proxy", tmp_path)
        socks = f"127.0.0.1:{proxy.info['socks_port']}"  # the client namespace's own loopback
        target = f"http://{rv_host}:{web.info['port']}/bytes/{DOWNLOAD_BYTES}"

        started = time.monotonic()
        result = topology.run("client", ["curl", "-sS", "--max-time", "40",
                                         "--socks5-hostname", socks, target], timeout=50)
        elapsed = time.monotonic() - started
        path = _circuit_path(tmp_path / "client.status")
        # SOCKS replies (RFC 1928 REP): the exit's own loopback is refused by policy (02),
        # the test site by its literal address is allowed (00).
        replies = {
            host: _socks_reply(topology, proxy.info["socks_port"], host, web.info["port"])
            for host in ("127.0.0.1", rv_host)
        }
        drops = topology.drop_counts()
        figures: dict[str, Any] = {"bytes": len(result.stdout), "seconds": round(elapsed, 2),
                   "mbit_s": round(len(result.stdout) * 8 / elapsed / 1e6, 2),
                   "circuit_hops": len(path),
                   "dropped": drops}
        print(f"\n[mesh] impairment: {'; '.join(topology.notes)}")
        print(f"[mesh] {json.dumps(figures)}")
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    assert len(result.stdout) == DOWNLOAD_BYTES
    assert hashlib.sha256(result.stdout).hexdigest() == pattern_sha256(DOWNLOAD_BYTES)
    assert figures["circuit_hops"] == 2
    # The shaper works: a slow machine only makes this smaller, so it cannot flake that way.
    assert figures["mbit_s"] <= 1.5 * RATE_MBIT
    assert replies == {"127.0.0.1": 2, rv_host: 0}, replies
    if drops:
        assert drops["up-client"] > 0 and drops["down-client"] > 0
