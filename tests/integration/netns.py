"""Adverse networks for the integration tests: Linux network namespaces joined by veth pairs.

A :class:`Topology` is a star: one *hub* namespace that routes, and one namespace per *spoke*
(``"client"``, ``"relay"``, ...), each joined to the hub by its own veth pair on its own /30 in
10.250.0.0/16 (hub ``10.250.N.1``, spoke ``10.250.N.2``). The addresses exist only inside the
namespaces the test created, so nothing on the host or its LAN is touched, and two test runs
never see each other's interfaces. Every namespace name carries the test process's PID, so a
run killed with SIGKILL leaves names that the next run recognises as orphans and removes.

Impairment of a spoke's link (:meth:`Topology.impair`), both directions:

- ``tc qdisc ... netem`` (loss, delay, jitter, reordering, rate) when the kernel has
  ``sch_netem`` (probed once per process);
- otherwise loss with nftables in the hub's forward chain (``numgen random mod 100 < N drop``,
  one rule per direction, with counters) and rate/queueing with ``tbf``. Delay, jitter and
  reordering cannot be emulated that way: :meth:`Topology.impair` returns notes saying so and
  the tests print them. Drops happen in the hub, never in the spoke's own output path, so a
  sender never sees ``EPERM`` from ``sendto`` (which a local nftables drop would give UDP).

Cleanup always happens: ``Topology`` is a context manager, it also registers itself with
``atexit`` and turns SIGTERM/SIGHUP into ``SystemExit`` while it is alive (so ``finally``
blocks run), and it kills the processes it started by PID before deleting the namespaces.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from types import FrameType, TracebackType
from typing import IO, Any

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NS_PREFIX = "zmt"  # zmesh test; the full name is zmt<pid>-<topology>-<role>
SUBNET_BASE = "10.250"  # private, and only ever configured inside our own namespaces
NFT_TABLE = "zmesh_impair"
_NAME_RE = re.compile(rf"^{NS_PREFIX}(\d+)-\d+-[a-z0-9]+$")
_ROLE_RE = re.compile(r"^[a-z][a-z0-9]{0,11}$")
_topologies = 0


class NetnsError(RuntimeError):
    """A command that sets up or drives a namespace failed."""


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return _run(["ip", *args], check=check)


def _run(argv: Sequence[str], *, check: bool = True,
         stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(list(argv), capture_output=True, text=True, input=stdin, timeout=30)
    if check and result.returncode != 0:
        raise NetnsError(f"{' '.join(argv)}: {result.stderr.strip() or result.returncode}")
    return result


@functools.cache
def skip_reason() -> str | None:
    """Why netns tests cannot run here, or ``None`` when they can (probed once)."""
    if sys.platform != "linux":
        return "network namespaces are Linux only"
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            return f"needs '{tool}' (iproute2)"
    name = f"{NS_PREFIX}{os.getpid()}-0-probe"
    probe = _ip("netns", "add", name, check=False)
    if probe.returncode != 0:
        return f"'ip netns add' failed: {probe.stderr.strip()}"
    _ip("netns", "del", name, check=False)
    return None


@functools.cache
def netem_available() -> bool:
    """Whether the kernel has ``sch_netem`` (probed once, on ``lo`` of a scratch namespace)."""
    name = f"{NS_PREFIX}{os.getpid()}-0-netem"
    if _ip("netns", "add", name, check=False).returncode != 0:
        return False
    try:
        _ip("-n", name, "link", "set", "lo", "up", check=False)
        probe = _run(["ip", "netns", "exec", name, "tc", "qdisc", "add", "dev", "lo", "root",
                      "netem", "delay", "1ms"], check=False)
        return probe.returncode == 0
    finally:
        _ip("netns", "del", name, check=False)


@functools.cache
def nft_available() -> bool:
    return shutil.which("nft") is not None


def reap_orphans() -> list[str]:
    """Delete namespaces left by earlier test processes that no longer exist."""
    removed = []
    for line in _ip("netns", "list", check=False).stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        match = _NAME_RE.match(name)
        if match is None or _pid_alive(int(match.group(1))):
            continue
        _kill_namespace_processes(name)
        if _ip("netns", "del", name, check=False).returncode == 0:
            removed.append(name)
    return removed


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _kill_namespace_processes(name: str) -> None:
    # Only processes inside a namespace this module created (ours or our children): a netns
    # with live processes would otherwise outlive `ip netns del`.
    pids = _ip("netns", "pids", name, check=False).stdout.split()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)


@dataclass(frozen=True)
class Impairment:
    """What a spoke's link does to packets, per direction (see the module docstring)."""

    loss_percent: int = 0
    delay_ms: int = 0
    jitter_ms: int = 0
    reorder_percent: int = 0
    rate_mbit: float | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.loss_percent < 100:
            raise ValueError("loss_percent must be in 0..99")


@dataclass
class Spoke:
    role: str
    netns: str
    index: int
    hub_if: str  # the hub's end of this spoke's veth pair
    address: str  # the spoke's own address
    hub_address: str


class Topology:
    """A hub namespace routing between spoke namespaces; see the module docstring."""

    def __init__(self, roles: Sequence[str]) -> None:
        global _topologies
        if len(set(roles)) != len(roles) or not roles:
            raise ValueError("roles must be distinct and non-empty")
        for role in roles:
            if not _ROLE_RE.match(role):
                raise ValueError(f"bad role name {role!r}")
        _topologies += 1
        self._tag = f"{NS_PREFIX}{os.getpid()}-{_topologies}"
        self.hub = f"{self._tag}-hub"
        self.spokes: dict[str, Spoke] = {}
        for index, role in enumerate(roles, start=1):
            self.spokes[role] = Spoke(
                role=role, netns=f"{self._tag}-{role}", index=index, hub_if=f"s{index}",
                address=f"{SUBNET_BASE}.{index}.2", hub_address=f"{SUBNET_BASE}.{index}.1",
            )
        self.notes: list[str] = []
        self._procs: list[subprocess.Popen[Any]] = []
        self._created: list[str] = []
        self._closed = False
        self._old_handlers: dict[int, Any] = {}

    # -- life cycle ------------------------------------------------------------------------

    def __enter__(self) -> Topology:
        reason = skip_reason()
        if reason is not None:
            raise NetnsError(reason)
        reap_orphans()
        atexit.register(self.close)
        self._install_signal_handlers()
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _build(self) -> None:
        self._add_netns(self.hub)
        _ip("netns", "exec", self.hub, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        for spoke in self.spokes.values():
            self._add_netns(spoke.netns)
            # Both ends are created straight inside the namespaces: no interface ever
            # appears in the host's namespace.
            _ip("-n", self.hub, "link", "add", spoke.hub_if, "type", "veth",
                "peer", "name", "eth0", "netns", spoke.netns)
            _ip("-n", self.hub, "addr", "add", f"{spoke.hub_address}/30", "dev", spoke.hub_if)
            # One wire packet per skb: with GSO a veth carries 64 KiB super-packets, and a
            # "5 % of packets" rule would then drop dozens of segments at a time.
            _ip("-n", self.hub, "link", "set", spoke.hub_if, "gso_max_segs", "1")
            _ip("-n", spoke.netns, "link", "set", "eth0", "gso_max_segs", "1")
            _ip("-n", self.hub, "link", "set", spoke.hub_if, "up")
            _ip("-n", spoke.netns, "addr", "add", f"{spoke.address}/30", "dev", "eth0")
            _ip("-n", spoke.netns, "link", "set", "eth0", "up")
            _ip("-n", spoke.netns, "route", "add", "default", "via", spoke.hub_address)

    def _add_netns(self, name: str) -> None:
        _ip("netns", "add", name)
        self._created.append(name)
        _ip("-n", name, "link", "set", "lo", "up")

    def _install_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return

        def leave(signum: int, frame: FrameType | None) -> None:
            raise SystemExit(128 + signum)

        for signum in (signal.SIGTERM, signal.SIGHUP):
            if signal.getsignal(signum) in (signal.SIG_DFL, None):
                self._old_handlers[signum] = signal.signal(signum, leave)

    def close(self) -> None:
        """Kill what we started, delete our namespaces. Idempotent; never raises."""
        if self._closed:
            return
        self._closed = True
        for proc in reversed(self._procs):
            _stop(proc)
        for name in reversed(self._created):
            with contextlib.suppress(Exception):
                _kill_namespace_processes(name)
                _ip("netns", "del", name, check=False)
        self._created.clear()
        for signum, handler in self._old_handlers.items():
            with contextlib.suppress(ValueError):
                signal.signal(signum, handler)
        self._old_handlers.clear()
        with contextlib.suppress(Exception):
            atexit.unregister(self.close)

    # -- addresses and commands ------------------------------------------------------------

    def address(self, role: str) -> str:
        return self.spokes[role].address

    def netns(self, role: str) -> str:
        return self.spokes[role].netns

    def command(self, role: str, argv: Sequence[str]) -> list[str]:
        """``argv`` prefixed so that it runs inside ``role``'s namespace."""
        return ["ip", "netns", "exec", self.netns(role), *argv]

    def popen(self, role: str, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Start ``argv`` inside ``role``'s namespace; it is killed (by PID) on close."""
        env = kwargs.pop("env", None) or {
            **os.environ,
            "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
        }
        proc: subprocess.Popen[Any] = subprocess.Popen(
            self.command(role, argv), env=env, cwd=kwargs.pop("cwd", ROOT), **kwargs)
        self._procs.append(proc)
        return proc

    def run(self, role: str, argv: Sequence[str],
            timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
        """Run ``argv`` to completion inside ``role``'s namespace."""
        proc = self.popen(role, argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            out, err = proc.communicate(timeout=timeout)
        finally:
            _stop(proc)
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)

    # -- impairment ------------------------------------------------------------------------

    def impair(self, role: str, impairment: Impairment) -> list[str]:
        """Apply ``impairment`` to both directions of ``role``'s link; returns notes on what
        could not be emulated on this kernel (also kept in :attr:`notes`)."""
        spoke = self.spokes[role]
        notes: list[str] = []
        if netem_available():
            netem = ["netem"]
            if impairment.delay_ms or impairment.reorder_percent:
                # netem reorders only packets it does not delay, so reordering needs a delay.
                delay = max(impairment.delay_ms, 1)
                netem += ["delay", f"{delay}ms"]
                if impairment.jitter_ms:
                    netem += [f"{impairment.jitter_ms}ms"]
            if impairment.loss_percent:
                netem += ["loss", f"{impairment.loss_percent}%"]
            if impairment.reorder_percent:
                netem += ["reorder", f"{impairment.reorder_percent}%"]
            if impairment.rate_mbit:
                netem += ["rate", f"{impairment.rate_mbit}mbit"]
            for netns, dev in ((self.hub, spoke.hub_if), (spoke.netns, "eth0")):
                _ip("netns", "exec", netns, "tc", "qdisc", "replace", "dev", dev, "root", *netem)
            notes.append(f"{role}: netem {' '.join(netem[1:])} (both directions)")
        else:
            if impairment.loss_percent:
                self._nft_loss(spoke, impairment.loss_percent)
                notes.append(f"{role}: loss {impairment.loss_percent}% per direction "
                             "(nftables numgen; kernel has no sch_netem)")
            if impairment.rate_mbit:
                for netns, dev in ((self.hub, spoke.hub_if), (spoke.netns, "eth0")):
                    _ip("netns", "exec", netns, "tc", "qdisc", "replace", "dev", dev, "root",
                        "tbf", "rate", f"{impairment.rate_mbit}mbit", "burst", "32kbit",
                        "latency", "50ms")
                notes.append(f"{role}: rate {impairment.rate_mbit} Mbit/s (tbf)")
            missing = [what for what, value in (("delay", impairment.delay_ms),
                                                ("jitter", impairment.jitter_ms),
                                                ("reordering", impairment.reorder_percent))
                       if value]
            if missing:
                notes.append(f"{role}: {', '.join(missing)} NOT emulated: this kernel has no "
                             "sch_netem")
        self.notes.extend(notes)
        return notes

    def _nft_loss(self, spoke: Spoke, percent: int) -> None:
        if not nft_available():
            raise NetnsError("no sch_netem and no nft: cannot emulate loss")
        # In the hub's forward path: a drop there is silent loss for both ends, as on a wire.
        rules = f"""
table inet {NFT_TABLE} {{
  chain impair {{
    type filter hook forward priority 0; policy accept;
  }}
}}
add rule inet {NFT_TABLE} impair iifname "{spoke.hub_if}" counter comment "seen-up-{spoke.role}"
add rule inet {NFT_TABLE} impair oifname "{spoke.hub_if}" counter comment "seen-down-{spoke.role}"
add rule inet {NFT_TABLE} impair iifname "{spoke.hub_if}" numgen random mod 100 < {percent} \
counter drop comment "up-{spoke.role}"
add rule inet {NFT_TABLE} impair oifname "{spoke.hub_if}" numgen random mod 100 < {percent} \
counter drop comment "down-{spoke.role}"
"""
        _run(["ip", "netns", "exec", self.hub, "nft", "-f", "-"], stdin=rules)

    def drop_counts(self) -> dict[str, int]:
        """Packet counts of the nftables loss rules so far: ``up-<role>`` / ``down-<role>``
        dropped, ``seen-up-<role>`` / ``seen-down-<role>`` offered to the rule (so the measured
        drop rate is their ratio). Empty when netem does the work (it keeps no such count)."""
        if netem_available() or not nft_available():
            return {}
        listing = _run(["ip", "netns", "exec", self.hub, "nft", "-j", "list", "table", "inet",
                        NFT_TABLE], check=False)
        if listing.returncode != 0:
            return {}
        counts: dict[str, int] = {}
        for item in json.loads(listing.stdout).get("nftables", []):
            rule = item.get("rule")
            if not rule or "comment" not in rule:
                continue
            for expr in rule.get("expr", []):
                if "counter" in expr:
                    counts[rule["comment"]] = int(expr["counter"]["packets"])
        return counts


def _stop(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()


def read_json_line(stream: IO[bytes], timeout: float, what: str = "process",
                   key: str | None = None) -> dict[str, Any]:
    """The next JSON object line on ``stream`` (with ``key`` in it, if given); other lines are
    skipped. Raises :class:`NetnsError` on timeout or end of stream."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise NetnsError(f"{what}: no JSON line within {timeout} s")
        ready, _, _ = select.select([stream], [], [], min(left, 0.5))
        if not ready:
            continue
        line = stream.readline()
        if not line:
            raise NetnsError(f"{what}: output ended")
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict) and (key is None or key in value):
            return value
