// MPI's C API for the communicator's files, and its error codes as exceptions.
#pragma once

// The C API only: without these, OpenMPI and MPICH also pull in their C++ bindings.
#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>

#include <stdexcept>
#include <string>

namespace train {

// Throws "MPI: <what> failed: <MPI's text>" unless rc is MPI_SUCCESS.
inline void check_mpi(int rc, const char* what) {
    if (rc == MPI_SUCCESS) return;
    char text[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, text, &len);
    throw std::runtime_error(std::string("MPI: ") + what +
                             " failed: " + std::string(text, size_t(len)));
}

} // namespace train
