#!/bin/bash
# Slurm job: one distributed finite-element MFG solve (DOLFINx/PETSc) over --ntasks MPI ranks.
#   sbatch solvers/slurm_fem.sh solvers/crowd_room.toml
# Writes solution.xdmf/.h5 (open in ParaView), solution.npz, solution.png and summary.json.
#SBATCH --job-name=mfgpde-fem
#SBATCH --nodes=1
#SBATCH --ntasks=8
#SBATCH --cpus-per-task=1
#SBATCH --time=02:00:00
#SBATCH --output=mfgpde-fem-%j.log
set -euo pipefail
cd "${SLURM_SUBMIT_DIR:-.}"
VENV=${VENV:-.venv}                       # a Python >= 3.12 venv with mfgpde[fem] (make setup)
CONFIG=${1:-solvers/crowd_room.toml}
export OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1   # ranks, not threads, share the node
# DOLFINx compiles its forms into this cache on first use; share it between jobs
export XDG_CACHE_HOME=${XDG_CACHE_HOME:-$HOME/.cache}
# Use the mpiexec of the MPI that mpi4py/petsc4py were built against (the mpich wheel in the venv);
# with a site MPI build of DOLFINx, replace by `srun`.
"$VENV/bin/mpiexec" -n "${SLURM_NTASKS}" "$VENV/bin/mfgpde" solve "$CONFIG" --out "fem-${SLURM_JOB_ID:-local}" --verbose
