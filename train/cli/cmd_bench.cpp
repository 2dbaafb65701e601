// gpt2 bench: tokens/s, FLOPs per token, the fp32 and bf16 peaks, MFU and where a step's
// time goes.
#include <cstdio>

#include <nlohmann/json.hpp>

#include "train/bench.h"
#include "train/cli/common.h"

namespace cli {

namespace {

void print_json(const train::BenchOptions& o, const train::BenchResult& r) {
    nlohmann::json breakdown;
    for (const auto& [name, ms] : r.breakdown_ms) breakdown[name] = ms;
    const nlohmann::json j = {
        {"model", o.model},
        {"config", r.config},
        {"matmul", r.matmul},
        {"batch", o.batch},
        {"seq", o.seq},
        {"ranks", r.ranks},
        {"threads", r.threads},
        {"forward_only", o.forward_only},
        {"precision", model::precision_name(r.precision)},
        {"zero", r.zero},
        {"overlap", o.parallel.overlap},
        {"recompute", model::recompute_name(o.recompute)},
        {"ms_per_step", r.ms_per_step},
        {"tok_per_s", r.tok_per_s},
        {"tok_per_s_per_rank", r.tok_per_s_per_rank},
        {"comm_ms_per_step", r.comm_ms_per_step},
        {"comm_share", r.ms_per_step > 0 ? r.comm_ms_per_step / r.ms_per_step : 0.0},
        {"wait_ms_per_step", r.wait_ms_per_step},
        {"flops_per_token", r.flops_per_token},
        {"peak_gflops_fp32", r.peak_gflops_fp32},
        {"peak_gflops_bf16", r.peak_gflops_bf16},
        {"peak_gflops", r.peak_gflops},
        {"mfu", r.mfu},
        {"peak_rss_gib", r.peak_rss_gib},
        {"breakdown_ms", breakdown}};
    std::printf("%s\n", j.dump().c_str());
}

void print_text(const train::BenchOptions& o, const train::BenchResult& r) {
    const char* precision = model::precision_name(r.precision);
    std::printf("%s %s, batch %d x seq %d per rank, %d rank%s x %d threads, %s, %s, matmul %s, "
                "recompute %s\n",
                o.model.c_str(), r.config.c_str(), o.batch, o.seq, r.ranks, r.ranks > 1 ? "s" : "",
                r.threads,
                o.forward_only ? "forward only" : "training steps (forward, backward, AdamW)",
                precision, r.matmul.c_str(), model::recompute_name(o.recompute));
    std::printf("median %.1f ms/step over %d steps | %.1f tok/s | %.3g GFLOP/token | "
                "%.1f GFLOP/s = %.1f%% MFU of the %s peak | peak RSS %.2f GiB%s\n",
                r.ms_per_step, o.steps, r.tok_per_s, r.flops_per_token / 1e9,
                r.flops_per_token * r.tok_per_s / 1e9, 100 * r.mfu, precision, r.peak_rss_gib,
                r.ranks > 1 ? " per rank (largest)" : "");
    char bf16[64] = "none (no AVX512_BF16)";
    if (r.peak_gflops_bf16 > 0)
        std::snprintf(bf16, sizeof bf16, "%.0f GFLOP/s%s", r.peak_gflops_bf16,
                      o.peak_gflops_bf16 > 0 ? " (given)" : "");
    std::printf("peak%s fp32 %.0f GFLOP/s%s, bf16 %s\n", r.ranks > 1 ? " of all ranks" : "",
                r.peak_gflops_fp32, o.peak_gflops > 0 ? " (given)" : "", bf16);
    if (r.ranks > 1)
        std::printf("%d ranks: %.1f tok/s per rank, %.1f tok/s in all | communication %.1f "
                    "ms/step (%.1f%%), %s | waiting for the slowest rank after backward %.1f "
                    "ms/step\n",
                    r.ranks, r.tok_per_s_per_rank, r.tok_per_s, r.comm_ms_per_step,
                    100 * r.comm_ms_per_step / r.ms_per_step,
                    r.reduction.empty() ? "forward only" : r.reduction.c_str(), r.wait_ms_per_step);
    std::printf("time per step (mean):");
    for (const auto& [name, ms] : r.breakdown_ms)
        std::printf(" %s %.1f ms (%.0f%%) |", name.c_str(), ms, 100 * ms / r.mean_ms_per_step);
    std::printf("\n");
}

} // namespace

void add_bench(CLI::App& app) {
    auto o = std::make_shared<train::BenchOptions>();
    auto json = std::make_shared<bool>(false);
    auto* cmd = app.add_subcommand(
        "bench", "Time training steps (forward, backward, clipping, AdamW) after a warm-up, in "
                 "fp32 or bf16: median ms/step, tokens/s, FLOPs per token (6N + 12 L C T, N = "
                 "parameters without wpe; forward 2N + 4 L C T), the peaks of the machine (fp32: "
                 "AVX-512 FMA chains; bf16: AVX512_BF16 dot-product chains; best of three) and "
                 "MFU against the peak of the precision used, peak RSS and where a step's time "
                 "goes. Under mpirun: per-rank and total tokens/s and the communication time "
                 "per step");
    add_model_option(*cmd, o->model, true);
    cmd->add_option("--batch", o->batch, "Batch size B")->check(above(0))->capture_default_str();
    cmd->add_option("--seq", o->seq, "Sequence length T")
        ->check(at_least(1))
        ->capture_default_str();
    cmd->add_option("--steps", o->steps, "Timed steps")->check(at_least(1))->capture_default_str();
    cmd->add_option("--warmup", o->warmup, "Untimed steps first")
        ->check(at_least(0))
        ->capture_default_str();
    cmd->add_flag("--forward-only", o->forward_only, "Time forward passes only");
    add_precision_option(*cmd, o->precision);
    cmd->add_flag("--json", *json, "Print one JSON object");
    cmd->add_option("--peak-gflops", o->peak_gflops,
                    "Peak fp32 GFLOP/s (of all ranks) to use instead of measuring it")
        ->check(above(0));
    cmd->add_option("--peak-gflops-bf16", o->peak_gflops_bf16,
                    "Peak bf16 GFLOP/s (of all ranks) to use instead of measuring it")
        ->check(above(0));
    add_zero_option(*cmd, o->parallel.zero);
    add_on_off(*cmd, "--overlap", o->parallel.overlap,
               "under mpirun, overlap the all-reduce with backward");
    add_recompute_option(*cmd, o->recompute);
    cmd->callback([o, json] {
        run_on_ranks([&](train::Communicator& comm) {
            const train::BenchResult r = train::run_bench(*o, comm);
            if (!comm.is_root()) return;
            if (*json)
                print_json(*o, r);
            else
                print_text(*o, r);
        });
    });
}

} // namespace cli
