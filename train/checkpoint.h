// Training checkpoints: one HDF5 file holding everything needed to continue exactly.
//
// The root is a model file (model/io.h's HDF5 layout, format "gpt2-cpp checkpoint"),
// so `gpt2 convert` and every --model option read a checkpoint's weights directly.
// Beside the weights:
//   /optimizer/m, /optimizer/v   float32 (n_params) AdamW moments, in our flat layout
//   /optimizer  attrs            t, beta1, beta2, eps, weight_decay
//   /training   attrs            step (optimizer steps done), loader_epoch,
//                                loader_window (data::LoaderState; the same for any
//                                number of ranks), args (the training options as JSON)
// Checkpoints written before loader_window existed (single-process runs) hold
// loader_batch instead, which for one rank is the same number.
// Randomness needs no saved state: shuffling derives from (seed, epoch) and samples
// from (seed, step).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "data/loader.h"
#include "model/config.h"
#include "optim/optim.h"

namespace train {

struct Checkpoint {
    model::Config config;
    std::vector<float> params, m, v;
    int64_t adam_t = 0;
    int64_t step = 0;
    data::LoaderState loader;
    std::string args_json;
};

// AdamW's state over the whole flat buffer (gathered from the ranks under ZeRO-1).
struct OptimizerState {
    std::span<const float> m, v;
    int64_t t = 0;
    optim::AdamWConfig config;
};

// Written to PATH.tmp, flushed and renamed: a crash never damages an existing PATH.
void save_checkpoint(const std::string& path, const model::Config& config, const float* params,
                     const OptimizerState& optimizer, int64_t step, const data::LoaderState& loader,
                     const std::string& args_json);
Checkpoint load_checkpoint(const std::string& path);

// DIR/ckpt_NNNNNNNN.h5 for a step; the newest such file in DIR ("" if none); deletes all
// but the newest `keep` (keep <= 0 keeps all).
std::string checkpoint_path(const std::string& dir, int64_t step);
std::string latest_checkpoint(const std::string& dir);
void prune_checkpoints(const std::string& dir, int keep);

} // namespace train
