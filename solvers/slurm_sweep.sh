#!/bin/bash
# Slurm job: a parameter sweep spread over MPI ranks (one independent MFG solve per member).
#   sbatch solvers/slurm_sweep.sh
# Edit the --param lines; each value list multiplies the number of members.
#SBATCH --job-name=mfgpde-sweep
#SBATCH --ntasks=16
#SBATCH --cpus-per-task=1
#SBATCH --time=02:00:00
#SBATCH --output=mfgpde-sweep-%j.log
set -euo pipefail
cd "${SLURM_SUBMIT_DIR:-.}"
VENV=${VENV:-.venv}
export NUMBA_NUM_THREADS=${SLURM_CPUS_PER_TASK:-1}     # one thread per rank: ranks, not threads, share the node
export NUMBA_CACHE_DIR=${NUMBA_CACHE_DIR:-$HOME/.cache/mfgpde-numba}   # compiled kernels are reused across ranks and jobs
# Use the mpiexec of the MPI that mpi4py was built against (the mpich wheel installs it in the venv);
# with a site MPI, replace by `srun --mpi=pmi2`.
"$VENV/bin/mpiexec" -n "${SLURM_NTASKS}" "$VENV/bin/mfgpde" sweep solvers/lst_case1.toml \
    --param model.nu=0.02,0.05,0.1,0.2 \
    --param hamiltonian.c1=1,2,4,8 \
    --out "sweep-${SLURM_JOB_ID:-local}"
