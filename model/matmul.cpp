// Linear layer through GEMM. Shapes in layers.h.
#include "model/layers.h"

#include <algorithm>
#include <stdexcept>
#include <type_traits>

#include "model/blas.h"
#include "model/matmul.h"
#ifdef GPT2_MATMUL_ONEDNN
#include "model/onednn_matmul.h" // Matmul<float>::Impl
#endif

namespace model {

// out (N,OC) = inp (N,C) @ weight (OC,C)^T + bias (OC)
template <class T>
void matmul_forward(T* out, const T* inp, const T* weight, const T* bias, int N, int C, int OC) {
    T beta = 0;
    if (bias) {
#pragma omp parallel for
        for (int n = 0; n < N; ++n) std::copy(bias, bias + OC, out + size_t(n) * OC);
        beta = 1;
    }
    gemm(false, true, N, OC, C, T(1), inp, C, weight, C, beta, out, OC);
}

// dinp (N,C) += dout @ weight;  dweight (OC,C) += dout^T @ inp;  dbias (OC) += sum_n dout
template <class T>
void matmul_backward(T* dinp, T* dweight, T* dbias, const T* dout, const T* inp, const T* weight,
                     int N, int C, int OC) {
    gemm(false, false, N, C, OC, T(1), dout, OC, weight, C, T(1), dinp, C);
    gemm(true, false, OC, C, N, T(1), dout, OC, inp, C, T(1), dweight, C);
    if (dbias) bias_backward(dbias, dout, N, OC);
}

// dbias (OC) += sum_n dout (N,OC). Threads own blocks of output channels: a fixed
// summation order over rows, whatever the thread count.
template <class T> void bias_backward(T* dbias, const T* dout, int N, int OC) {
    constexpr int kBlock = 64;
    const int n_blocks = (OC + kBlock - 1) / kBlock;
#pragma omp parallel for
    for (int blk = 0; blk < n_blocks; ++blk) {
        const int o0 = blk * kBlock, o1 = std::min(OC, o0 + kBlock);
        T acc[kBlock] = {};
        for (int n = 0; n < N; ++n) {
            const T* d = dout + size_t(n) * OC;
            for (int o = o0; o < o1; ++o) acc[o - o0] += d[o];
        }
        for (int o = o0; o < o1; ++o) dbias[o] += acc[o - o0];
    }
}

#define INSTANTIATE(T)                                                                             \
    template void matmul_forward<T>(T*, const T*, const T*, const T*, int, int, int);              \
    template void matmul_backward<T>(T*, T*, T*, const T*, const T*, const T*, int, int, int);     \
    template void bias_backward<T>(T*, const T*, int, int);
INSTANTIATE(float)
INSTANTIATE(double)

// Matmul<T> on the CBLAS layer functions above: nothing to prepare or keep.
#define CBLAS_MATMUL(T)                                                                            \
    template <> struct Matmul<T>::Impl {};                                                         \
    template <>                                                                                    \
    void Matmul<T>::forward(T* out, const T* inp, const T* weight, const T* bias, int N, int C,    \
                            int OC) {                                                              \
        matmul_forward(out, inp, weight, bias, N, C, OC);                                          \
    }                                                                                              \
    template <>                                                                                    \
    void Matmul<T>::backward(T* dinp, T* dweight, T* dbias, const T* dout, const T* inp,           \
                             const T* weight, int N, int C, int OC) {                              \
        matmul_backward(dinp, dweight, dbias, dout, inp, weight, N, C, OC);                        \
    }                                                                                              \
    template <> void Matmul<T>::forward(T*, const bf16*, const T*, const T*, int, int, int) {      \
        throw std::logic_error("Matmul: bf16 inputs need precision bf16 on oneDNN");               \
    }                                                                                              \
    template <>                                                                                    \
    void Matmul<T>::backward(T*, T*, T*, const T*, const bf16*, const T*, int, int, int) {         \
        throw std::logic_error("Matmul: bf16 inputs need precision bf16 on oneDNN");               \
    }                                                                                              \
    template <> void Matmul<T>::forward(bf16*, const bf16*, const T*, const T*, int, int, int) {   \
        throw std::logic_error("Matmul: bf16 outputs need precision bf16 on oneDNN");              \
    }                                                                                              \
    template <> void Matmul<T>::backward_input(T*, const bf16*, const T*, int, int, int) {         \
        throw std::logic_error("Matmul: bf16 gradients need precision bf16 on oneDNN");            \
    }                                                                                              \
    template <> void Matmul<T>::backward_weight(T*, const bf16*, const T*, int, int, int) {        \
        throw std::logic_error("Matmul: bf16 gradients need precision bf16 on oneDNN");            \
    }                                                                                              \
    template <> void Matmul<T>::prepare(int, int, int, bool, bool, const T*, Bf16Io, Copies) {}    \
    template <> void Matmul<T>::prepare_weight_grad(int, int, int) {}                              \
    template <> size_t Matmul<T>::weight_copy_bytes(size_t, size_t, bool) const {                  \
        return 0;                                                                                  \
    }                                                                                              \
    template <> void Matmul<T>::weights_changed() {}
CBLAS_MATMUL(double)
#ifndef GPT2_MATMUL_ONEDNN
CBLAS_MATMUL(float)
const char* matmul_backend() {
    return "CBLAS";
}
bool matmul_has_bf16() {
    return false;
}
#endif

// Only float products have a bf16 path, and only on oneDNN.
template <class T> void Matmul<T>::set_precision(Precision precision) {
    if (precision == Precision::bf16 && (!std::is_same_v<T, float> || !matmul_has_bf16()))
        throw std::invalid_argument("bf16 products need float and the oneDNN build");
    precision_ = precision;
    weights_changed();
}

template <class T> Matmul<T>::Matmul() : impl_(std::make_unique<Impl>()) {}
template <class T> Matmul<T>::~Matmul() = default;
template <class T> Matmul<T>::Matmul(Matmul&&) noexcept = default;
template <class T> Matmul<T>& Matmul<T>::operator=(Matmul&&) noexcept = default;
#define MATMUL_MEMBERS(T)                                                                          \
    template Matmul<T>::Matmul();                                                                  \
    template Matmul<T>::~Matmul();                                                                 \
    template Matmul<T>::Matmul(Matmul&&) noexcept;                                                 \
    template Matmul<T>& Matmul<T>::operator=(Matmul&&) noexcept;                                   \
    template void Matmul<T>::set_precision(Precision);
MATMUL_MEMBERS(float)
MATMUL_MEMBERS(double)

} // namespace model
