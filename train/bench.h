// Timing of training steps (or forward passes) in fp32 or bf16: tokens/s, FLOPs per
// token and model FLOPs utilisation against the machine's measured peak for that
// precision (FP32 FMA, or bf16 dot products), and where a step's time goes. Under mpirun every rank
// runs the same steps on its own batch with the gradient reduction of training; per-rank figures
// are the root's, totals are summed over ranks.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "model/precision.h"
#include "model/recompute.h"
#include "train/communicator.h"
#include "train/parallel.h"

namespace train {

struct BenchOptions {
    std::string model = "gpt2"; // a preset (random weights) or a model file
    int batch = 4, seq = 64, steps = 5, warmup = 1;
    bool forward_only = false;
    model::Precision precision = model::Precision::fp32; // of the model's passes
    // The job's peak GFLOP/s in FP32 FMA and in bf16 dot products (0: measure it); MFU
    // is against the one of `precision`.
    double peak_gflops = 0, peak_gflops_bf16 = 0;
    model::Recompute recompute = model::Recompute::all;
    ParallelOptions parallel;

    void validate() const; // throws base::SettingError naming the field
};

struct BenchResult {
    std::string config; // the model's Config::describe()
    std::string matmul; // the library of the float matrix products (model::matmul_backend)
    int ranks = 1, threads = 1;
    model::Precision precision = model::Precision::fp32;
    double ms_per_step = 0; // median over the timed steps
    double tok_per_s = 0, tok_per_s_per_rank = 0;
    double flops_per_token = 0;
    // Peaks summed over ranks (bf16: 0 on a CPU without AVX512_BF16), and the one of the
    // precision used, which mfu is measured against.
    double peak_gflops_fp32 = 0, peak_gflops_bf16 = 0, peak_gflops = 0, mfu = 0;
    double comm_ms_per_step = 0, wait_ms_per_step = 0; // medians; several ranks only
    double peak_rss_gib = 0;                           // the largest of any rank
    std::string reduction; // how gradients were reduced (several ranks, training)
    int zero = 0;          // the ZeRO stage used (--zero auto resolved)
    // Mean milliseconds per step by part: the model's stages, then optimizer,
    // communication, waiting and other; and the mean step they add up to.
    std::vector<std::pair<std::string, double>> breakdown_ms;
    double mean_ms_per_step = 0;
};

// Collective: every rank calls it; the result is complete on the root.
BenchResult run_bench(const BenchOptions& options, Communicator& comm);

// Peak GFLOP/s of the threads this process runs, best of three: fp32 from chains of
// AVX-512 FMAs, bf16 from chains of AVX512_BF16 dot products (vdpbf16ps; 0 on a CPU
// without them).
double measure_peak_gflops(model::Precision precision = model::Precision::fp32);

} // namespace train
