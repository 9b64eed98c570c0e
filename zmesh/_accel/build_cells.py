"""cffi (API mode, out-of-line) builder for the batch cell kernels in ``cell_kernels.c``.

The kernels call OpenSSL 3 libcrypto's EVP AEADs, so building needs a C compiler and the
libcrypto headers (Debian: ``libssl-dev``). Used three ways:

- ``setup.py`` lists ``zmesh/_accel/build_cells.py:ffibuilder`` in ``cffi_modules``, so
  ``pip install .`` / ``pip install -e .`` compiles ``zmesh._accel._cellcrypt``. The extension
  is marked ``optional``: without a compiler or without the headers the build warns, the
  install still succeeds, and :mod:`zmesh._accel.cells` runs its pure-Python twin.
- ``python zmesh/_accel/build_cells.py`` compiles the module in place (a developer shortcut).
- cffi runs this file with ``exec`` (not ``import``), so it must not import zmesh; the build
  steps it shares with ``build_gf.py`` live in ``_cffi_build.py`` beside it.
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

# C11 for <stdatomic.h> (the per-key busy flag); the AEAD work itself is OpenSSL's.
ffibuilder = _cffi_build.make_builder(
    "_cellcrypt",
    "cell_kernels",
    as_script=__name__ == "__main__",
    cflags=["-O2", "-std=c11"],
    libraries=["crypto"],
)

if __name__ == "__main__":
    print("built", _cffi_build.build_in_place(ffibuilder, "_cellcrypt"))
