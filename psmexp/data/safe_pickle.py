"""Read pickled numpy data without running code: an unpickler that may only build numpy arrays.

A pickle names the callables that rebuild its objects, so `pickle.load` on a downloaded file can run anything.
`load` resolves only the globals that pickled ndarrays need (numpy's `_reconstruct` / `_frombuffer`, `ndarray`,
`dtype`, under the numpy 1.x and 2.x module names, and `_codecs.encode`, with which Python 3 writes bytes at protocol
2) plus builtin containers and scalars, and refuses any other global before anything is called.
"""
from __future__ import annotations

import _codecs
import pickle
from typing import BinaryIO

import numpy as np

_multiarray = getattr(np, "_core", None) or np.core
_ALLOWED = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _codecs.encode,
    **{(f"{package}.multiarray", "_reconstruct"): _multiarray.multiarray._reconstruct
       for package in ("numpy.core", "numpy._core")},
    **{(f"{package}.numeric", "_frombuffer"): _multiarray.numeric._frombuffer
       for package in ("numpy.core", "numpy._core")},
}


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle asked for a global outside the numpy-array allowlist; nothing it names was called."""


class _NumpyOnlyUnpickler(pickle.Unpickler):
    def __init__(self, file: BinaryIO, source: str, **kwargs):
        super().__init__(file, **kwargs)
        self.source = source

    def find_class(self, module: str, name: str):
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise UnsafePickleError(f"{self.source}: the pickle asks for {module}.{name}; only numpy arrays (and "
                                    f"builtin containers) are accepted, so it was rejected unread") from None


def load(file: BinaryIO, source: str, encoding: str = "latin1"):
    """Unpickle `file` (named `source` in errors), allowing numpy arrays, builtin containers and scalars only."""
    return _NumpyOnlyUnpickler(file, source, encoding=encoding).load()
