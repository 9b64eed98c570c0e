"""The cffi GF kernels as a built artefact: build, CPU dispatch, backend selection, fallback.

Arithmetic correctness of every backend is in tests/sansio/tetrys/test_gf256.py and
test_gf16.py; this file checks the machinery around the kernels.
"""

from __future__ import annotations

import os
import platform
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from zmesh._accel import gf as accel
from zmesh.sansio.tetrys import gf16, gf256
from zmesh.sansio.wire import LocalProtocolError

ROOT = Path(__file__).resolve().parents[2]
ACCEL_DIR = ROOT / "zmesh" / "_accel"
HAVE_COMPILER = any(shutil.which(cc) for cc in (os.environ.get("CC", "cc"), "gcc", "clang"))
IS_X86 = platform.machine().lower() in {"x86_64", "amd64", "i686", "i386"}


def run_python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k != accel.ENV_VAR}
    full_env.update(env)
    full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=60,
        check=True,
    )


PRINT_BACKENDS = "from zmesh.sansio.tetrys import gf256, gf16; print(gf256.BACKEND, gf16.BACKEND)"


@pytest.mark.skipif(not HAVE_COMPILER, reason="no C compiler: the pure-Python twin is expected")
def test_c_extension_is_built() -> None:
    assert "portable-c" in accel.available_backends(), (
        "zmesh._accel._gf256 is missing: run `pip install -e .` (or "
        "`python zmesh/_accel/build_gf.py`) to build the C kernels"
    )


@pytest.mark.skipif(
    not (IS_X86 and sys.platform == "linux" and "portable-c" in accel.available_backends()),
    reason="needs the C module on x86 Linux",
)
def test_cpu_detection_matches_proc_cpuinfo() -> None:
    flags: set[str] = set()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            break
    expected = tuple(f for f in ("ssse3", "avx2") if f in flags)
    assert accel.cpu_features() == expected
    assert accel.available_backends() == ("python", "portable-c", *expected)


def test_default_is_fastest_available() -> None:
    out = run_python(PRINT_BACKENDS).stdout.split()
    best = accel.best_backend()
    assert out == [best, best]


@pytest.mark.parametrize("name", accel.available_backends())
def test_env_var_forces_backend(name: str) -> None:
    out = run_python(PRINT_BACKENDS, ZMESH_GF_BACKEND=name).stdout.split()
    assert out == [name, name]


def test_env_var_naming_unavailable_backend_warns_and_falls_back() -> None:
    proc = run_python(PRINT_BACKENDS, ZMESH_GF_BACKEND="neon")
    best = accel.best_backend()
    assert proc.stdout.split() == [best, best]
    assert "ZMESH_GF_BACKEND='neon' is not available" in proc.stderr


def test_missing_extension_falls_back_to_python_twin() -> None:
    code = (
        "import sys; sys.modules['zmesh._accel._gf256'] = None\n"  # import now raises
        "from zmesh.sansio.tetrys import gf256\n"
        "d = bytearray(b'\\x01\\x02\\x03'); gf256.mul_add(d, b'\\x02\\x02\\x02', 2)\n"
        "print(gf256.BACKEND, gf256.available_backends(), d.hex())\n"
    )
    out = run_python(code).stdout.strip()
    # 2*2 = 4: 1^4, 2^4, 3^4
    assert out == "python ('python',) 050607"


def test_set_backend_rejects_unavailable() -> None:
    for name in accel.BACKENDS:
        if name not in accel.available_backends():
            with pytest.raises(LocalProtocolError):
                gf256.set_backend(name)
    with pytest.raises(LocalProtocolError):
        gf16.set_backend("")


@pytest.mark.skipif(accel._lib is None, reason="C module not built")
def test_c_dispatch_degrades_unknown_backend_to_portable() -> None:
    # The C entry points must never fault on a backend id they cannot run; Python never sends
    # one, but a stray id must still compute the right answer.
    lib, ffi = accel._lib, accel._ffi
    src = os.urandom(200)
    dst0 = os.urandom(200)
    for backend_id in (0, 1, 2, 3, 4, 99, -1):
        dst = bytearray(dst0)
        lib.zm_gf256_mul_add(backend_id, ffi.from_buffer(dst), src, len(dst), 0x1D)
        assert dst == bytes(d ^ gf256.MUL_TABLES[0x1D][s] for d, s in zip(dst0, src, strict=True))


@pytest.mark.skipif(accel._lib is None, reason="C module not built")
def test_c_window_kernel_checks_every_slot_before_writing() -> None:
    # The bounds check lives in C (one call per combination); a bad slot anywhere in the list
    # must leave dst untouched, and slot * stride + n must not overflow size_t.
    lib, ffi = accel._lib, accel._ffi
    window = os.urandom(4 * 100)
    dst0 = os.urandom(100)
    for slots, stride, ok in (
        (b"\x00\x03", 100, True),
        (b"\x00\x04", 100, False),
        (b"\x03\x00", 101, False),
        (b"\x01", 2**63, False),
        (b"\x00\x00", 0, True),
    ):
        for backend_id in (1, 2, 3):
            dst = bytearray(dst0)
            rc = lib.zm_gf256_mul_add_window(
                backend_id,
                ffi.from_buffer(dst),
                window,
                len(window),
                stride,
                slots,
                b"\x07\x09",
                len(slots),
                len(dst),
            )
            assert (rc == 0) == ok
            if not ok:
                assert dst == dst0


@pytest.mark.skipif(accel._lib is None, reason="C module not built")
def test_builder_declares_every_kernel() -> None:
    ns = runpy.run_path(str(ACCEL_DIR / "build_gf.py"), run_name="__cffi__")
    cdef = ns["_cdef_from_header"]()
    for fn in (
        "zm_gf_init",
        "zm_gf_cpu_features",
        "zm_gf256_mul_add",
        "zm_gf256_mul",
        "zm_gf256_mul_add_multi",
        "zm_gf16_mul_add",
        "zm_gf16_mul",
        "zm_gf16_mul_add_multi",
        "zm_gf256_mul_add_window",
        "zm_gf16_mul_add_window",
    ):
        assert f" {fn}(" in cdef
        assert hasattr(accel._lib, fn)


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_COMPILER, reason="needs a C compiler")
def test_setup_builds_extension_and_survives_missing_compiler(tmp_path: Path) -> None:
    """``setup.py build_ext`` compiles the module from a clean copy; with no compiler the
    build still exits 0 (the extension is optional) and reports the failure."""
    for name in ("setup.py", "pyproject.toml", "README.md"):
        if (ROOT / name).exists():
            shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(
        ROOT / "zmesh",
        tmp_path / "zmesh",
        ignore=shutil.ignore_patterns("*.so", "*.o", "_gf256.c", "__pycache__"),
    )

    def build(out: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "setup.py", "build_ext", "-b", out, "-t", out + "-tmp"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            env={**os.environ, **env},
            timeout=300,
            check=False,
        )

    ok = build("good")
    assert ok.returncode == 0, ok.stderr
    built = list((tmp_path / "good" / "zmesh" / "_accel").glob("_gf256*"))
    assert built, ok.stdout + ok.stderr
    # Load the fresh module by path, so an installed zmesh cannot stand in for it.
    probe = (
        "import importlib.util, sys\n"
        "spec = importlib.util.spec_from_file_location('zmesh._accel._gf256', sys.argv[1])\n"
        "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
        "d = bytearray(b'\\x03' * 40); m.lib.zm_gf256_mul(3, m.ffi.from_buffer(d), 40, 2)\n"
        "print(m.lib.zm_gf_init() >= 0, d.hex() == '06' * 40)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe, str(built[0])],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert proc.stdout.strip() == "True True"

    bad = build("bad", CC=str(tmp_path / "no-such-cc"))
    assert bad.returncode == 0, bad.stderr
    assert 'building extension "zmesh._accel._gf256" failed' in bad.stdout + bad.stderr
    assert not list((tmp_path / "bad").rglob("_gf256*.so"))
