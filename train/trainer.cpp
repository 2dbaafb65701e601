#include "train/trainer.h"

#include <algorithm>
#include <climits>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <tuple>
#include <type_traits>
#include <utility>

#include "base/error.h"
#include "base/memory.h"
#include "eval/sample.h"
#include "model/io.h"
#include "model/layout.h"

namespace train {

namespace fs = std::filesystem;
using clock = std::chrono::steady_clock;

namespace {

// The signal that asked the run to stop (0: none), read by the loop between steps. A
// signal handler can reach nothing else, hence this one piece of global state.
volatile std::sig_atomic_t g_stop_signal = 0;

extern "C" void request_stop(int sig) {
    // A second Ctrl-C, or a second SIGTERM, stops at once (a step can be long). Other
    // repeats only ask again: under mpirun a rank may get the terminal's SIGINT and then
    // mpirun's SIGTERM for the same Ctrl-C.
    if ((sig == SIGINT || sig == SIGTERM) && g_stop_signal == sig) {
        std::signal(sig, SIG_DFL);
        std::raise(sig);
        return;
    }
    g_stop_signal = sig;
}

} // namespace

// Catches the stop signals for the Trainer's lifetime and restores the previous handlers.
class Trainer::SignalGuard {
public:
    SignalGuard() {
        g_stop_signal = 0;
        for (size_t i = 0; i < std::size(kSignals); ++i)
            old_[i] = std::signal(kSignals[i], request_stop);
    }
    ~SignalGuard() {
        for (size_t i = 0; i < std::size(kSignals); ++i) std::signal(kSignals[i], old_[i]);
    }
    bool requested() const { return g_stop_signal != 0; }

private:
    static constexpr int kSignals[] = {SIGINT, SIGTERM, SIGUSR1, SIGUSR2};
    void (*old_[std::size(kSignals)])(int);
};

namespace {

double seconds_since(clock::time_point t0) {
    return std::chrono::duration<double>(clock::now() - t0).count();
}

// A checkpoint continues its own run: the settings that fix the data order must match.
void check_same_run(const TrainOptions& now, const TrainOptions& saved, const std::string& path) {
    auto differs = [&](const char* setting, const std::string& a, const std::string& b) {
        if (a != b)
            throw base::SettingError(setting, "is " + a + ", but " + path + " was trained with " +
                                                  b + "; resuming needs the run's batch, seq, " +
                                                  "shuffle and seed (ranks, grad_accum, zero and " +
                                                  "precision may change)");
    };
    auto on_off = [](bool b) { return std::string(b ? "on" : "off"); };
    differs("batch", std::to_string(now.batch), std::to_string(saved.batch));
    differs("seq", std::to_string(now.seq), std::to_string(saved.seq));
    differs("shuffle", on_off(now.shuffle), on_off(saved.shuffle));
    differs("seed", std::to_string(now.seed), std::to_string(saved.seed));
}

// A resumed run trains the checkpoint's model: a model or shape given again must be it
// (one left at its default is not compared).
void check_same_model(const TrainOptions& now, const TrainOptions& saved,
                      const model::Config& config, const std::string& path) {
    auto refuse = [&](const char* setting, const std::string& a, const std::string& b) {
        throw base::SettingError(setting, "is " + a + ", but " + path + " holds " + b +
                                              ": a resumed run goes on with its own model");
    };
    std::error_code ec;
    const bool same_file =
        !model::is_preset(now.model) && !model::is_preset(saved.model) &&
        fs::weakly_canonical(now.model, ec) == fs::weakly_canonical(saved.model, ec);
    if (now.model != TrainOptions{}.model && now.model != saved.model && !same_file)
        refuse("model", now.model, "a run of " + saved.model);
    for (auto [given, held, name] : {std::tuple{now.n_layer, config.n_layer, "n_layer"},
                                     {now.n_head, config.n_head, "n_head"},
                                     {now.n_embd, config.n_embd, "n_embd"},
                                     {now.max_seq, config.max_seq, "max_seq"}})
        if (given && given != held)
            refuse(name, std::to_string(given), std::string(name) + " " + std::to_string(held));
}

} // namespace

// Where training starts, as the root reads it.
struct Trainer::Start {
    model::Config config;
    std::vector<float> params;
    std::optional<Checkpoint> checkpoint;
    std::string from;
    std::vector<base::FileError> skipped; // newer checkpoints that did not verify, and why
};

Trainer::Start Trainer::load_start(const TrainOptions& o) {
    Start s;
    if (!o.resume.empty()) {
        std::string path = o.resume;
        Checkpoint c = fs::is_directory(o.resume) ? load_latest_valid(o.resume, path, s.skipped)
                                                  : load_checkpoint(o.resume);
        const TrainOptions saved = train_options_from_json(c.args_json);
        check_same_run(o, saved, path);
        check_same_model(o, saved, c.config, path);
        s.config = c.config;
        s.from = path + " (step " + std::to_string(c.step) + ")";
        s.checkpoint = std::move(c);
    } else if (model::is_preset(o.model)) {
        const model::Config p = model::preset(o.model);
        s.config = model::make_config(
            o.n_layer ? o.n_layer : p.n_layer, o.n_head ? o.n_head : p.n_head,
            o.n_embd ? o.n_embd : p.n_embd, p.vocab, o.max_seq ? o.max_seq : p.max_seq);
        // Before the initialisation, which takes a minute for the largest presets: the
        // weights (twice while they are copied out), gradients and AdamW's moments.
        base::check_memory(5 * model::ParamLayout(s.config).total() * sizeof(float), "model",
                           "weights, gradients and AdamW moments of " + o.model);
        model::GPT2<float> init(s.config);
        init.init_weights(o.seed);
        s.params.assign(init.params(), init.params() + init.num_params());
        s.from = "random init (" + o.model + ", seed " + std::to_string(o.seed) + ")";
    } else {
        model::ModelFile f = model::read_model(o.model);
        s.config = f.config;
        s.params = std::move(f.params);
        s.from = o.model;
    }
    return s;
}

Trainer::Trainer(const TrainOptions& options, Communicator& comm, std::vector<MetricsSink*> sinks)
    : o_(options), signals_(std::make_unique<SignalGuard>()), comm_(comm), root_(comm.is_root()) {
    // The root locks the run folder and reads the starting point; every rank learns its
    // config.
    Start start;
    agreed(comm_, [&] {
        o_.validate();
        if (!root_) return;
        run_dir_ = std::make_unique<RunDir>(o_.out, !o_.resume.empty(), o_.overwrite);
        start = load_start(o_);
        // A resumed run continues its run (and its log, from the checkpoint's step on).
        const std::string log =
            o_.log_file.empty() ? (fs::path(o_.out) / "log.jsonl").string() : o_.log_file;
        if (start.checkpoint) {
            run_id_ = start.checkpoint->run_id;
            truncate_log(log, start.checkpoint->step);
        } else {
            set_aside_log(log);
        }
        if (run_id_.empty()) run_id_ = new_run_id();
        for (const base::FileError& e : start.skipped) damaged_.push_back(e.path());
    });
    model::Config config = start.config;
    static_assert(std::is_trivially_copyable_v<model::Config>, "broadcast as bytes");
    comm_.broadcast(&config, sizeof config);

    agreed(comm_, [&] { build(config); });
    if (root_) {
        sinks_ = std::move(sinks);
        sinks_.push_back(log_.get());
    }
    report([&](MetricsSink& s) {
        for (const base::FileError& e : start.skipped)
            s.on_warning("skipped checkpoint " + std::string(e.what()));
    });
    if (comm_.any(start.checkpoint.has_value()))
        resume(start.checkpoint ? &*start.checkpoint : nullptr);
    else
        start_fresh(root_ ? &start.params : nullptr);
    describe(start.from);
    run_start_ = clock::now();
}

Trainer::~Trainer() = default;

// Everything a run needs beside the weights, sized once: the model and its activations,
// the data-parallel optimizer, the loaders, the plan and schedule, and on the root the
// tokenizer, evaluators and run folder.
void Trainer::build(const model::Config& config) {
    o_.validate_for(config); // shapes, samples and evaluators, before allocating
    gpt_ = std::make_unique<model::GPT2<float>>(config);
    gpt_->set_precision(o_.precision); // before reserve, which prepares the products
    gpt_->set_recompute(o_.recompute);
    base::check_memory(gpt_->reserve_bytes(o_.batch, o_.seq, true) +
                           2 * gpt_->num_params() * sizeof(float),
                       "batch",
                       "activations, gradients and AdamW moments for batch " +
                           std::to_string(o_.batch) + " x seq " + std::to_string(o_.seq));
    gpt_->reserve(o_.batch, o_.seq, true);
    dp_ = std::make_unique<DataParallel>(
        comm_, *gpt_, optim::AdamWConfig{o_.beta1, o_.beta2, o_.eps, o_.weight_decay},
        ParallelOptions{o_.zero, o_.overlap});
    data::LoaderOptions lo{o_.batch,   o_.seq,  comm_.rank(), comm_.size(),
                           o_.shuffle, o_.seed, config.vocab};
    lo.score_prompts = o_.score_prompts;
    train_loader_.emplace(o_.train_data, lo);
    if (!o_.val_data.empty()) {
        lo.shuffle = false, lo.partial_last = true;
        val_loader_.emplace(o_.val_data, lo);
    }
    plan_ = make_plan();
    schedule_ = optim::Schedule{
        o_.lr_schedule, o_.lr, o_.warmup, plan_.steps, o_.lr_final_fraction, o_.decay_fraction};
    schedule_.validate();
    inputs_.assign(size_t(o_.batch) * o_.seq, 0);
    targets_.assign(inputs_.size(), 0);
    if (o_.keep_best || o_.early_stop > 0) tracked_ = tracked_metric(o_);
    loss_outliers_ = OutlierDetector(o_.skip_loss_z);
    grad_norm_outliers_ = OutlierDetector(o_.skip_grad_z);
    if (!root_) return;
    // Samples and evaluators run on the root only; evaluators on a copy of the weights,
    // so that the training model's buffers stay sized for training.
    if (o_.sample_every > 0 || !o_.evals.empty()) tokenizer_.emplace(o_.tokenizer);
    if (!o_.evals.empty()) {
        evaluators_ =
            eval::make_evaluators(eval::parse_evaluator_specs(o_.evals, o_.datasets), *tokenizer_,
                                  {o_.eval_max_tokens, o_.eval_max_examples, config.max_seq});
        eval_model_ = std::make_unique<model::GPT2<float>>(config);
        eval_model_->set_precision(o_.precision);
    }
    fs::create_directories(o_.out);
    log_ = std::make_unique<JsonlSink>(
        o_.log_file.empty() ? (fs::path(o_.out) / "log.jsonl").string() : o_.log_file);
}

// Steps, and micro-batches per step, from the options and the data.
Trainer::Plan Trainer::make_plan() const {
    Plan p;
    p.grad_accum = o_.grad_accum;
    if (o_.total_batch_tokens > 0) {
        const int64_t per_micro = int64_t(o_.batch) * o_.seq * comm_.size();
        if (o_.total_batch_tokens % per_micro != 0)
            throw base::SettingError(
                "total_batch_tokens",
                std::to_string(o_.total_batch_tokens) +
                    " is not a multiple of batch x seq x ranks = " + std::to_string(per_micro));
        p.grad_accum = int(o_.total_batch_tokens / per_micro);
    }
    const double batches = double(train_loader_->batches_per_epoch());
    if (o_.steps > 0) {
        p.steps = o_.steps;
        return p;
    }
    const double steps = std::ceil(o_.epochs * batches / p.grad_accum);
    if (steps > 1e9) { // as many as a checkpoint may record
        char text[64];
        std::snprintf(text, sizeof text, "makes %.3g steps of this data, more than 1e9", steps);
        throw base::SettingError("epochs", text);
    }
    p.steps = int(steps);
    return p;
}

namespace {

// The root's loop state to every rank (each rank's outlier guard and metric decide alike).
void broadcast(Communicator& comm, LoopState& s) {
    struct {
        int64_t skipped, best_step, since_best, loss_in_a_row, norm_in_a_row;
        double best_value;
        size_t metric, loss_window, norm_window;
    } fixed{s.skipped_steps,
            s.best_step,
            s.since_best,
            s.loss_outliers.outliers_in_a_row,
            s.grad_norm_outliers.outliers_in_a_row,
            s.best_value,
            s.best_metric.size(),
            s.loss_outliers.window.size(),
            s.grad_norm_outliers.window.size()};
    comm.broadcast(&fixed, sizeof fixed);
    s.skipped_steps = fixed.skipped, s.best_step = fixed.best_step;
    s.since_best = fixed.since_best, s.best_value = fixed.best_value;
    s.loss_outliers.outliers_in_a_row = fixed.loss_in_a_row;
    s.grad_norm_outliers.outliers_in_a_row = fixed.norm_in_a_row;
    s.best_metric.resize(fixed.metric);
    s.loss_outliers.window.resize(fixed.loss_window);
    s.grad_norm_outliers.window.resize(fixed.norm_window);
    comm.broadcast(s.best_metric.data(), s.best_metric.size());
    comm.broadcast(s.loss_outliers.window.data(), s.loss_outliers.window.size() * sizeof(double));
    comm.broadcast(s.grad_norm_outliers.window.data(),
                   s.grad_norm_outliers.window.size() * sizeof(double));
}

} // namespace

// The root's checkpoint (null elsewhere) to every rank: weights, moments, step, the
// loader's position and the loop's state.
void Trainer::resume(const Checkpoint* c) {
    struct {
        int64_t step = 0, adam_t = 0;
        data::LoaderState loader;
    } at;
    if (c) at = {c->step, c->adam_t, c->loader};
    comm_.broadcast(&at, sizeof at);
    agreed(comm_, [&] { train_loader_->restore(at.loader); });
    start_fresh(c ? &c->params : nullptr);
    dp_->scatter_moments(c ? c->m.data() : nullptr, c ? c->v.data() : nullptr, at.adam_t);
    step_ = first_step_ = at.step;
    if (c) loop_ = c->loop;
    broadcast(comm_, loop_);
    loss_outliers_.restore(loop_.loss_outliers);
    grad_norm_outliers_.restore(loop_.grad_norm_outliers);
    // A best value of another metric (or of none now followed) is not this run's.
    if (loop_.best_step > 0 && (!tracked_ || loop_.best_metric != tracked_->name)) {
        report([&](MetricsSink& s) {
            if (tracked_)
                s.on_warning("the checkpoint followed " + loop_.best_metric + ", not " +
                             tracked_->name + ": the best so far starts afresh");
        });
        loop_.best_metric.clear();
        loop_.best_step = loop_.since_best = 0;
        loop_.best_value = 0;
    }
}

// The root's weights (null elsewhere) to every rank.
void Trainer::start_fresh(const std::vector<float>* params) {
    if (params) gpt_->set_params(params->data(), params->size());
    dp_->broadcast_params();
}

void Trainer::describe(const std::string& from) {
    char line[512];
    const model::Config& c = gpt_->config();
    const int ranks = comm_.size();
    const int64_t tokens_per_step = int64_t(o_.batch) * o_.seq * plan_.grad_accum * ranks;
    report([&](MetricsSink& s) {
        s.on_message("model " + c.describe() + ": " +
                     std::to_string(gpt_->layout().count_unpadded()) + " parameters, from " + from +
                     ", precision " + model::precision_name(o_.precision));
        std::snprintf(line, sizeof line,
                      "data: %zu train tokens in %zu shards (%zu batches per epoch per rank)",
                      train_loader_->num_tokens(), train_loader_->files().size(),
                      train_loader_->batches_per_epoch());
        std::string data = line;
        if (val_loader_) data += ", " + std::to_string(val_loader_->num_tokens()) + " val tokens";
        if (train_loader_->row_tokens() > 0)
            data += "; one example per row of " + std::to_string(train_loader_->row_tokens()) +
                    " tokens";
        if (train_loader_->masked() || (val_loader_ && val_loader_->masked()))
            data += o_.score_prompts ? "; loss masks: prompts and completions scored"
                                     : "; loss masks: completions scored";
        s.on_message(data);
        std::snprintf(line, sizeof line,
                      "steps %d of %lld tokens (batch %d x seq %d x grad-accum %d x ranks %d); %s",
                      plan_.steps, static_cast<long long>(tokens_per_step), o_.batch, o_.seq,
                      plan_.grad_accum, ranks, schedule_.describe().c_str());
        s.on_message(line);
        if (ranks > 1) s.on_message("ranks: " + comm_.describe() + "; " + dp_->describe());
        if (tracked_)
            s.on_message("following " + tracked_->name + " (" +
                         (tracked_->higher_is_better ? "higher" : "lower") + " is better)" +
                         (o_.keep_best ? "; " + best_path() + " at each improvement" : "") +
                         (o_.early_stop > 0
                              ? "; early stop after " + std::to_string(o_.early_stop) +
                                    " measurements without one"
                              : ""));
        if (o_.skip_loss_z > 0 || o_.skip_grad_z > 0) {
            std::snprintf(line, sizeof line,
                          "outlier guard: a step's update is skipped when its loss z > %g or its "
                          "gradient norm z > %g (0 = not judged; over the last %zu kept)",
                          o_.skip_loss_z, o_.skip_grad_z, OutlierDetector::kWindow);
            s.on_message(line);
        }
    });
}

template <class F> void Trainer::report(F&& f) {
    for (MetricsSink* s : sinks_) f(*s);
}

void Trainer::end_step() {
    report([&](MetricsSink& s) { s.on_step_end(step_); });
}

void Trainer::run() {
    if (tracked_ && o_.early_stop > 0 && loop_.since_best >= o_.early_stop) {
        report([&](MetricsSink& s) {
            s.on_message("this run stopped early at step " + std::to_string(step_) +
                         "; nothing to do");
        });
        summarize();
        return;
    }
    if (val_loader_ && step_ == 0) {
        validate();
        end_step();
    }
    const SignalGuard& stop = *signals_;
    // A stop asked for while the run was set up: nothing new to save.
    if (comm_.any(stop.requested())) {
        report([&](MetricsSink& s) {
            s.on_message("stopped by signal before step " + std::to_string(step_ + 1));
        });
        return;
    }
    while (step_ < plan_.steps) {
        step();
        const bool last = step_ == plan_.steps;
        const bool validating = val_loader_ && (due(o_.val_every) || last);
        if (validating) validate();
        // The same decision on every rank: evaluators and samples run on the root only,
        // but their failures are agreed on by all.
        const bool evaluating = !o_.evals.empty() && (due(o_.eval_every) || last);
        const bool sampling = o_.sample_every > 0 && (due(o_.sample_every) || last);
        if (evaluating || sampling)
            agreed(comm_, [&] {
                if (evaluating) evaluate();
                if (sampling) sample();
            });
        const bool early =
            tracked_ && follow_metric(tracked_->evaluator.empty() ? validating : evaluating);
        end_step();
        const bool stopping = comm_.any(stop.requested());
        if (due(o_.checkpoint_every) || last || stopping || early) save();
        if (stopping) {
            report([&](MetricsSink& s) {
                s.on_message("stopped by signal after step " + std::to_string(step_) +
                             "; the checkpoint in " + o_.out + " resumes the run");
            });
            return;
        }
        if (early) break;
    }
    summarize();
}

// After a step's measurements, on every rank: if the followed metric was measured (on
// the root), whether it improved (best.h5 with keep_best) and whether to stop early.
bool Trainer::follow_metric(bool measured) {
    if (!measured) return false;
    double value = measured_;
    comm_.broadcast(&value, sizeof value); // evaluators run on the root alone
    const bool improved = std::isfinite(value) &&
                          (loop_.best_step == 0 || tracked_->improves(value, loop_.best_value));
    if (improved) {
        loop_.best_metric = tracked_->name;
        loop_.best_value = value;
        loop_.best_step = step_;
        loop_.since_best = 0;
        const std::string path = o_.keep_best ? write_checkpoint(best_path(), false) : "";
        report([&](MetricsSink& s) { s.on_best(step_, tracked_->name, value, path); });
        return false;
    }
    ++loop_.since_best;
    if (o_.early_stop == 0 || loop_.since_best < o_.early_stop) return false;
    report([&](MetricsSink& s) { s.on_early_stop(step_, tracked_->name, o_.early_stop); });
    return true;
}

// The run's last word on the followed metric.
void Trainer::summarize() {
    if (!tracked_ || loop_.best_step == 0) return;
    char value[32];
    std::snprintf(value, sizeof value, "%.6f", loop_.best_value);
    report([&](MetricsSink& s) {
        s.on_message("best " + tracked_->name + " " + value + " at step " +
                     std::to_string(loop_.best_step) +
                     (o_.keep_best ? " (" + best_path() + ")" : ""));
    });
}

StepMetrics Trainer::step() {
    const auto t0 = clock::now();
    gpt_->zero_grad();
    // Each pass's gradient is that of its summed loss over scored targets / (B*T); the
    // step's is the mean over the scored targets of all micro-batches and ranks, so the
    // summed gradients and losses are rescaled by K*W*B*T / scored: exactly 1 when every
    // target is scored (masks scoring only completions make it larger).
    const int bt = o_.batch * o_.seq;
    double loss = 0, kept = 0; // this rank's: sum of mean loss * kept / (B*T), and kept
    // Every micro-batch's forward, and all backward passes but the last, touch no other
    // rank; failures are agreed on before the last backward starts reducing.
    agreed(comm_, [&] {
        for (int k = 0; k < plan_.grad_accum; ++k) {
            train_loader_->next(inputs_.data(), targets_.data());
            const double l = gpt_->forward(inputs_.data(), targets_.data(), o_.batch, o_.seq,
                                           model::Pass::training, bt);
            if (!std::isfinite(l))
                throw std::runtime_error("step " + std::to_string(step_ + 1) + ": the loss is " +
                                         std::to_string(l) + "; stopping (checkpoints untouched)");
            const int n = gpt_->targets_kept();
            loss += l * (double(n) / bt);
            kept += n;
            if (k + 1 < plan_.grad_accum) gpt_->backward();
        }
    });
    const double scored = comm_.allreduce_sum(kept);
    const double lr = schedule_.at(int(step_));
    StepMetrics m;
    double norm = 0;
    if (scored > 0) {
        const double rescale = double(bt) * plan_.grad_accum * comm_.size() / scored;
        dp_->arm();
        gpt_->backward();
        norm = dp_->reduce(plan_.grad_accum, rescale);
        if (!std::isfinite(norm))
            throw JobError("step " + std::to_string(step_ + 1) + ": the gradient norm is " +
                               std::to_string(norm) + "; stopping (checkpoints untouched)",
                           root_);
        loss = comm_.allreduce_mean(loss / plan_.grad_accum) * rescale;
        m.skipped = skips(loss, norm, m);
        if (!m.skipped) dp_->update(float(lr), o_.grad_clip);
    } else { // nothing to learn from: no update (weights, moments and Adam's t stay)
        gpt_->zero_grad();
        loss = 0;
        m.skipped = true;
        ++loop_.skipped_steps;
        report([&](MetricsSink& s) {
            s.on_message("step " + std::to_string(step_ + 1) +
                         ": no target of the batch is scored; the weights are not updated");
        });
    }
    ++step_;

    m.step = step_;
    m.steps = plan_.steps;
    m.loss = loss;
    m.lr = lr;
    m.grad_norm = norm;
    m.seconds = seconds_since(t0);
    m.tokens_per_second = double(inputs_.size()) * plan_.grad_accum * comm_.size() / m.seconds;
    m.eta_seconds =
        seconds_since(run_start_) / double(step_ - first_step_) * double(plan_.steps - step_);
    if (comm_.size() > 1) m.comm_seconds = dp_->comm_seconds();
    report([&](MetricsSink& s) { s.on_step(m); });
    return m;
}

// The outlier guard's verdict on a step, the same on every rank (the loss and gradient
// norm are); its z-scores go into m.
bool Trainer::skips(double loss, double grad_norm, StepMetrics& m) {
    if (o_.skip_loss_z == 0 && o_.skip_grad_z == 0) return false;
    bool outlier = false;
    if (o_.skip_loss_z > 0) {
        const auto v = loss_outliers_.add(loss);
        m.loss_z = v.z, outlier |= v.outlier;
    }
    if (o_.skip_grad_z > 0) {
        const auto v = grad_norm_outliers_.add(grad_norm);
        m.grad_norm_z = v.z, outlier |= v.outlier;
    }
    if (!comm_.any(outlier)) return false;
    ++loop_.skipped_steps;
    return true;
}

double Trainer::validate() {
    // The mean over every scored target of the batches, as in step().
    const int bt = o_.batch * o_.seq;
    double sum = 0, kept = 0;
    int n = 0;
    agreed(comm_, [&] {
        val_loader_->restore({0, 0});
        n = std::min<int>(o_.val_batches > 0 ? o_.val_batches : INT_MAX,
                          int(val_loader_->batches_per_epoch()));
        for (int i = 0; i < n; ++i) {
            val_loader_->next(inputs_.data(), targets_.data());
            const double l = gpt_->forward(inputs_.data(), targets_.data(), o_.batch, o_.seq);
            sum += l * (double(gpt_->targets_kept()) / bt);
            kept += gpt_->targets_kept();
        }
    });
    const double scored = comm_.allreduce_sum(kept);
    if (scored == 0)
        throw JobError("validation: no target of the " + std::to_string(n) +
                           " validation batches is scored",
                       root_);
    const double loss = comm_.allreduce_mean(sum / n) * (double(bt) * n * comm_.size() / scored);
    measured_ = loss;
    report([&](MetricsSink& s) { s.on_validation(step_, loss); });
    return loss;
}

void Trainer::evaluate() {
    if (!eval_model_) return;
    eval_model_->set_params(std::as_const(*gpt_).params(), gpt_->num_params());
    for (const auto& evaluator : evaluators_) {
        const eval::Evaluation e = evaluator->run(*eval_model_);
        report([&](MetricsSink& s) { s.on_evaluation(step_, e); });
        note_evaluation(e);
    }
}

// The followed metric, if e measures it.
void Trainer::note_evaluation(const eval::Evaluation& e) {
    if (!tracked_ || e.name != tracked_->evaluator) return;
    for (const eval::Metric& m : e.metrics)
        if (m.name == tracked_->metric) {
            measured_ = m.value;
            return;
        }
    throw base::SettingError("best_metric", e.name + " did not report " + tracked_->metric +
                                                " at step " + std::to_string(step_) +
                                                " (ppl_word needs the whole text scored)");
}

void Trainer::sample() {
    if (!root_) return;
    eval::SampleOptions so;
    so.max_tokens = o_.sample_tokens;
    so.top_k = o_.sample_top_k;
    so.temperature = o_.sample_temperature;
    so.seed = o_.seed + uint64_t(step_);
    const auto ids = eval::generate(*gpt_, {data::Tokenizer::kEndOfText}, so);
    const std::string text = data::sanitize_utf8(tokenizer_->decode(ids));
    report([&](MetricsSink& s) {
        s.on_message("sample at step " + std::to_string(step_) + ":\n" + text + "\n---");
    });
}

std::string Trainer::save() {
    return write_checkpoint(checkpoint_path(o_.out, step_), true);
}

std::string Trainer::best_path() const {
    return (fs::path(o_.out) / "best.h5").string();
}

// This step's checkpoint at path (collective; the root writes it and returns path).
// Pruning counts only ckpt_*.h5 files, never best.h5.
std::string Trainer::write_checkpoint(const std::string& path, bool prune) {
    const auto moments = dp_->full_moments(m_buf_, v_buf_); // {m, v}
    loop_.loss_outliers = loss_outliers_.state();
    loop_.grad_norm_outliers = grad_norm_outliers_.state();
    agreed(comm_, [&] {
        if (!root_) return;
        // A checkpoint that resume would refuse is never written (nor an older one pruned).
        const float* params = std::as_const(*gpt_).params();
        if (!std::all_of(params, params + gpt_->num_params(),
                         [](float w) { return std::isfinite(w); }))
            throw std::runtime_error("step " + std::to_string(step_) +
                                     ": a weight is not a finite number after the update (is "
                                     "the learning rate too high?); stopping (checkpoints "
                                     "untouched)");
        save_checkpoint(path, gpt_->config(), std::as_const(*gpt_).params(),
                        {moments[0], moments[1], dp_->adam().t(), dp_->adam().config()}, step_,
                        train_loader_->state(), to_json(o_), run_id_, loop_);
        if (!prune) return;
        prune_checkpoints(o_.out, o_.keep, run_id_, step_, damaged_);
        report([&](MetricsSink& s) { s.on_message("checkpoint " + path); });
    });
    return root_ ? path : "";
}

} // namespace train
