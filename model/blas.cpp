#include "model/blas.h"

#include <cstdlib>
#include <mutex>

#include <omp.h>

#ifdef GPT2_BLAS_BLIS
#include <blis.h>
#endif

namespace model {

void configure_blas() {
    static std::once_flag once;
    std::call_once(once, [] {
#ifdef GPT2_BLAS_BLIS
        // BLIS chooses its kernels on first use, from BLIS_ARCH_TYPE or its CPU table.
        // Debian's BLIS 0.9 predates AMD Zen 4 and 5 and gives them AVX2 or generic C
        // kernels; every CPU with these AVX-512 subsets runs the Skylake-X ones (on the
        // reference Zen 5 machine: 270-290 instead of 55 GFLOP/s). A user's own
        // BLIS_ARCH_TYPE wins.
        if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
            __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl"))
            setenv("BLIS_ARCH_TYPE", "skx", /*overwrite=*/0);
        // BLIS is single-threaded unless told; inside our own parallel regions it
        // finds one thread and runs single-threaded.
        if (!std::getenv("BLIS_NUM_THREADS")) bli_thread_set_num_threads(omp_get_max_threads());
#endif
    });
}

// OpenBLAS's OpenMP build follows omp_get_max_threads() at each call; BLIS keeps its own
// count, which configure_blas() set.
ThreadLimit::ThreadLimit(int n) : omp_threads_(omp_get_max_threads()), blas_threads_(0) {
    omp_set_num_threads(n);
#ifdef GPT2_BLAS_BLIS
    blas_threads_ = int(bli_thread_get_num_threads());
    bli_thread_set_num_threads(n);
#endif
}

ThreadLimit::~ThreadLimit() {
    omp_set_num_threads(omp_threads_);
#ifdef GPT2_BLAS_BLIS
    bli_thread_set_num_threads(blas_threads_);
#endif
}

} // namespace model
