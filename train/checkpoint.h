// Training checkpoints: one HDF5 file holding everything needed to continue exactly.
//
// The root is a model file (model/io.h's HDF5 layout, format "gpt2-cpp checkpoint"),
// so `gpt2 convert` and every --model option read a checkpoint's weights directly.
// Beside the weights:
//   /optimizer/m, /optimizer/v   float32 (n_params) AdamW moments, in our flat layout
//   /optimizer  attrs            t, beta1, beta2, eps, weight_decay
//   /training   attrs            step (optimizer steps done), loader_epoch,
//                                loader_window (data::LoaderState; the same for any
//                                number of ranks), args (the training options as JSON),
//                                run_id (the run that wrote it; a resumed run keeps it)
//                 The loop's own state (LoopState; absent from older checkpoints):
//                                skipped_steps, best_metric, best_value, best_step,
//                                since_best, outliers (the detectors' windows as JSON,
//                                whose numbers read back bit for bit)
// Checkpoints written before loader_window existed (single-process runs) hold
// loader_batch instead, which for one rank is the same number; older ones have no
// run_id.
//
// Integrity: every tensor is stored with HDF5's Fletcher-32 checksum and the object
// headers (attributes) with HDF5's metadata checksums, so one damaged byte fails the
// load; every /optimizer and /training value is checked for sense.
// Randomness needs no saved state: shuffling derives from (seed, epoch) and samples
// from (seed, step).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "base/error.h"
#include "data/loader.h"
#include "model/config.h"
#include "optim/optim.h"
#include "train/outlier.h"

namespace train {

// What the training loop tracks beside the weights, so that a resumed run skips, keeps
// its best checkpoint and stops early exactly as the uninterrupted one.
struct LoopState {
    int64_t skipped_steps = 0; // updates the outlier guard skipped: Adam's t = step - this
    std::string best_metric;   // the metric followed ("" before its first measurement)
    double best_value = 0;
    int64_t best_step = 0;  // where best_value was measured (0: not yet)
    int64_t since_best = 0; // measurements after best_step without improvement
    OutlierDetector::State loss_outliers, grad_norm_outliers;
};

struct Checkpoint {
    model::Config config;
    std::vector<float> params, m, v;
    int64_t adam_t = 0;
    int64_t step = 0;
    data::LoaderState loader;
    std::string args_json;
    std::string run_id; // "" in checkpoints older than run ids
    LoopState loop;
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
                     const std::string& args_json, const std::string& run_id = "",
                     const LoopState& loop = {});
// Reads and verifies a checkpoint: checksums, and values that cannot be (a step past
// kMaxStep, Adam's t other than the steps not skipped, a negative second moment, a NaN
// weight) are a base::FileError naming the file.
Checkpoint load_checkpoint(const std::string& path);
constexpr int64_t kMaxStep = 1'000'000'000;

// A new run's id: 16 random hex digits.
std::string new_run_id();
// The run id a checkpoint records ("" if none, or if it cannot be read).
std::string checkpoint_run_id(const std::string& path);

// DIR/ckpt_NNNNNNNN.h5 for a step; the checkpoints in DIR, highest step first; the
// newest ("" if none).
std::string checkpoint_path(const std::string& dir, int64_t step);
std::vector<std::string> list_checkpoints(const std::string& dir);
std::string latest_checkpoint(const std::string& dir);

// The newest checkpoint in DIR that loads and verifies; `skipped` gets the FileError of
// each newer one that does not. FileError when none verifies (or there is none).
Checkpoint load_latest_valid(const std::string& dir, std::string& path,
                             std::vector<base::FileError>& skipped);

// Deletes run `run_id`'s checkpoints in DIR older than the newest `keep` of them at or
// below `step` (keep <= 0 keeps all). Other runs' checkpoints, this run's past `step`
// (left by a branch that was resumed from an earlier one) and those in `damaged` (found
// not to verify) are neither counted nor touched.
void prune_checkpoints(const std::string& dir, int keep, const std::string& run_id, int64_t step,
                       const std::vector<std::string>& damaged = {});

} // namespace train
