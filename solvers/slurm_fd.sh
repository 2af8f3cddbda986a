#!/bin/bash
# Slurm job: one finite-difference MFG solve distributed over --ntasks MPI ranks (PETSc DMDA).
#   sbatch solvers/slurm_fd.sh solvers/lst_case2.toml
#   sbatch --ntasks=64 solvers/slurm_fd.sh big.toml step_pc_type=gamg   # extra args: PETSc options
# Every rank holds its box of the grid (two ghost layers); rank 0 writes solution.nc (gathered),
# solution.png and summary.json (with "ranks" and "rank_grid", the split of the box).
# Time-dependent problems with nu > 0 and local couplings; others are refused with the reason.
#SBATCH --job-name=mfgpde-fd
#SBATCH --nodes=1
#SBATCH --ntasks=16
#SBATCH --cpus-per-task=1
#SBATCH --time=04:00:00
#SBATCH --output=mfgpde-fd-%j.log
set -euo pipefail
cd "${SLURM_SUBMIT_DIR:-.}"
VENV=${VENV:-.venv}                       # a Python >= 3.12 venv with mfgpde[fem] (petsc4py; make setup)
CONFIG=${1:-solvers/lst_case2.toml}
shift || true
PETSC_ARGS=()
for opt in "$@"; do PETSC_ARGS+=(--petsc-option "$opt"); done
# ranks, not threads, share the node; one Numba kernel cache for every rank and job
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 NUMBA_NUM_THREADS=1
export NUMBA_CACHE_DIR=${NUMBA_CACHE_DIR:-$HOME/.cache/mfgpde-numba}
# the mpiexec of the MPI that mpi4py/petsc4py were built against (the mpich wheel in the venv);
# with a site MPI build of PETSc, replace by `srun`
"$VENV/bin/mpiexec" -n "${SLURM_NTASKS:-2}" "$VENV/bin/mfgpde" solve "$CONFIG" \
    --out "fd-${SLURM_JOB_ID:-local}" --verbose "${PETSC_ARGS[@]}"
