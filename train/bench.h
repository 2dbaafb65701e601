// Timing of training steps (or forward passes): tokens/s, FLOPs per token and model
// FLOPs utilisation against the machine's measured FP32 peak, and where a step's time
// goes. Under mpirun every rank runs the same steps on its own batch with the gradient
// reduction of training; per-rank figures are the root's, totals are summed over ranks.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "model/recompute.h"
#include "train/communicator.h"
#include "train/parallel.h"

namespace train {

struct BenchOptions {
    std::string model = "gpt2"; // a preset (random weights) or a model file
    int batch = 4, seq = 64, steps = 5, warmup = 1;
    bool forward_only = false;
    model::Recompute recompute = model::Recompute::off;
    double peak_gflops = 0; // 0: measure it
    ParallelOptions parallel;

    void validate() const; // throws base::SettingError naming the field
};

struct BenchResult {
    std::string config; // the model's Config::describe()
    std::string matmul; // the library of the float matrix products (model::matmul_backend)
    int ranks = 1, threads = 1;
    double ms_per_step = 0; // median over the timed steps
    double tok_per_s = 0, tok_per_s_per_rank = 0;
    double flops_per_token = 0, peak_gflops = 0, mfu = 0;
    double comm_ms_per_step = 0, wait_ms_per_step = 0; // medians; several ranks only
    double peak_rss_gb = 0;                            // the largest of any rank
    std::string reduction; // how gradients were reduced (several ranks, training)
    // Mean milliseconds per step by part: the model's stages, then optimizer,
    // communication, waiting and other; and the mean step they add up to.
    std::vector<std::pair<std::string, double>> breakdown_ms;
    double mean_ms_per_step = 0;
};

// Collective: every rank calls it; the result is complete on the root.
BenchResult run_bench(const BenchOptions& options, Communicator& comm);

// Peak FP32 GFLOP/s of the threads this process runs: AVX-512 FMA chains, best of three.
double measure_peak_gflops();

} // namespace train
