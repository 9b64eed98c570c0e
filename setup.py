"""Build hook for the optional cffi C accelerator (everything else lives in pyproject.toml).

``cffi_modules`` makes ``pip install .`` and ``pip install -e .`` generate and compile
``zmesh._accel._gf256`` from ``zmesh/_accel/build_gf.py``. The extension is declared optional
there, so an install on a machine without a C compiler still succeeds and zmesh runs on the
pure-Python GF(256) twin (``zmesh.sansio.tetrys.gf256.BACKEND == "python"``).
"""

from setuptools import setup  # type: ignore[import-untyped,unused-ignore]

setup(
    cffi_modules=[
        "zmesh/_accel/build_gf.py:ffibuilder",
        "zmesh/_accel/build_cells.py:ffibuilder",
    ]
)
