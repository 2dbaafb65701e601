// gpt2 gradcheck: finite-difference gradient checks of every layer and the whole model.
#include <cstdio>

#include "base/error.h"
#include "model/gradcheck.h"
#include "train/cli/common.h"

namespace cli {

namespace {

struct GradcheckOptions {
    int n_layer = 2, n_head = 2, n_embd = 16, vocab = 64, max_seq = 8;
    int batch = 2, seq = 8;
    uint64_t seed = 1337;
    double h = 1e-5, tol = 1e-6;

    void validate() const {
        if (batch < 1) throw base::SettingError("batch", "must be positive");
        if (seq < 1 || seq > max_seq) throw base::SettingError("seq", "must be in 1..max_seq");
        if (!(h > 0)) throw base::SettingError("step", "must be positive");
        if (!(tol >= 0)) throw base::SettingError("tol", "must be >= 0");
    }
};

// Prints one row per tensor and returns how many exceed tol.
int report(const std::string& title, const std::vector<model::GradError>& errors, double tol) {
    std::printf("%s\n  %-32s %8s %12s %12s\n", title.c_str(), "tensor", "entries", "max abs err",
                "rel err");
    int failed = 0;
    for (const auto& e : errors) {
        const bool bad = !(e.rel <= tol);
        failed += bad;
        std::printf("  %-32s %8zu %12.3e %12.3e%s\n", e.name.c_str(), e.count, e.max_abs, e.rel,
                    bad ? "  FAIL" : "");
    }
    return failed;
}

void report_precisions(const model::PrecisionReport& p) {
    double worst = 0;
    const char* worst_name = "";
    for (const auto& e : p.grads)
        if (e.rel >= worst) worst = e.rel, worst_name = e.name.c_str();
    std::printf("\nfloat vs double on the same weights and batch:\n"
                "  loss %.9f (float) vs %.9f (double): rel diff %.3e\n"
                "  gradients: largest rel diff %.3e (%s)\n",
                p.loss_float, p.loss_double, p.loss_rel, worst, worst_name);
}

void run(const GradcheckOptions& o) {
    o.validate();
    const auto config = model::make_config(o.n_layer, o.n_head, o.n_embd, o.vocab, o.max_seq);
    std::printf("gradcheck: central differences in double, h = %g, tolerance %g on\n"
                "  rel err = max|analytic - numeric| / max(|analytic|, |numeric|) per tensor\n\n",
                o.h, o.tol);
    int failed = report("layers alone:", model::check_layer_gradients(o.seed, o.h), o.tol);
    const std::string title = "\nwhole model " + config.describe() + ", batch " +
                              std::to_string(o.batch) + " x " + std::to_string(o.seq) +
                              " (every 5th target ignored):";
    failed +=
        report(title, model::check_model_gradients(config, o.batch, o.seq, o.seed, o.h), o.tol);
    report_precisions(model::compare_precisions(config, o.batch, o.seq, o.seed));
    if (failed)
        throw std::runtime_error(std::to_string(failed) + " tensors exceed tolerance " +
                                 std::to_string(o.tol));
    std::printf("\nall gradients within %g\n", o.tol);
}

} // namespace

void add_gradcheck(CLI::App& app) {
    auto o = std::make_shared<GradcheckOptions>();
    auto* cmd = app.add_subcommand(
        "gradcheck", "Check every layer's and the whole model's analytic gradients against "
                     "central finite differences (double precision); exits 1 above --tol");
    cmd->add_option("--n-layer", o->n_layer, "Layers L")->check(at_least(1))->capture_default_str();
    cmd->add_option("--n-head", o->n_head, "Attention heads NH")
        ->check(at_least(1))
        ->capture_default_str();
    cmd->add_option("--n-embd", o->n_embd, "Channels C")->check(at_least(1))->capture_default_str();
    cmd->add_option("--vocab", o->vocab, "Vocabulary size V (padded to a multiple of 128)")
        ->check(at_least(1))
        ->capture_default_str();
    cmd->add_option("--max-seq", o->max_seq, "Maximum sequence length (positions)")
        ->check(at_least(1))
        ->capture_default_str();
    cmd->add_option("--batch", o->batch, "Batch size B")->check(above(0))->capture_default_str();
    cmd->add_option("--seq", o->seq, "Sequence length T")
        ->check(at_least(1))
        ->capture_default_str();
    cmd->add_option("--seed", o->seed, "Seed for weights and tokens")
        ->check(seed_range())
        ->capture_default_str();
    cmd->add_option("--step", o->h, "Finite-difference step h")
        ->check(above(0))
        ->capture_default_str();
    cmd->add_option("--tol", o->tol, "Largest relative error accepted")
        ->check(above(0))
        ->capture_default_str();
    cmd->callback([o] { run(*o); });
}

} // namespace cli
