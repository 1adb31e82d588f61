"""MATLAB files of PRODA's tree: v5/v7 streamed, v7.3 (HDF5) read cell by cell, and a writer.

MATLAB v5/v7 files have no index: a variable is one (usually zlib-compressed) data element.
`_read_cells` walks it once, decompressing a piece at a time, and keeps only the values at the
wanted column-major offsets, so memory stays at a few MB whatever the grid. MATLAB may store
doubles in a smaller integer type; those are converted. v7.3 files are HDF5 (h5py, optional).
"""

from __future__ import annotations

import dataclasses
import os
import struct
import zlib

import numpy as np

from ...forcing import N_MONTHS
from ...grid import N_LAYERS

MAT_VARIABLE = "var_record_monthly_mean"


class TreeError(ValueError):
    """The tree cannot be read (missing file or variable, wrong shape): one line, naming it."""


@dataclasses.dataclass
class _Mat:
    path: str
    kind: str  # "v5" or "v7.3"
    shape: tuple[int, ...]  # MATLAB order (nlat, nlon, [L,] 12)


def _mat_info(path: str, var: str) -> _Mat:
    if not os.path.isfile(path):
        raise TreeError(f"missing forcing file for {var}: {path}")
    with open(path, "rb") as f:
        head = f.read(128)
    if b"MATLAB 7.3" in head or head.startswith(b"\x89HDF"):
        h5py = _h5py(path)
        with h5py.File(path, "r") as f:
            if MAT_VARIABLE not in f:
                raise TreeError(f"{path} has no variable {MAT_VARIABLE!r}")
            shape = tuple(reversed(f[MAT_VARIABLE].shape))  # HDF5 stores MATLAB's transpose
        return _Mat(path, "v7.3", shape)
    from scipy.io import whosmat

    try:
        found = {name: shape for name, shape, _cls in whosmat(path)}
    except Exception as err:  # noqa: BLE001 - any parse failure is one line for the user
        raise TreeError(f"{path} is not a MATLAB file scipy can read: {err}") from None
    if MAT_VARIABLE not in found:
        raise TreeError(f"{path} has no variable {MAT_VARIABLE!r} (has {sorted(found)})")
    return _Mat(path, "v5", tuple(found[MAT_VARIABLE]))


def _h5py(path: str):
    try:
        import h5py
    except ModuleNotFoundError:
        raise TreeError(
            f"{path} is a MATLAB v7.3 (HDF5) file: reading it needs h5py (pip install h5py)"
        ) from None
    return h5py


def _read_cells(mat: _Mat, ii: np.ndarray, jj: np.ndarray) -> np.ndarray:
    """Values at cells (ii, jj): (n, 12) or (n, 20, 12); other cells never kept in memory."""
    layered = len(mat.shape) == 4
    shape = (*mat.shape[:2], *((min(mat.shape[2], N_LAYERS),) if layered else ()), N_MONTHS)
    if mat.kind == "v7.3":
        with _h5py(mat.path).File(mat.path, "r") as f:
            d = f[MAT_VARIABLE]  # (12, [L,] nlon, nlat)
            cells = [np.asarray(d[..., j, i], dtype=float).T for i, j in zip(ii, jj, strict=True)]
        out = np.stack(cells) if cells else np.empty((0, *mat.shape[2:]))
        return out[:, :N_LAYERS] if layered else out
    # flat column-major offsets of (cell, [level,] month) in the (nlat, nlon, [L,] 12) array
    nlat, nlon = mat.shape[:2]
    cell = (np.asarray(ii) + nlat * np.asarray(jj)).reshape(-1, *([1] * (len(shape) - 2)))
    rest = np.indices(shape[2:]).reshape(len(shape) - 2, -1)
    stride = np.cumprod([nlat * nlon, *mat.shape[2:-1]])[: len(shape) - 2]
    flat = cell + (stride[:, None] * rest).sum(0).reshape(shape[2:])
    return _v5_values(mat, flat)


_MI_TYPES = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 9: "f8", 12: "i8"}
_MI_TYPES[13] = "u8"
_CHUNK = 1 << 22  # bytes decompressed at a time


class _Stream:
    """Bytes of one MATLAB v5 data element, decompressed piece by piece (bounded memory)."""

    def __init__(self, f, nbytes: int, compressed: bool):
        self.f, self.left, self.buf = f, nbytes, b""
        self.z = zlib.decompressobj() if compressed else None

    def chunk(self) -> bytes:
        """The next bytes (at most about `_CHUNK`); b"" at the end."""
        if self.buf:
            out, self.buf = self.buf, b""
            return out
        while True:
            if self.z is not None and self.z.unconsumed_tail:
                out = self.z.decompress(self.z.unconsumed_tail, _CHUNK)
            elif self.left > 0:
                raw = self.f.read(min(self.left, _CHUNK))
                if not raw:
                    return b""
                self.left -= len(raw)
                out = raw if self.z is None else self.z.decompress(raw, _CHUNK)
            else:
                return b"" if self.z is None else self.z.flush()
            if out:
                return out

    def read(self, n: int) -> bytes:
        out = b""
        while len(out) < n:
            piece = self.chunk()
            if not piece:
                raise TreeError(f"{self.f.name}: truncated MATLAB data element")
            out += piece
        self.buf = out[n:]
        return out[:n]


def _tag(stream: _Stream, endian: str) -> tuple[int, int, bytes]:
    """(type, nbytes, small-element data or b'') of the next tag."""
    raw = stream.read(8)
    first, second = struct.unpack(endian + "II", raw)
    if first >> 16:  # small data element: type, size and up to 4 bytes in 8
        return first & 0xFFFF, first >> 16, raw[4 : 4 + (first >> 16)]
    return first, second, b""


def _v5_values(mat: _Mat, flat: np.ndarray) -> np.ndarray:
    """The values at column-major offsets ``flat`` of the variable, streamed (MATLAB v5/v7)."""
    with open(mat.path, "rb") as f:
        endian = "<" if f.read(128)[126:128] == b"IM" else ">"
        while True:
            head = f.read(8)
            if len(head) < 8:
                raise TreeError(f"{mat.path}: no variable {MAT_VARIABLE!r}")
            mtype, nbytes = struct.unpack(endian + "II", head)
            end = f.tell() + nbytes
            if mtype in (14, 15):
                stream = _Stream(f, nbytes, compressed=mtype == 15)
                if mtype == 15:
                    mtype, _n, _ = _tag(stream, endian)
                if mtype == 14 and _matrix_name(stream, endian, mat) == MAT_VARIABLE:
                    return _pick(stream, endian, flat, mat)
            f.seek(end)


def _matrix_name(stream: _Stream, endian: str, mat: _Mat) -> str:
    for what in ("flags", "dimensions", "name"):
        _type, n, small = _tag(stream, endian)
        data = small or stream.read(n + (-n % 8))[:n]
        if what == "flags" and data[0 if endian == "<" else 3] not in range(6, 16):
            raise TreeError(f"{mat.path}: {MAT_VARIABLE} is not a numeric array")
    return data.decode("ascii", "replace")


def _pick(stream: _Stream, endian: str, flat: np.ndarray, mat: _Mat) -> np.ndarray:
    """Values at the element offsets ``flat`` of the real part that ``stream`` is at."""
    mtype, _n, small = _tag(stream, endian)
    if mtype not in _MI_TYPES:
        raise TreeError(f"{mat.path}: unsupported MATLAB data type {mtype}")
    dtype = np.dtype(endian + _MI_TYPES[mtype])  # MATLAB may store doubles as integers
    size = dtype.itemsize
    order = np.argsort(flat.ravel(), kind="stable")
    want = flat.ravel()[order] * size  # byte offsets, increasing
    out = np.empty(want.size)
    buf, pos, k = small, 0, 0  # buf holds the data bytes from offset pos on
    while k < want.size:
        hi = int(np.searchsorted(want, pos + len(buf) - size, side="right"))
        if hi > k:
            idx = (want[k:hi] - pos)[:, None] + np.arange(size)
            out[order[k:hi]] = np.frombuffer(buf, np.uint8)[idx].copy().view(dtype).ravel()
            k = hi
            if k == want.size:
                break
        if want[k] >= pos + len(buf):
            pos, buf = pos + len(buf), b""
        else:
            buf, pos = buf[want[k] - pos :], int(want[k])
        piece = stream.chunk()
        if not piece:
            raise TreeError(f"{mat.path}: {MAT_VARIABLE} ends before its last value")
        buf += piece
    return out.reshape(flat.shape)


def _write_mat(path: str, value: np.ndarray, fmt: str) -> None:
    if fmt == "v5":
        from scipy.io import savemat

        savemat(path, {MAT_VARIABLE: value}, do_compression=True)  # MATLAB's default -v7
        return
    h5py = _h5py(path)
    with h5py.File(path, "w", userblock_size=512) as f:
        d = f.create_dataset(MAT_VARIABLE, data=np.asarray(value, float).T)  # column-major
        d.attrs["MATLAB_class"] = np.bytes_("double")
    head = b"MATLAB 7.3 MAT-file, written by soc_jax (HDF5 schema 1.00)".ljust(116)
    with open(path, "r+b") as f:
        f.write(head + b"\x00" * 8 + b"\x00\x02IM")
