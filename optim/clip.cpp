#include <algorithm>
#include <array>
#include <cmath>

#include "optim/optim.h"

namespace optim {

namespace {
constexpr size_t kChunks = 256; // partial sums; their count fixes the summation order
}

double grad_norm(const float* grads, size_t n) {
    return std::sqrt(grad_sum_squares(grads, n));
}

double grad_sum_squares(const float* grads, size_t n) {
    std::array<double, kChunks> partial{};
    const size_t chunk = (n + kChunks - 1) / kChunks;
#pragma omp parallel for schedule(static)
    for (size_t c = 0; c < kChunks; ++c) {
        const size_t lo = std::min(n, c * chunk), hi = std::min(n, lo + chunk);
        double s = 0.0;
#pragma omp simd reduction(+ : s)
        for (size_t i = lo; i < hi; ++i) s += double(grads[i]) * double(grads[i]);
        partial[c] = s;
    }
    double sum = 0.0;
    for (double s : partial) sum += s;
    return sum;
}

double clip_factor(double norm, double max_norm) {
    if (!(max_norm > 0) || !std::isfinite(norm)) return 1.0;
    return std::min(1.0, max_norm / (norm + 1e-6));
}

double clip_grad_norm(float* grads, size_t n, double max_norm) {
    const double norm = grad_norm(grads, n);
    const double coef = clip_factor(norm, max_norm);
    if (coef >= 1.0) return norm;
    const float scale = float(coef);
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; ++i) grads[i] *= scale;
    return norm;
}

} // namespace optim
