"""The cffi (API mode, out-of-line) build steps the C kernels of this package share.

``build_gf.py`` and ``build_cells.py`` each name one extension (its C file and header, compiler
flags, libraries) and get their ``ffibuilder`` from :func:`make_builder`; run as scripts they
compile in place with :func:`build_in_place`. A kernel's header is the single source of its C
API: the declarations between its ``/* CDEF-BEGIN */`` and ``/* CDEF-END */`` markers are the
cdef.

cffi runs the builder files with ``exec`` (``setup.py``'s ``cffi_modules``), where zmesh need
not be importable, so they load this module from their own directory by its bare name, and it
imports nothing from zmesh either.
"""

from __future__ import annotations

import importlib.machinery
import os
import shutil
import sys
import sysconfig
import tempfile
from collections.abc import Sequence
from typing import Any

from cffi import FFI  # type: ignore[import-untyped,unused-ignore]

HERE = os.path.dirname(os.path.abspath(__file__))
_CDEF_BEGIN = "/* CDEF-BEGIN */"
_CDEF_END = "/* CDEF-END */"


def _relative(path: str, as_script: bool) -> str:
    # setuptools wants source paths relative to setup.py's directory, which is the working
    # directory during a build. Run as a script, ffibuilder.compile() changes into its scratch
    # directory, so absolute paths are needed there.
    if as_script:
        return path
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


def cdef_from_header(kernels: str) -> str:
    """The declarations between the CDEF markers of ``<kernels>.h``."""
    with open(os.path.join(HERE, kernels + ".h"), encoding="utf-8") as fh:
        text = fh.read()
    start = text.index(_CDEF_BEGIN) + len(_CDEF_BEGIN)
    return text[start : text.index(_CDEF_END)]


def make_builder(
    module: str,
    kernels: str,
    *,
    as_script: bool,
    cflags: Sequence[str],
    libraries: Sequence[str] = (),
) -> Any:
    """The ``FFI`` that builds ``zmesh._accel.<module>`` from ``<kernels>.c``/``<kernels>.h``.

    ``cflags`` are for GCC and Clang (MSVC gets ``/O2``). The extension is ``optional``: a
    failed compile warns and the install still succeeds, and the Python twin takes over.
    """
    header = os.path.join(HERE, kernels + ".h")
    ffibuilder = FFI()
    ffibuilder.cdef(cdef_from_header(kernels))
    ffibuilder.set_source(
        "zmesh._accel." + module,
        f'#include "{kernels}.h"',
        sources=[_relative(os.path.join(HERE, kernels + ".c"), as_script)],
        include_dirs=[_relative(HERE, as_script)],
        depends=[_relative(header, as_script)],
        libraries=list(libraries),
        extra_compile_args=["/O2"] if sys.platform == "win32" else list(cflags),
        optional=True,
    )
    return ffibuilder


def _installed_name(module: str, built: str) -> str:
    """The file name ``pip install -e .`` gives the module, so the two never coexist.

    cffi's generated C uses the limited API on release builds of CPython (not debug, not
    free-threaded), and setuptools then names the module ``<module>.abi3.so``; a second,
    differently named copy would shadow, or be shadowed by, a newer build.
    """
    limited = not hasattr(sys, "gettotalrefcount") and not sysconfig.get_config_var(
        "Py_GIL_DISABLED"
    )
    if limited and ".abi3.so" in importlib.machinery.EXTENSION_SUFFIXES:
        return module + ".abi3.so"
    return os.path.basename(built)


def build_in_place(ffibuilder: Any, module: str) -> str:
    """Compile in a scratch directory and drop only the module next to this file."""
    with tempfile.TemporaryDirectory() as scratch:
        built: str = ffibuilder.compile(tmpdir=scratch, verbose=True)
        target = os.path.join(HERE, _installed_name(module, built))
        # Copy then rename: overwriting in place would corrupt the image of a module that a
        # running process has mapped.
        shutil.copyfile(built, target + ".tmp")
        os.replace(target + ".tmp", target)
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        stale = os.path.join(HERE, module + suffix)
        if stale != target and os.path.exists(stale):
            os.remove(stale)
    return target
