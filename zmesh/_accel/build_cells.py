"""cffi (API mode, out-of-line) builder for the batch cell kernels in ``cell_kernels.c``.

The kernels call OpenSSL 3 libcrypto's EVP AEADs, so building needs a C compiler and the
libcrypto headers (Debian: ``libssl-dev``). Used three ways:

- ``setup.py`` lists ``zmesh/_accel/build_cells.py:ffibuilder`` in ``cffi_modules``, so
  ``pip install .`` / ``pip install -e .`` compiles ``zmesh._accel._cellcrypt``. The extension
  is marked ``optional``: without a compiler or without the headers the build warns, the
  install still succeeds, and :mod:`zmesh._accel.cells` runs its pure-Python twin.
- ``python zmesh/_accel/build_cells.py`` compiles the module in place (a developer shortcut).
- cffi runs this file with ``exec`` (not ``import``), so it must not import zmesh.
"""

from __future__ import annotations

import os
import sys

from cffi import FFI  # type: ignore[import-untyped,unused-ignore]

_MODULE = "_cellcrypt"
_HERE = os.path.dirname(os.path.abspath(__file__))
_HEADER = os.path.join(_HERE, "cell_kernels.h")
_AS_SCRIPT = __name__ == "__main__"


def _relative(path: str) -> str:
    # setuptools wants source paths relative to setup.py's directory, which is the working
    # directory during a build. Run as a script, ffibuilder.compile() changes into its scratch
    # directory, so absolute paths are needed there.
    if _AS_SCRIPT:
        return path
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


def _cdef_from_header() -> str:
    with open(_HEADER, encoding="utf-8") as fh:
        text = fh.read()
    start = text.index("/* CDEF-BEGIN */") + len("/* CDEF-BEGIN */")
    return text[start : text.index("/* CDEF-END */")]


def _compile_args() -> list[str]:
    if sys.platform == "win32":
        return ["/O2"]
    # C11 for <stdatomic.h> (the per-key busy flag); the AEAD work itself is OpenSSL's.
    return ["-O2", "-std=c11"]


def _installed_name(built: str) -> str:
    """The file name ``pip install -e .`` gives the module, so the two never coexist.

    cffi's generated C uses the limited API on release builds of CPython (not debug, not
    free-threaded), and setuptools then names the module ``_cellcrypt.abi3.so``; a second,
    differently named copy would shadow, or be shadowed by, a newer build.
    """
    import importlib.machinery
    import sysconfig

    limited = not hasattr(sys, "gettotalrefcount") and not sysconfig.get_config_var(
        "Py_GIL_DISABLED"
    )
    if limited and ".abi3.so" in importlib.machinery.EXTENSION_SUFFIXES:
        return _MODULE + ".abi3.so"
    return os.path.basename(built)


ffibuilder = FFI()
ffibuilder.cdef(_cdef_from_header())
ffibuilder.set_source(
    "zmesh._accel." + _MODULE,
    '#include "cell_kernels.h"',
    sources=[_relative(os.path.join(_HERE, "cell_kernels.c"))],
    include_dirs=[_relative(_HERE)],
    depends=[_relative(_HEADER)],
    libraries=["crypto"],
    extra_compile_args=_compile_args(),
    optional=True,
)


def _build_in_place() -> str:
    """Compile in a scratch directory and drop only the module next to this file."""
    import importlib.machinery
    import shutil
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        built = ffibuilder.compile(tmpdir=scratch, verbose=True)
        target = os.path.join(_HERE, _installed_name(built))
        # Copy then rename: overwriting in place would corrupt the image of a module that a
        # running process has mapped.
        shutil.copyfile(built, target + ".tmp")
        os.replace(target + ".tmp", target)
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        stale = os.path.join(_HERE, _MODULE + suffix)
        if stale != target and os.path.exists(stale):
            os.remove(stale)
    return target


if _AS_SCRIPT:
    print(f"built {_build_in_place()}")
