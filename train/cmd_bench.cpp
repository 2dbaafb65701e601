// gpt2 bench: times full training steps (or forward passes) and reports tokens/s and
// model FLOPs utilisation against the machine's measured FP32 peak.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <omp.h>
#include <sys/resource.h>

#include "model/gpt2.h"
#include "model/io.h"
#include "optim/optim.h"
#include "train/commands.h"
#include "train/communicator.h"
#include "train/parallel.h"

namespace train {

namespace {

using clock = std::chrono::steady_clock;

double seconds_since(clock::time_point t0) {
    return std::chrono::duration<double>(clock::now() - t0).count();
}

// Peak FP32 FLOP/s: every thread runs 16 independent chains of fused multiply-adds on
// 64-byte vectors (AVX-512 where the compiler targets it), enough to fill the FMA
// pipelines. Each thread times itself (so late starters do not count against the
// rate), the rates are summed, and the best of three trials is kept.
double measure_peak_gflops() {
    using v16 = float __attribute__((vector_size(64)));
    constexpr int kChains = 16, kLanes = 16;
    constexpr long kIters = 40'000'000;
    double best = 0;
    for (int trial = 0; trial < 3; ++trial) {
        double gflops = 0;
        float sink = 0;
#pragma omp parallel reduction(+ : gflops, sink)
        {
            v16 acc[kChains];
            for (int c = 0; c < kChains; ++c) acc[c] = v16{} + float(c + omp_get_thread_num());
            const v16 a = v16{} + 0.999999f, b = v16{} + 1e-7f;
            const auto t0 = clock::now();
            for (long i = 0; i < kIters; ++i)
                for (int c = 0; c < kChains; ++c) acc[c] = acc[c] * a + b;
            gflops += double(kIters) * kChains * kLanes * 2 / seconds_since(t0) / 1e9;
            for (int c = 0; c < kChains; ++c)
                for (int l = 0; l < kLanes; ++l) sink += acc[c][l];
        }
        if (sink == 42.0f) std::printf(" "); // keeps the chains from being optimised away
        best = std::max(best, gflops);
    }
    return best;
}

struct BenchOptions {
    std::string model = "gpt2";
    int batch = 4, seq = 64, steps = 5, warmup = 1;
    bool forward_only = false, json = false;
    double peak_gflops = 0;
    ParallelOptions parallel;
};

// Under mpirun every rank runs the same steps on its own batch, with the gradient
// reduction of gpt2 train; rank 0 reports. Per-rank figures are rank 0's, totals are
// summed over ranks (the peak too: each rank measures the cores it runs on).
void run_bench(const BenchOptions& o, Communicator& comm) {
    std::unique_ptr<model::GPT2<float>> gpt_ptr;
    std::unique_ptr<DataParallel> dp;
    agreed(comm, [&] {
        if (model::is_preset(o.model)) {
            gpt_ptr = std::make_unique<model::GPT2<float>>(model::preset(o.model));
            gpt_ptr->init_weights(1337);
        } else {
            gpt_ptr = load_model(o.model);
        }
        if (o.seq > gpt_ptr->config().max_seq)
            throw std::invalid_argument("--seq exceeds the model's " + std::to_string(gpt_ptr->config().max_seq) +
                                        " positions");
        gpt_ptr->reserve(o.batch, o.seq, !o.forward_only);
        if (!o.forward_only)
            dp = std::make_unique<DataParallel>(comm, *gpt_ptr, optim::AdamWConfig{0.9, 0.95, 1e-8, 0.1}, o.parallel);
    });
    model::GPT2<float>& gpt = *gpt_ptr;
    const model::Config& config = gpt.config();

    std::mt19937_64 rng(1 + uint64_t(comm.rank()));
    std::vector<int> tokens(size_t(o.batch) * o.seq + 1);
    for (int& t : tokens) t = int(rng() % config.vocab);
    const int ranks = comm.size();
    const double rank_peak = o.peak_gflops > 0 ? o.peak_gflops / ranks : measure_peak_gflops();
    const double peak = comm.allreduce_sum(rank_peak);

    // FLOPs per token as in the literature: 6N + 12 L C T for training (forward 2N + 4 L C T),
    // N = parameters without the position embedding, vocabulary unpadded.
    const model::ParamLayout& layout = gpt.layout();
    const double n = double(layout.count_unpadded() - layout.group_size(model::kWpe));
    const double attn = double(config.n_layer) * config.n_embd * o.seq;
    const double flops_per_token = o.forward_only ? 2 * n + 4 * attn : 6 * n + 12 * attn;

    std::vector<double> step_s, comm_s, wait_s;
    double optimizer_s = 0;
    for (int i = 0; i < o.warmup + o.steps; ++i) {
        if (i == o.warmup) gpt.reset_profile(), optimizer_s = 0;
        const auto t0 = clock::now();
        if (o.forward_only) {
            gpt.forward(tokens.data(), tokens.data() + 1, o.batch, o.seq);
        } else {
            gpt.zero_grad();
            gpt.forward(tokens.data(), tokens.data() + 1, o.batch, o.seq);
            dp->arm();
            gpt.backward();
            if (ranks > 1) {
                // A tiny collective: the time until the slowest rank gets here is waiting
                // (uneven speed), not communication.
                const auto tw = clock::now();
                comm.any(false);
                if (i >= o.warmup) wait_s.push_back(seconds_since(tw));
            }
            const auto t1 = clock::now();
            dp->step(1e-4f, 1.0, 1);
            const double in_step = dp->comm_seconds() - dp->comm_seconds_in_backward();
            optimizer_s += seconds_since(t1) - in_step;
            if (i >= o.warmup) comm_s.push_back(dp->comm_seconds());
        }
        if (i >= o.warmup) step_s.push_back(seconds_since(t0));
    }
    auto median_of = [](std::vector<double> v) {
        if (v.empty()) return 0.0;
        std::sort(v.begin(), v.end());
        return v[v.size() / 2];
    };
    const double median = median_of(step_s);
    const double comm_median = median_of(comm_s), wait_median = median_of(wait_s);
    const double tokens_per_step = double(o.batch) * o.seq;
    const double rank_tok_s = tokens_per_step / median;
    const double tok_s = comm.allreduce_sum(rank_tok_s);
    const double mfu = flops_per_token * tok_s / (peak * 1e9);
    rusage usage{};
    getrusage(RUSAGE_SELF, &usage);
    const double rss_gb = double(usage.ru_maxrss) / (1 << 20);
    // The largest peak RSS of any rank.
    std::vector<float> rss(size_t(ranks), 0.0f);
    rss[size_t(comm.rank())] = float(rss_gb);
    comm.allreduce_sum(rss.data(), rss.size());
    const double peak_rss_gb = *std::max_element(rss.begin(), rss.end());
    if (!comm.is_root()) return;

    // Where a step's time goes on rank 0, averaged over the timed steps.
    nlohmann::json breakdown;
    double accounted = 0;
    for (int s = 0; s < model::kNumStages; ++s) {
        const double ms = gpt.profile()[s] / o.steps * 1e3;
        breakdown[model::stage_name(model::Stage(s))] = ms;
        accounted += ms;
    }
    double mean = 0, comm_mean = 0;
    for (double s : step_s) mean += s / step_s.size();
    for (double s : comm_s) comm_mean += s / comm_s.size();
    if (!o.forward_only) {
        breakdown["optimizer"] = optimizer_s / o.steps * 1e3, accounted += optimizer_s / o.steps * 1e3;
        if (ranks > 1) {
            double wait_mean = 0;
            for (double w : wait_s) wait_mean += w / wait_s.size();
            breakdown["communication"] = comm_mean * 1e3, accounted += comm_mean * 1e3;
            breakdown["waiting"] = wait_mean * 1e3, accounted += wait_mean * 1e3;
        }
    }
    breakdown["other"] = std::max(0.0, mean * 1e3 - accounted);

    const int threads = omp_get_max_threads();
    if (o.json) {
        nlohmann::json j = {{"model", o.model},           {"config", config.describe()},
                            {"batch", o.batch},           {"seq", o.seq},
                            {"ranks", ranks},             {"threads", threads},
                            {"forward_only", o.forward_only},
                            {"zero", o.parallel.zero},    {"overlap", o.parallel.overlap},
                            {"ms_per_step", median * 1e3}, {"tok_per_s", tok_s},
                            {"tok_per_s_per_rank", rank_tok_s},
                            {"comm_ms_per_step", comm_median * 1e3},
                            {"comm_share", median > 0 ? comm_median / median : 0.0},
                            {"wait_ms_per_step", wait_median * 1e3},
                            {"flops_per_token", flops_per_token},
                            {"peak_gflops", peak},        {"mfu", mfu},
                            {"peak_rss_gb", peak_rss_gb}, {"breakdown_ms", breakdown}};
        std::printf("%s\n", j.dump().c_str());
        return;
    }
    std::printf("%s %s, batch %d x seq %d per rank, %d rank%s x %d threads, %s\n", o.model.c_str(),
                config.describe().c_str(), o.batch, o.seq, ranks, ranks > 1 ? "s" : "", threads,
                o.forward_only ? "forward only" : "training steps (forward, backward, AdamW)");
    std::printf("median %.1f ms/step over %d steps | %.1f tok/s | %.3g GFLOP/token | "
                "%.1f GFLOP/s = %.1f%% MFU of %.1f GFLOP/s peak | peak RSS %.2f GB%s\n",
                median * 1e3, o.steps, tok_s, flops_per_token / 1e9, flops_per_token * tok_s / 1e9,
                100 * mfu, peak, peak_rss_gb, ranks > 1 ? " per rank (largest)" : "");
    if (ranks > 1)
        std::printf("%d ranks: %.1f tok/s per rank, %.1f tok/s in all | communication %.1f ms/step "
                    "(%.1f%%), %s | waiting for the slowest rank after backward %.1f ms/step\n",
                    ranks, rank_tok_s, tok_s, comm_median * 1e3, 100 * comm_median / median, dp ? dp->describe() : "forward only",
                    wait_median * 1e3);
    std::printf("time per step (mean):");
    for (const auto& [name, ms] : breakdown.items())
        std::printf(" %s %.1f ms (%.0f%%) |", name.c_str(), ms.get<double>(),
                    100 * ms.get<double>() / (mean * 1e3));
    std::printf("\n");
}

} // namespace

void add_bench(CLI::App& app) {
    auto o = std::make_shared<BenchOptions>();
    auto* cmd = app.add_subcommand(
        "bench", "Time training steps (forward, backward, clipping, AdamW) after a warm-up: median "
                 "ms/step, tokens/s, FLOPs per token (6N + 12 L C T, N = parameters without wpe; "
                 "forward 2N + 4 L C T) and MFU against the measured FP32 FMA peak. Under mpirun: "
                 "per-rank and total tokens/s and the communication time per step");
    cmd->add_option("--model", o->model, "Preset or model file")->capture_default_str();
    cmd->add_option("--batch", o->batch, "Batch size B")->capture_default_str()->check(CLI::PositiveNumber);
    cmd->add_option("--seq", o->seq, "Sequence length T")->capture_default_str()->check(CLI::PositiveNumber);
    cmd->add_option("--steps", o->steps, "Timed steps")->capture_default_str()->check(CLI::PositiveNumber);
    cmd->add_option("--warmup", o->warmup, "Untimed steps first")->capture_default_str()->check(CLI::NonNegativeNumber);
    cmd->add_flag("--forward-only", o->forward_only, "Time forward passes only");
    cmd->add_flag("--json", o->json, "Print one JSON object");
    cmd->add_option("--peak-gflops", o->peak_gflops, "Peak FP32 GFLOP/s to use instead of measuring it");
    cmd->add_option("--zero", o->parallel.zero, "Under mpirun: ZeRO stage, 0 or 1 (as gpt2 train)")
        ->check(CLI::IsMember({0, 1}))
        ->capture_default_str();
    cmd->add_option("--overlap", o->parallel.overlap, "on|off: under mpirun, overlap the all-reduce with backward")
        ->transform(CLI::CheckedTransformer(std::map<std::string, bool>{{"on", true}, {"off", false}}))
        ->default_str("on");
    cmd->callback([o] { run_with_communicator([&](Communicator& comm) { run_bench(*o, comm); }); });
}

} // namespace train
