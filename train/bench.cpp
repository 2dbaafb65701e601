#include "train/bench.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <random>

#include <omp.h>
#include <sys/resource.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "base/error.h"
#include "model/gpt2.h"
#include "model/io.h"
#include "model/matmul.h"
#include "optim/optim.h"

namespace train {

namespace {

using clock = std::chrono::steady_clock;

double seconds_since(clock::time_point t0) {
    return std::chrono::duration<double>(clock::now() - t0).count();
}

double median_of(std::vector<double> v) {
    if (v.empty()) return 0.0;
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

double mean_of(const std::vector<double>& v) {
    double mean = 0;
    for (double x : v) mean += x / double(v.size());
    return mean;
}

std::unique_ptr<model::GPT2<float>> make_model(const std::string& spec,
                                               model::Precision precision) {
    std::unique_ptr<model::GPT2<float>> gpt;
    if (model::is_preset(spec)) {
        gpt = std::make_unique<model::GPT2<float>>(model::preset(spec));
        gpt->init_weights(1337);
    } else {
        gpt = model::load_model(spec);
    }
    gpt->set_precision(precision);
    return gpt;
}

// FLOPs per token as in the literature: 6N + 12 L C T for training (forward 2N + 4 L C
// T), N = parameters without the position embedding, vocabulary unpadded.
double flops_per_token(const model::GPT2<float>& gpt, int seq, bool forward_only) {
    const model::ParamLayout& layout = gpt.layout();
    const model::Config& c = gpt.config();
    const double n = double(layout.count_unpadded() - layout.group_size(model::kWpe));
    const double attn = double(c.n_layer) * c.n_embd * seq;
    return forward_only ? 2 * n + 4 * attn : 6 * n + 12 * attn;
}

// Seconds of each timed step, and of its parts outside the model.
struct Timings {
    std::vector<double> step, comm, wait;
    double optimizer = 0; // summed over the timed steps
};

Timings time_steps(const BenchOptions& o, Communicator& comm, model::GPT2<float>& gpt,
                   DataParallel* dp) {
    std::mt19937_64 rng(1 + uint64_t(comm.rank()));
    std::vector<int> tokens(size_t(o.batch) * o.seq + 1);
    for (int& t : tokens) t = int(rng() % gpt.config().vocab);
    Timings t;
    for (int i = 0; i < o.warmup + o.steps; ++i) {
        const bool timed = i >= o.warmup;
        if (i == o.warmup) gpt.reset_profile(), t.optimizer = 0;
        const auto t0 = clock::now();
        if (!dp) {
            gpt.forward(tokens.data(), tokens.data() + 1, o.batch, o.seq);
        } else {
            gpt.zero_grad();
            gpt.forward(tokens.data(), tokens.data() + 1, o.batch, o.seq, model::Pass::training);
            dp->arm();
            gpt.backward();
            if (comm.size() > 1) {
                // A tiny collective: the time until the slowest rank gets here is waiting
                // (uneven speed), not communication.
                const auto tw = clock::now();
                comm.any(false);
                if (timed) t.wait.push_back(seconds_since(tw));
            }
            const auto t1 = clock::now();
            dp->step(1e-4f, 1.0, 1);
            const double in_step = dp->comm_seconds() - dp->comm_seconds_in_backward();
            t.optimizer += seconds_since(t1) - in_step;
            if (timed) t.comm.push_back(dp->comm_seconds());
        }
        if (timed) t.step.push_back(seconds_since(t0));
    }
    return t;
}

// The largest peak RSS of any rank, in GiB (collective).
double peak_rss_gib(Communicator& comm) {
    rusage usage{};
    getrusage(RUSAGE_SELF, &usage);
    std::vector<float> rss(size_t(comm.size()), 0.0f);
    rss[size_t(comm.rank())] = float(double(usage.ru_maxrss) / (1 << 20));
    comm.allreduce_sum(rss.data(), rss.size());
    return *std::max_element(rss.begin(), rss.end());
}

// Where a step's time goes on this rank, averaged over the timed steps.
void fill_breakdown(BenchResult& r, const BenchOptions& o, const model::GPT2<float>& gpt,
                    const Timings& t) {
    double accounted = 0;
    auto add = [&](const std::string& name, double ms) {
        r.breakdown_ms.emplace_back(name, ms);
        accounted += ms;
    };
    for (int s = 0; s < model::kNumStages; ++s)
        add(model::stage_name(model::Stage(s)), gpt.profile()[s] / o.steps * 1e3);
    if (!o.forward_only) {
        add("optimizer", t.optimizer / o.steps * 1e3);
        if (r.ranks > 1) {
            add("communication", mean_of(t.comm) * 1e3);
            add("waiting", mean_of(t.wait) * 1e3);
        }
    }
    r.mean_ms_per_step = mean_of(t.step) * 1e3;
    r.breakdown_ms.emplace_back("other", std::max(0.0, r.mean_ms_per_step - accounted));
}

} // namespace

// Batch, sequence and ZeRO stage are checked where they are used (GPT2::reserve,
// DataParallel).
void BenchOptions::validate() const {
    if (steps < 1)
        throw base::SettingError("steps", "must be at least 1, got " + std::to_string(steps));
    if (warmup < 0)
        throw base::SettingError("warmup", "must be at least 0, got " + std::to_string(warmup));
    if (!(peak_gflops >= 0)) throw base::SettingError("peak_gflops", "must be >= 0");
    if (!(peak_gflops_bf16 >= 0)) throw base::SettingError("peak_gflops_bf16", "must be >= 0");
    model::check_precision_supported(precision);
}

BenchResult run_bench(const BenchOptions& o, Communicator& comm) {
    std::unique_ptr<model::GPT2<float>> gpt;
    std::unique_ptr<DataParallel> dp;
    agreed(comm, [&] {
        o.validate();
        gpt = make_model(o.model, o.precision);
        gpt->set_recompute(o.recompute);
        gpt->reserve(o.batch, o.seq, !o.forward_only);
        if (!o.forward_only)
            dp = std::make_unique<DataParallel>(
                comm, *gpt, optim::AdamWConfig{0.9, 0.95, 1e-8, 0.1}, o.parallel);
    });
    if (dp) dp->broadcast_params(); // as training does: under ZeRO-1, one shared copy
    BenchResult r;
    r.config = gpt->config().describe();
    r.matmul = model::matmul_backend();
    r.ranks = comm.size();
    r.threads = omp_get_max_threads();
    r.precision = o.precision;
    // A given peak is the job's; a measured one is this rank's.
    auto peak = [&](double given, model::Precision p) {
        return comm.allreduce_sum(given > 0 ? given / r.ranks : measure_peak_gflops(p));
    };
    r.peak_gflops_fp32 = peak(o.peak_gflops, model::Precision::fp32);
    r.peak_gflops_bf16 = peak(o.peak_gflops_bf16, model::Precision::bf16);
    r.peak_gflops = o.precision == model::Precision::bf16 ? r.peak_gflops_bf16 : r.peak_gflops_fp32;
    r.flops_per_token = flops_per_token(*gpt, o.seq, o.forward_only);

    const Timings t = time_steps(o, comm, *gpt, dp.get());
    const double median = median_of(t.step);
    r.ms_per_step = median * 1e3;
    r.comm_ms_per_step = median_of(t.comm) * 1e3;
    r.wait_ms_per_step = median_of(t.wait) * 1e3;
    r.tok_per_s_per_rank = double(o.batch) * o.seq / median;
    r.tok_per_s = comm.allreduce_sum(r.tok_per_s_per_rank);
    r.mfu = r.peak_gflops > 0 ? r.flops_per_token * r.tok_per_s / (r.peak_gflops * 1e9) : 0;
    r.peak_rss_gib = peak_rss_gib(comm);
    if (dp && r.ranks > 1) r.reduction = dp->describe();
    if (dp) r.zero = dp->zero();
    fill_breakdown(r, o, *gpt, t);
    return r;
}

namespace {

// Peak FP32 GFLOP/s of one thread: 16 independent chains of fused multiply-adds on
// 64-byte vectors (AVX-512 where the compiler targets it), enough to fill the FMA
// pipelines. Adds the lanes to sink, so that the chains are not optimised away.
double fp32_chains(long iters, float& sink) {
    using v16 = float __attribute__((vector_size(64)));
    constexpr int kChains = 16, kLanes = 16;
    v16 acc[kChains];
    for (int c = 0; c < kChains; ++c) acc[c] = v16{} + float(c + omp_get_thread_num());
    const v16 a = v16{} + 0.999999f, b = v16{} + 1e-7f;
    const auto t0 = clock::now();
    for (long i = 0; i < iters; ++i)
        for (int c = 0; c < kChains; ++c) acc[c] = acc[c] * a + b;
    const double gflops = double(iters) * kChains * kLanes * 2 / seconds_since(t0) / 1e9;
    for (int c = 0; c < kChains; ++c)
        for (int l = 0; l < kLanes; ++l) sink += acc[c][l];
    return gflops;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
// Peak bf16 GFLOP/s of one thread: independent chains of vdpbf16ps, each adding 16
// lanes x 2 bfloat16 products to float accumulators (32 multiply-adds, 64 FLOP), enough
// chains to cover the instruction's latency on two pipelines. Only on a CPU with
// AVX512_BF16 (this function alone is compiled for it).
__attribute__((target("avx512bf16,avx512f,avx512bw"), noinline)) double bf16_chains(long iters,
                                                                                    float& sink) {
    constexpr int kChains = 16;
    __m512 acc[kChains];
    for (int c = 0; c < kChains; ++c) acc[c] = _mm512_set1_ps(float(c + omp_get_thread_num()));
    const __m512bh a = _mm512_cvtne2ps_pbh(_mm512_set1_ps(1e-3f), _mm512_set1_ps(1e-3f));
    const __m512bh b = _mm512_cvtne2ps_pbh(_mm512_set1_ps(1e-4f), _mm512_set1_ps(1e-4f));
    const auto t0 = clock::now();
    for (long i = 0; i < iters; ++i)
        for (int c = 0; c < kChains; ++c) acc[c] = _mm512_dpbf16_ps(acc[c], a, b);
    const double gflops = double(iters) * kChains * 64 / seconds_since(t0) / 1e9;
    alignas(64) float lanes[16];
    for (int c = 0; c < kChains; ++c) {
        _mm512_store_ps(lanes, acc[c]);
        for (float x : lanes) sink += x;
    }
    return gflops;
}
#else
double bf16_chains(long, float&) {
    return 0;
}
#endif

} // namespace

// Every thread runs its chains and times itself (so late starters do not count against
// the rate), the rates are summed, and the best of three trials is kept.
double measure_peak_gflops(model::Precision precision) {
    const bool bf16 = precision == model::Precision::bf16;
    if (bf16 && !model::cpu_has_bf16()) return 0;
    constexpr long kIters = 40'000'000;
    double best = 0;
    for (int trial = 0; trial < 3; ++trial) {
        double gflops = 0;
        float sink = 0;
#pragma omp parallel reduction(+ : gflops, sink)
        gflops += bf16 ? bf16_chains(kIters / 2, sink) : fp32_chains(kIters, sink);
        if (sink == 42.0f) std::printf(" "); // keeps the chains from being optimised away
        best = std::max(best, gflops);
    }
    return best;
}

} // namespace train
