"""Two busy nodes, traffic both ways: a stress figure for the link and flush machinery.

Starts a rendezvous, two ``zmesh node``\\ s and ``--clients`` ``zmesh proxy``\\ s (each builds a
2-hop circuit over the two nodes, so circuits run n0→n1 and n1→n0), then runs one download
and one upload of ``--mb`` MiB through every proxy at the same time: both directions of the one
link between the nodes carry full windows of cells, which each node must also send back over
that link. Uploads are checked against the SHA-256 the test site computed; downloads against
their size. Prints ONE JSON object: per-transfer Mbit/s, how many finished, the aggregate.

Before the per-link carry queues (``Node._flush_now``), a link reader waited for a full link
here and the two nodes deadlocked until the keepalive closed their link: every transfer failed.

    python bench/both_ways.py [--mb 100] [--clients 4] [--timeout 120]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from e2e import WEB_HOST, Proc, log, stop_all


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--mb", type=int, default=100)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--timeout", type=int, default=120)
    args = ap.parse_args()
    size = args.mb * 1024 * 1024
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="zmesh-both-"))
    procs: list[Proc] = []
    result: dict[str, Any] = {"bench": "both_ways", "mb": args.mb, "clients": args.clients}
    try:
        rv = Proc(["-m", "zmesh.cli", "rendezvous", "--port", "0", "--state-dir",
                   str(tmp / "rv")], tmp / "rv.log")
        procs.append(rv)
        web = Proc(["-m", "zmesh.io_trio.testsite", "--host", WEB_HOST], tmp / "web.log")
        procs.append(web)
        for i in range(2):
            procs.append(Proc(["-m", "zmesh.cli", "node", "--port", "0", "--state-dir",
                               str(tmp / f"n{i}"), "--rendezvous", rv.info["url"],
                               "--exit-allow-loopback"], tmp / f"n{i}.log"))
        proxies = [
            Proc(["-m", "zmesh.cli", "proxy", "--socks-port", "0", "--hops", "2", "--state-dir",
                  str(tmp / f"p{j}"), "--rendezvous", rv.info["url"]], tmp / f"p{j}.log")
            for j in range(args.clients)
        ]
        procs.extend(proxies)
        upload = tmp / "up.bin"
        upload.write_bytes(os.urandom(size))
        want_up = hashlib.sha256(upload.read_bytes()).hexdigest()
        base = f"http://{WEB_HOST}:{web.info['port']}"
        log(f"{args.clients} clients x (download + upload) of {args.mb} MiB at once ...")
        jobs = []
        for proxy in proxies:
            socks = ["--socks5-hostname", f"127.0.0.1:{proxy.info['socks_port']}"]
            common = ["curl", "-sS", "--max-time", str(args.timeout), *socks]
            jobs.append(("down", subprocess.Popen(
                [*common, "-o", os.devnull, "-w", "%{size_download} %{time_total}",
                 f"{base}/bytes/{size}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)))
            jobs.append(("up", subprocess.Popen(
                [*common, "--data-binary", f"@{upload}", "-w", "\\n%{time_total}",
                 f"{base}/sha256"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)))
        started = time.monotonic()
        transfers = []
        for kind, job in jobs:
            out, err = job.communicate(timeout=args.timeout + 30)
            text = out.decode(errors="replace").strip()
            ok = job.returncode == 0
            seconds = float(text.split()[-1]) if ok and text else None
            if kind == "down" and ok:
                ok = int(text.split()[0]) == size
            if kind == "up" and ok:
                ok = text.splitlines()[0].strip() == want_up
            transfers.append({
                "kind": kind,
                "ok": ok,
                "mbit_s": round(size * 8 / seconds / 1e6, 1) if ok and seconds else None,
                **({} if ok else {"error": err.decode(errors="replace").strip()[-200:]}),
            })
        wall = time.monotonic() - started
        done = sum(t["ok"] for t in transfers)
        result.update(
            transfers=transfers,
            finished=done,
            of=len(transfers),
            aggregate_mbit_s=round(done * size * 8 / wall / 1e6, 1),
            wall_s=round(wall, 1),
        )
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        result["error"] = str(exc)
    finally:
        stop_all(procs, tmp)
    print(json.dumps(result))
    return 0 if "error" not in result and result.get("finished") == result.get("of") else 1


if __name__ == "__main__":
    sys.exit(main())
