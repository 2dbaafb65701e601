// Row-major GEMM for float and double through CBLAS:
//   C (M,N) = alpha * op(A) (M,K) @ op(B) (K,N) + beta * C
// lda, ldb, ldc are row strides, so callers can pass strided views (e.g. one head of qkv).
#pragma once

#include <cblas.h>

namespace model {

inline void gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A,
                 int lda, const float* B, int ldb, float beta, float* C, int ldc) {
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                trans_b ? CblasTrans : CblasNoTrans, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

inline void gemm(bool trans_a, bool trans_b, int M, int N, int K, double alpha, const double* A,
                 int lda, const double* B, int ldb, double beta, double* C, int ldc) {
    cblas_dgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                trans_b ? CblasTrans : CblasNoTrans, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

// Once per process, before the first product: lets the BLAS library use every OpenMP
// thread and the best kernels for this CPU. The gpt2 program and the test runner call
// it first thing in main(); other programs using model/ should too.
void configure_blas();

// While alive, the calling thread's OpenMP regions and the BLAS products run on n threads,
// as before once it ends. Tiny products and loops, as finite-difference checks make, lose
// more to handing work between threads than they gain, and far more when other processes
// share the cores (as under ctest -j).
class ThreadLimit {
public:
    explicit ThreadLimit(int n);
    ~ThreadLimit();
    ThreadLimit(const ThreadLimit&) = delete;
    ThreadLimit& operator=(const ThreadLimit&) = delete;

private:
    int omp_threads_;
    int blas_threads_;
};

} // namespace model
