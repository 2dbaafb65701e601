// AdamW, learning-rate schedules and gradient-norm clipping on flat float buffers laid
// out by model::ParamLayout.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "base/memory.h"
#include "model/layout.h"

namespace optim {

// Defaults are nanoGPT's and llm.c's for GPT-2; the trainer sets weight_decay
// (nanoGPT and llm.c's scripts use 0.1).
struct AdamWConfig {
    double beta1 = 0.9, beta2 = 0.95, eps = 1e-8, weight_decay = 0.0;
};

// torch.optim.AdamW (single-tensor, non-amsgrad), decaying only tensors with
// TensorInfo::decays() as nanoGPT's parameter groups do. Each step, per element:
//   t += 1;  bc1 = 1 - b1^t,  bc2 = 1 - b2^t       (double)
//   p *= 1 - lr*wd                                  (decaying tensors only)
//   m += (g - m)*(1-b1);  v = b2*v + (1-b2)*g*g     (float, as for float32 params)
//   p -= (lr/bc1) * m / (sqrt(v)/sqrt(bc2) + eps)
// The state covers the slice [begin, end) of the flat buffer, so a ZeRO-1 rank can
// own one shard; slices give bitwise the same result as one optimizer over the whole.
class AdamW {
public:
    // end is clamped to layout.total(); throws std::invalid_argument if begin > end.
    AdamW(const model::ParamLayout& layout, const AdamWConfig& config, size_t begin = 0,
          size_t end = SIZE_MAX);

    // params and grads point at the start of the full buffers; only [begin, end) is
    // read or written. The gradient used is grads * grad_scale (one float product, as
    // PyTorch's in-place clipping makes it), so clipping and averaging over
    // micro-batches cost no pass of their own. Allocates nothing.
    void step(float* params, const float* grads, float lr, float grad_scale = 1.0f);

    // State, for checkpoints: m and v hold end - begin elements, slice-relative.
    int64_t t() const { return t_; }
    void set_t(int64_t t) { t_ = t; }
    std::span<float> m() { return m_; }
    std::span<float> v() { return v_; }
    std::span<const float> m() const { return m_; }
    std::span<const float> v() const { return v_; }
    size_t begin() const { return begin_; }
    size_t end() const { return end_; }
    const AdamWConfig& config() const { return config_; }

    struct Run {
        size_t begin, end;
    }; // absolute element indices
    // Where weight decay applies inside the slice, sorted, adjacent runs merged.
    const std::vector<Run>& decay_runs() const { return decay_runs_; }

private:
    void update(float* p, const float* g, float grad_scale, size_t lo, size_t hi, float decay,
                float neg_step, float bc2_sqrt);

    AdamWConfig config_;
    size_t begin_, end_;
    int64_t t_ = 0;
    base::LargeVector<float> m_, v_;
    std::vector<Run> decay_runs_;
};

// Global L2 norm of grads[0, n), summed in double over fixed chunks combined in order,
// so the result does not depend on the number of threads. 0 for n == 0.
double grad_norm(const float* grads, size_t n);
// Its square, before the root: what ranks holding parts of the gradient add up.
double grad_sum_squares(const float* grads, size_t n);

// torch.nn.utils.clip_grad_norm_'s factor: min(1, max_norm / (norm + 1e-6)), or 1 when
// max_norm <= 0 (no clipping) or the norm is not finite.
double clip_factor(double norm, double max_norm);

// torch.nn.utils.clip_grad_norm_: scales grads by clip_factor(norm, max_norm) and
// returns the norm before clipping; a non-finite norm leaves grads untouched (the
// caller decides whether to skip the step).
double clip_grad_norm(float* grads, size_t n, double max_norm);

// Learning rate at 0-based step s of `total` steps. For every kind, warmup is llm.c's:
//   s < warmup:  lr * (s+1) / warmup
// and afterwards, with lr_min = lr * final_fraction:
//   constant  lr
//   cosine    lr_min + 0.5*(1 + cos(pi*r))*(lr - lr_min), r = (s-warmup)/(total-warmup);
//             lr_min for s >= total
//   wsd       warmup-stable-decay: lr until d = max(warmup, total - round(decay_fraction*total)),
//             then linear over the k = total - d last steps, s = d+i giving
//             lr - (lr - lr_min)*(i+1)/k, so lr_min at s = total-1 and beyond
//   linear    lr - (lr - lr_min)*(s-warmup)/(total-1-warmup): lr at s = warmup, lr_min at
//             the last step s = total-1 and beyond. HF's get_linear_schedule_with_warmup
//             decays to 0, reached one step after the last (at s = total)
struct Schedule {
    enum class Kind { constant, cosine, wsd, linear };
    Kind kind = Kind::cosine;
    double lr = 0.0;
    int warmup = 0;
    int total = 0;
    double final_fraction = 0.0;
    double decay_fraction = 0.2;

    double at(int step) const;
    // Throws base::SettingError naming the field (lr, warmup, total, final_fraction,
    // decay_fraction) that is out of range.
    void validate() const;
    // "constant", "cosine", "wsd" or "linear"; throws base::SettingError listing them.
    static Kind parse(const std::string& name);
    static const char* name(Kind kind);
    // e.g. "cosine lr 0.0006 warmup 700 steps 19073 final x0.1"
    std::string describe() const;
};

} // namespace optim
