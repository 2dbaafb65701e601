// Gradient checks: analytic gradients against central finite differences, in double.
//
// For a tensor with analytic gradient a and numeric gradient n, the reported error is
//   rel = max_i |a_i - n_i| / max_i max(|a_i|, |n_i|)
// i.e. the largest difference relative to the tensor's largest gradient, which stays
// meaningful where single entries are (near) zero.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "model/config.h"

namespace model {

struct GradError {
    std::string name; // "h.0.attn.c_attn.weight", or "layernorm/inp" for a layer check
    size_t count = 0; // entries compared
    double max_abs = 0;
    double rel = 0;
};

GradError compare_gradients(const std::string& name, const double* analytic, const double* numeric,
                            size_t count);

// Whole model: random weights (GPT-2 init plus noise on biases and LayerNorm weights so
// that every path is exercised), random tokens, every 5th target ignored (-1).
// One entry per parameter tensor, every element perturbed by +-h. The loss is the mean
// over kept targets, or with loss_divisor > 0 their sum / loss_divisor (GPT2::forward).
std::vector<GradError> check_model_gradients(const Config& config, int B, int Tn, uint64_t seed,
                                             double h = 1e-5, int loss_divisor = 0);

// Each layer alone, with loss = sum(out * R) for a fixed random R (the cross-entropy:
// its mean loss). One entry per differentiable input of each layer.
std::vector<GradError> check_layer_gradients(uint64_t seed, double h = 1e-5);

// The same weights and batch in float and in double (the double model gets the
// float-rounded weights, so only the arithmetic differs).
struct PrecisionReport {
    double loss_float = 0, loss_double = 0;
    double loss_rel = 0;          // |loss_f - loss_d| / |loss_d|
    std::vector<GradError> grads; // per tensor, float vs double as "analytic" vs "numeric"
};
PrecisionReport compare_precisions(const Config& config, int B, int Tn, uint64_t seed);

} // namespace model
