#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "optim/optim.h"

namespace optim {

AdamW::AdamW(const model::ParamLayout& layout, const AdamWConfig& config, size_t begin, size_t end)
    : config_(config), begin_(begin), end_(std::min(end, layout.total())) {
    if (begin_ > end_)
        throw std::invalid_argument("AdamW: slice begin " + std::to_string(begin_) +
                                    " is past its end " + std::to_string(end_));
    m_.assign(end_ - begin_, 0.0f);
    v_.assign(end_ - begin_, 0.0f);
    for (const auto& t : layout.tensors()) {
        if (!t.decays()) continue;
        const size_t lo = std::max(t.offset, begin_), hi = std::min(t.offset + t.size, end_);
        if (lo >= hi) continue;
        if (!decay_runs_.empty() && decay_runs_.back().end == lo)
            decay_runs_.back().end = hi;
        else
            decay_runs_.push_back({lo, hi});
    }
}

// Scalars arrive as PyTorch passes them to its float32 kernels: computed in double,
// rounded to float once.
void AdamW::step(float* params, const float* grads, float lr, float grad_scale) {
    ++t_;
    const double bc1 = 1.0 - std::pow(config_.beta1, double(t_));
    const double bc2 = 1.0 - std::pow(config_.beta2, double(t_));
    const float neg_step = float(-(double(lr) / bc1));
    const float bc2_sqrt = float(std::sqrt(bc2));
    const float decay = float(1.0 - double(lr) * config_.weight_decay);
    // Runs are sorted: alternate undecayed gaps and decayed runs across the slice.
    size_t pos = begin_;
    for (const Run& r : decay_runs_) {
        update(params, grads, grad_scale, pos, r.begin, 1.0f, neg_step, bc2_sqrt);
        update(params, grads, grad_scale, r.begin, r.end, decay, neg_step, bc2_sqrt);
        pos = r.end;
    }
    update(params, grads, grad_scale, pos, end_, 1.0f, neg_step, bc2_sqrt);
}

// Elements [lo, hi) of the full buffers; decay 1 multiplies exactly, i.e. no decay.
void AdamW::update(float* p, const float* g, float grad_scale, size_t lo, size_t hi, float decay,
                   float neg_step, float bc2_sqrt) {
    const float c1 = float(1.0 - config_.beta1), b2 = float(config_.beta2);
    const float c2 = float(1.0 - config_.beta2), eps = float(config_.eps);
    // The moments hold the slice only: element i of the buffers is m[i - begin_].
    float* m = m_.data() + (lo - begin_);
    float* v = v_.data() + (lo - begin_);
    p += lo;
    g += lo;
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < hi - lo; ++i) {
        const float gi = g[i] * grad_scale; // exact when 1
        const float pi = p[i] * decay;
        const float mi = m[i] + c1 * (gi - m[i]); // torch.lerp for weight < 0.5
        const float vi = v[i] * b2 + c2 * gi * gi;
        const float denom = std::sqrt(vi) / bc2_sqrt + eps;
        m[i] = mi;
        v[i] = vi;
        p[i] = pi + neg_step * mi / denom;
    }
}

} // namespace optim
