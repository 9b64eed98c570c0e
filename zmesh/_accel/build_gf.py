"""cffi (API mode, out-of-line) builder for the GF region kernels in ``gf_kernels.c``.

Used three ways:

- ``setup.py`` lists ``zmesh/_accel/build_gf.py:ffibuilder`` in ``cffi_modules``, so a normal
  ``pip install .`` / ``pip install -e .`` compiles ``zmesh._accel._gf256``. The extension is
  marked ``optional``: without a working C compiler the build warns and the install still
  succeeds, and :mod:`zmesh._accel.gf` falls back to the pure-Python twin.
- ``python zmesh/_accel/build_gf.py`` compiles the module in place (a developer shortcut).
- cffi runs this file with ``exec`` (not ``import``), so it must not import zmesh; the build
  steps it shares with ``build_cells.py`` live in ``_cffi_build.py`` beside it.

No ``-march`` flag: the SIMD functions carry their own ``target`` attributes, and the binary
must run on any CPU of its architecture (run-time dispatch picks the path).
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from zmesh._accel import _cffi_build
else:  # exec'd by cffi, where zmesh need not import: load the sibling by its bare name
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import _cffi_build

    del sys.path[0]


def _cdef_from_header() -> str:  # tests/accel/test_gf_accel.py reads the cdef through this
    return _cffi_build.cdef_from_header("gf_kernels")


# -O3 unrolls the portable table loop; the SIMD loops are already unrolled by hand.
ffibuilder = _cffi_build.make_builder(
    "_gf256", "gf_kernels", as_script=__name__ == "__main__", cflags=["-O3", "-std=c99"]
)

if __name__ == "__main__":
    print("built", _cffi_build.build_in_place(ffibuilder, "_gf256"))
