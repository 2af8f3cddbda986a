"""Files written atomically: a temporary file in the target folder, then ``os.replace``.

Nothing half written is ever left under the target name (a crash, Ctrl-C or a full disk leaves
the previous file or none).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile

import numpy as np


def atomic_write(path, writer, suffix=""):
    """Write a file through ``writer(tmp_path)`` then rename, so no half-written file is left."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=suffix)
    os.close(fd)
    try:
        writer(tmp)
        # mkstemp creates the file 0600; give it the permissions a plain open() would
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


def write_json(path, data):
    """Atomically write JSON."""
    def w(tmp):
        with open(tmp, "w") as fh:
            json.dump(data, fh, indent=2, default=float)
            fh.write("\n")
    return atomic_write(path, w, ".json")


def save_netcdf(ds, path):
    """Write an ``xarray.Dataset`` to NetCDF atomically, in the classic 64-bit offset format.

    The classic format (xarray's ``scipy`` engine) needs no HDF5, so the file can be read in
    any process: after DOLFINx/PETSc have loaded their own HDF5, netCDF4's HDF5 library fails
    on NetCDF-4 files with "NetCDF: HDF error", for writing and for reading alike (a session
    that solved on a mesh could not open a finite-difference solution). Variables of up to
    4 GiB each (a 3D grid of 128^3 x 128 steps in float64 is 2.2 GB).
    """
    ds = ds.copy()
    for var in list(ds.variables.values()):
        # the classic format has no checksum: a truncated file reads back as zeros from the cut on
        # (checked), so every variable carries its own digest and shape, verified on load
        var.attrs[CHECKSUM_ATTR] = _digest(var.values)
        var.attrs[SHAPE_ATTR] = ",".join(str(n) for n in var.shape) or "scalar"
    ds.attrs[FILE_SIZE_NOTE] = "every variable carries mfgpde_sha256; load with mfgpde.io.load_netcdf to verify"
    return atomic_write(path, lambda tmp: ds.to_netcdf(tmp, engine="scipy", format="NETCDF3_64BIT"), ".nc")


#: per-variable attributes that let a reader detect a truncated or corrupted file
CHECKSUM_ATTR, SHAPE_ATTR, FILE_SIZE_NOTE = "mfgpde_sha256", "mfgpde_shape", "mfgpde_integrity"


def _digest(values):
    """SHA-256 of the values in a canonical type (the classic format stores int64 as int32)."""
    arr = np.asarray(values)
    if arr.dtype.kind in "biu":
        arr = arr.astype(np.int64)
    elif arr.dtype.kind == "f":
        arr = arr.astype(np.float64)
    else:
        arr = arr.astype(str).astype("U")
    return hashlib.sha256(np.ascontiguousarray(arr).tobytes()).hexdigest()


def load_netcdf(path):
    """Load a NetCDF file written by :func:`save_netcdf` into memory, verifying every variable.

    Raises
    ------
    ValueError
        The file is missing, unreadable, truncated or corrupted: a variable's SHA-256, shape or
        presence differs from what was recorded when it was written. Files without the
        records (written by other tools or earlier versions) are loaded unverified.
    """
    import xarray as xr

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"{path!r}: no such file")
    try:
        with xr.open_dataset(path, engine="scipy") as ds:
            ds = ds.load()
    except Exception as exc:  # scipy's reader raises ValueError, TypeError, IndexError, OSError ... on broken files
        raise ValueError(f"{path!r} is not a readable NetCDF file (truncated or corrupted?): "
                         f"{type(exc).__name__}: {exc}") from None
    for name, var in ds.variables.items():
        want = var.attrs.get(CHECKSUM_ATTR)
        if want is None:
            continue
        shape = ",".join(str(n) for n in var.shape) or "scalar"
        if shape != var.attrs.get(SHAPE_ATTR, shape):
            raise ValueError(f"{path!r} is truncated or corrupted: variable {name!r} has shape {shape}, written as "
                             f"{var.attrs[SHAPE_ATTR]}")
        if _digest(var.values) != want:
            raise ValueError(f"{path!r} is truncated or corrupted: the data of variable {name!r} differ from what was "
                             "written (SHA-256 mismatch); rerun the solve that wrote it")
    return ds
