// SingleProcess's copies and exit, and the choice between it and MPI.
#include "train/communicator.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>

#include "train/mpi_communicator.h"

namespace train {

namespace {

// Set by mpirun (OpenMPI), or by PMIx/PMI launchers such as srun and MPICH's.
bool launched_by_mpi() {
    for (const char* var : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE"})
        if (std::getenv(var)) return true;
    return false;
}

} // namespace

void SingleProcess::scatter(const float* full, float* part, std::span<const size_t> offsets) {
    std::copy(full + offsets[0], full + offsets[1], part);
}

void SingleProcess::gather(const float* part, float* full, std::span<const size_t> offsets) {
    std::copy(part, part + (offsets[1] - offsets[0]), full + offsets[0]);
}

void SingleProcess::abort_job(int exit_code) {
    std::fflush(nullptr); // _Exit does not flush stdio
    std::_Exit(exit_code);
}

std::unique_ptr<Communicator> make_communicator() {
    if (launched_by_mpi()) return std::make_unique<MpiCommunicator>();
    return std::make_unique<SingleProcess>();
}

} // namespace train
