#!/bin/bash
# Slurm job: one large finite-difference solve on one node (Numba threads), e.g. a 2D/3D benchmark.
#   sbatch solvers/slurm_solve.sh solvers/lst_case2.toml
# For a distributed finite-element solve over several ranks use solvers/slurm_fem.sh.
#SBATCH --job-name=mfgpde-solve
#SBATCH --nodes=1
#SBATCH --ntasks=1
#SBATCH --cpus-per-task=8
#SBATCH --time=04:00:00
#SBATCH --output=mfgpde-solve-%j.log
set -euo pipefail
cd "${SLURM_SUBMIT_DIR:-.}"
VENV=${VENV:-.venv}
CONFIG=${1:-solvers/lst_case2.toml}
export NUMBA_NUM_THREADS=${SLURM_CPUS_PER_TASK:-1}
export NUMBA_CACHE_DIR=${NUMBA_CACHE_DIR:-$HOME/.cache/mfgpde-numba}
"$VENV/bin/mfgpde" solve "$CONFIG" --out "solve-${SLURM_JOB_ID:-local}" --verbose
