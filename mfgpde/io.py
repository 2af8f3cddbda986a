"""Files written atomically: a temporary file in the target folder, then ``os.replace``.

Nothing half written is ever left under the target name (a crash, Ctrl-C or a full disk leaves
the previous file or none).
"""

from __future__ import annotations

import json
import os
import tempfile


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
    return atomic_write(path, lambda tmp: ds.to_netcdf(tmp, engine="scipy", format="NETCDF3_64BIT"), ".nc")
