#include "train/trainer.h"

#include <chrono>
#include <cmath>
#include <cstdint>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <sstream>
#include <optional>
#include <stdexcept>
#include <type_traits>
#include <vector>

#include <nlohmann/json.hpp>

#include "data/loader.h"
#include "data/tokenizer.h"
#include "eval/lambada.h"
#include "eval/perplexity.h"
#include "eval/sample.h"
#include "model/gpt2.h"
#include "model/io.h"
#include "optim/optim.h"
#include "train/checkpoint.h"
#include "train/parallel.h"

namespace train {

namespace fs = std::filesystem;
using json = nlohmann::json;

NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(
    TrainOptions, model, n_layer, n_head, n_embd, max_seq, train_data, val_data, batch, seq,
    grad_accum, total_batch_tokens, steps, epochs, lr, lr_schedule, warmup, lr_final_fraction,
    decay_fraction, weight_decay, beta1, beta2, eps, grad_clip, seed, shuffle, val_every,
    val_batches, sample_every, sample_tokens, sample_top_k, sample_temperature, tokenizer,
    eval_every, evals, eval_max_tokens, eval_max_examples, out, log_file, resume, checkpoint_every,
    keep, zero, overlap)

std::string to_json(const TrainOptions& o) { return json(o).dump(); }

namespace {

// Set by SIGINT/SIGTERM/SIGUSR1 (the one mpirun forwards to every rank), read by the loop between steps. A signal handler can reach
// nothing else, hence this one piece of global state.
volatile std::sig_atomic_t g_stop_requested = 0;

extern "C" void request_stop(int sig) {
    g_stop_requested = 1;
    std::signal(sig, SIG_DFL); // a second Ctrl-C stops at once
}

// Restores the previous handlers when training returns or throws.
class StopOnSignal {
public:
    StopOnSignal() {
        g_stop_requested = 0;
        old_int_ = std::signal(SIGINT, request_stop);
        old_term_ = std::signal(SIGTERM, request_stop);
        old_usr1_ = std::signal(SIGUSR1, request_stop);
    }
    ~StopOnSignal() {
        std::signal(SIGINT, old_int_);
        std::signal(SIGTERM, old_term_);
        std::signal(SIGUSR1, old_usr1_);
    }
    bool requested() const { return g_stop_requested != 0; }

private:
    void (*old_int_)(int);
    void (*old_term_)(int);
    void (*old_usr1_)(int);
};

std::string duration_text(double seconds) {
    const long s = std::lround(seconds);
    char buf[32];
    if (s >= 3600) std::snprintf(buf, sizeof buf, "%ldh%02ldm", s / 3600, s / 60 % 60);
    else if (s >= 60) std::snprintf(buf, sizeof buf, "%ldm%02lds", s / 60, s % 60);
    else std::snprintf(buf, sizeof buf, "%lds", s);
    return buf;
}

// The model and where training starts: a preset, a model file, or a checkpoint.
struct Start {
    model::Config config;
    std::vector<float> params;
    std::optional<Checkpoint> checkpoint;
    std::string from;
};

Start load_start(const TrainOptions& o) {
    Start s;
    if (!o.resume.empty()) {
        const std::string path = fs::is_directory(o.resume) ? latest_checkpoint(o.resume) : o.resume;
        if (path.empty()) throw std::runtime_error(o.resume + ": no checkpoint (ckpt_*.h5) to resume from");
        Checkpoint c = load_checkpoint(path);
        const auto saved = json::parse(c.args_json).get<TrainOptions>();
        if (saved.batch != o.batch || saved.seq != o.seq || saved.shuffle != o.shuffle ||
            saved.seed != o.seed)
            throw std::runtime_error(path + ": resuming needs the run's --batch, --seq, --shuffle and "
                                            "--seed; ranks, --grad-accum and --zero may change (the checkpoint has " +
                                     std::to_string(saved.batch) + ", " + std::to_string(saved.seq) +
                                     ", " + (saved.shuffle ? "on" : "off") + ", " +
                                     std::to_string(saved.seed) + ")");
        s.config = c.config;
        s.params = c.params;
        s.from = path + " (step " + std::to_string(c.step) + ")";
        s.checkpoint = std::move(c);
    } else if (model::is_preset(o.model)) {
        s.config = model::preset(o.model);
        s.config = model::make_config(o.n_layer ? o.n_layer : s.config.n_layer,
                                      o.n_head ? o.n_head : s.config.n_head,
                                      o.n_embd ? o.n_embd : s.config.n_embd, s.config.vocab,
                                      o.max_seq ? o.max_seq : s.config.max_seq);
        model::GPT2<float> init(s.config);
        init.init_weights(o.seed);
        s.params.assign(init.params(), init.params() + init.num_params());
        s.from = "random init (" + o.model + ", seed " + std::to_string(o.seed) + ")";
    } else {
        if (o.n_layer || o.n_head || o.n_embd || o.max_seq)
            throw std::invalid_argument("--n-layer/--n-head/--n-embd/--max-seq reshape a preset, not a model file");
        model::ModelFile f = model::read_model(o.model);
        s.config = f.config;
        s.params = std::move(f.params);
        s.from = o.model;
    }
    return s;
}

// --eval: what to evaluate during training, read once at the start.
struct Evaluator {
    std::string label; // log key part: "wikitext2", "lambada", a file's stem
    std::string file;
    std::string text;                            // for perplexity
    std::vector<eval::LambadaExample> lambada;   // for LAMBADA
};

std::vector<Evaluator> load_evaluators(const TrainOptions& o, data::Tokenizer& tok) {
    std::vector<Evaluator> out;
    std::stringstream list(o.evals);
    for (std::string item; std::getline(list, item, ',');) {
        if (item.empty()) continue;
        const size_t colon = item.find(':');
        const std::string kind = item.substr(0, colon);
        std::string arg = colon == std::string::npos ? "" : item.substr(colon + 1);
        Evaluator e;
        if (kind == "ppl") {
            if (arg == "wikitext2") e.label = arg, arg = "datasets/wikitext2/wiki.test.raw";
            else if (arg == "ptb") e.label = arg, arg = "datasets/ptb/ptb.test.txt";
            else if (arg.empty()) throw std::invalid_argument("--eval: ppl needs a name or file (ppl:wikitext2)");
            else e.label = fs::path(arg).stem().string();
            std::ifstream in(arg, std::ios::binary);
            if (!in) throw std::runtime_error(arg + ": cannot open (for --eval " + item + ")");
            e.text.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
        } else if (kind == "lambada") {
            e.label = "lambada";
            if (arg.empty()) arg = "datasets/lambada/lambada_test.jsonl";
            e.lambada = eval::read_lambada(arg, tok, eval::LambadaTarget::word, o.eval_max_examples);
        } else {
            throw std::invalid_argument("--eval: unknown evaluator '" + item + "' (ppl:NAME|FILE, lambada[:FILE])");
        }
        e.file = arg;
        out.push_back(std::move(e));
    }
    return out;
}

// Steps and micro-steps per step from the options and the data.
struct Plan {
    int grad_accum = 1;
    int steps = 0;
};

Plan make_plan(const TrainOptions& o, const data::Loader& loader, int ranks) {
    Plan p;
    p.grad_accum = o.grad_accum;
    if (o.total_batch_tokens > 0) {
        const int64_t per_micro = int64_t(o.batch) * o.seq * ranks;
        if (o.total_batch_tokens % per_micro != 0)
            throw std::invalid_argument("--total-batch-tokens " + std::to_string(o.total_batch_tokens) +
                                        " is not a multiple of batch x seq x ranks = " +
                                        std::to_string(per_micro));
        p.grad_accum = int(o.total_batch_tokens / per_micro);
    }
    if (p.grad_accum < 1) throw std::invalid_argument("--grad-accum must be at least 1");
    if (o.steps > 0) p.steps = o.steps;
    else if (o.epochs > 0)
        p.steps = int(std::ceil(o.epochs * double(loader.batches_per_epoch()) / p.grad_accum));
    else throw std::invalid_argument("give --steps or --epochs");
    return p;
}

} // namespace

void train_model(const TrainOptions& o, Communicator& comm) {
    const bool root = comm.is_root();
    auto say = [&](const char* fmt, auto... args) {
        if (root) std::printf(fmt, args...), std::fflush(stdout);
    };

    // The root reads the starting point and sends it to every rank.
    Start start;
    agreed(comm, [&] {
        if (o.train_data.empty()) throw std::invalid_argument("--train-data is required");
        if (root) start = load_start(o);
    });
    model::Config config = start.config;
    static_assert(std::is_trivially_copyable_v<model::Config>, "broadcast as bytes");
    comm.broadcast(&config, sizeof config);
    struct {
        int64_t step = 0, adam_t = 0;
        data::LoaderState loader;
        bool resumed = false;
    } resume;
    if (start.checkpoint)
        resume = {start.checkpoint->step, start.checkpoint->adam_t, start.checkpoint->loader, true};
    comm.broadcast(&resume, sizeof resume);

    std::unique_ptr<model::GPT2<float>> gpt_ptr;
    std::unique_ptr<DataParallel> dp;
    std::optional<data::Loader> train_loader, val_loader;
    std::optional<Plan> plan;
    std::optional<optim::Schedule> schedule;
    std::optional<data::Tokenizer> tokenizer;
    std::vector<Evaluator> evaluators;
    std::unique_ptr<model::GPT2<float>> eval_model;
    std::ofstream log;
    const std::string log_path = o.log_file.empty() ? (fs::path(o.out) / "log.jsonl").string() : o.log_file;
    agreed(comm, [&] {
        if (o.seq > config.max_seq)
            throw std::invalid_argument("--seq " + std::to_string(o.seq) + " exceeds the model's " +
                                        std::to_string(config.max_seq) + " positions");
        gpt_ptr = std::make_unique<model::GPT2<float>>(config);
        gpt_ptr->reserve(o.batch, o.seq, true);
        dp = std::make_unique<DataParallel>(comm, *gpt_ptr,
                                            optim::AdamWConfig{o.beta1, o.beta2, o.eps, o.weight_decay},
                                            ParallelOptions{o.zero, o.overlap});
        data::LoaderOptions lo{o.batch, o.seq, comm.rank(), comm.size(), o.shuffle, o.seed, config.vocab};
        train_loader.emplace(o.train_data, lo);
        if (!o.val_data.empty()) {
            lo.shuffle = false;
            val_loader.emplace(o.val_data, lo);
        }
        plan = make_plan(o, *train_loader, comm.size());
        schedule = optim::Schedule{optim::Schedule::parse(o.lr_schedule), o.lr, o.warmup, plan->steps,
                                   o.lr_final_fraction, o.decay_fraction};
        schedule->validate();
        if (resume.resumed) train_loader->restore(resume.loader);
        // Samples and evaluators run on the root only; evaluators on a copy of the
        // weights, so the training model's buffers stay sized for training.
        if (root && (o.sample_every > 0 || !o.evals.empty())) {
            tokenizer.emplace(o.tokenizer);
            evaluators = load_evaluators(o, *tokenizer);
            if (!evaluators.empty()) eval_model = std::make_unique<model::GPT2<float>>(config);
        }
        if (root) {
            fs::create_directories(o.out);
            log.open(log_path, std::ios::app);
            if (!log) throw std::runtime_error(log_path + ": cannot open for appending");
        }
    });
    model::GPT2<float>& gpt = *gpt_ptr;
    const size_t n_params = gpt.num_params();
    if (root) gpt.set_params(start.params.data(), start.params.size());
    start.params = {};
    comm.broadcast(gpt.params(), n_params * sizeof(float));
    int step = int(resume.step);
    if (resume.resumed) {
        const Checkpoint* c = root ? &*start.checkpoint : nullptr;
        dp->scatter_moments(c ? c->m.data() : nullptr, c ? c->v.data() : nullptr, resume.adam_t);
    }
    start.checkpoint.reset();

    const int ranks = comm.size();
    const int64_t tokens_per_step = int64_t(o.batch) * o.seq * plan->grad_accum * ranks;
    say("model %s: %s parameters, from %s\n", config.describe().c_str(),
        std::to_string(gpt.layout().count_unpadded()).c_str(), start.from.c_str());
    say("data: %zu train tokens in %zu shards (%zu batches per epoch per rank)%s\n",
        train_loader->num_tokens(), train_loader->files().size(), train_loader->batches_per_epoch(),
        val_loader ? (", " + std::to_string(val_loader->num_tokens()) + " val tokens").c_str() : "");
    say("steps %d of %lld tokens (batch %d x seq %d x grad-accum %d x ranks %d); %s\n", plan->steps,
        static_cast<long long>(tokens_per_step), o.batch, o.seq, plan->grad_accum, ranks,
        schedule->describe().c_str());
    if (ranks > 1)
        say("ranks: %s; %s\n", comm.describe().c_str(), dp->describe());

    std::vector<int> inputs(size_t(o.batch) * o.seq), targets(inputs.size());
    auto validate = [&]() {
        double sum = 0;
        int n = 0;
        agreed(comm, [&] {
            val_loader->restore({0, 0});
            n = std::min<int>(o.val_batches > 0 ? o.val_batches : INT32_MAX,
                              int(val_loader->batches_per_epoch()));
            for (int i = 0; i < n; ++i) {
                val_loader->next(inputs.data(), targets.data());
                sum += gpt.forward(inputs.data(), targets.data(), o.batch, o.seq);
            }
        });
        return comm.allreduce_mean(sum / n);
    };
    auto sample = [&](int at_step) {
        eval::SampleOptions so;
        so.max_tokens = o.sample_tokens;
        so.top_k = o.sample_top_k;
        so.temperature = o.sample_temperature;
        so.seed = o.seed + uint64_t(at_step);
        const auto ids = eval::generate(gpt, {data::Tokenizer::kEndOfText}, so);
        say("sample at step %d:\n%s\n---\n", at_step,
            data::sanitize_utf8(tokenizer->decode(ids)).c_str());
    };
    auto run_evaluators = [&](json& entry) {
        eval_model->set_params(gpt.params(), gpt.num_params());
        for (const Evaluator& e : evaluators) {
            if (e.lambada.empty()) {
                eval::TextOptions to;
                to.max_tokens = o.eval_max_tokens;
                const auto r = eval::text_perplexity(*eval_model, *tokenizer, e.text,
                                                     fs::path(e.file).filename().string(), to);
                entry["eval_" + e.label + "_ppl_token"] = r.ppl_token();
                if (!r.cut) entry["eval_" + e.label + "_ppl_word"] = r.ppl_word();
                say("step %d | %s: ppl per token %.4f over %zu tokens\n", step, e.label.c_str(),
                    r.ppl_token(), r.tokens);
            } else {
                const auto r = eval::evaluate_lambada(*eval_model, e.lambada);
                entry["eval_lambada_acc"] = r.accuracy();
                entry["eval_lambada_ppl"] = r.ppl();
                say("step %d | lambada: accuracy %.2f%% ppl %.4f over %zu examples\n", step,
                    100 * r.accuracy(), r.ppl(), r.examples);
            }
        }
    };
    auto write_log = [&](const json& entry) {
        if (root) log << entry.dump() << '\n' << std::flush;
    };
    std::vector<float> m_buf, v_buf; // the root's gathered moments under ZeRO-1
    auto save = [&]() {
        const auto [m, v] = dp->full_moments(m_buf, v_buf);
        agreed(comm, [&] {
            if (!root) return;
            const std::string path = checkpoint_path(o.out, step);
            save_checkpoint(path, config, gpt.params(), {m, v, dp->adam().t(), dp->adam().config()}, step,
                            train_loader->state(), to_json(o));
            prune_checkpoints(o.out, o.keep);
            say("checkpoint %s\n", path.c_str());
        });
    };

    if (val_loader && step == 0) {
        const double v = validate();
        say("step 0 | val loss %.6f\n", v);
        write_log({{"step", 0}, {"val_loss", v}});
    }

    StopOnSignal stop;
    using clock = std::chrono::steady_clock;
    const auto run_start = clock::now();
    const int first_step = step;
    while (step < plan->steps) {
        const auto t0 = clock::now();
        gpt.zero_grad();
        double loss = 0;
        // Every micro-batch's forward, and all backward passes but the last, touch no
        // other rank; failures are agreed on before the last backward starts reducing.
        agreed(comm, [&] {
            for (int k = 0; k < plan->grad_accum; ++k) {
                train_loader->next(inputs.data(), targets.data());
                const double l = gpt.forward(inputs.data(), targets.data(), o.batch, o.seq);
                if (!std::isfinite(l))
                    throw std::runtime_error("step " + std::to_string(step + 1) + ": the loss is " +
                                             std::to_string(l) + "; stopping (checkpoints untouched)");
                loss += l;
                if (k + 1 < plan->grad_accum) gpt.backward();
            }
        });
        dp->arm();
        gpt.backward();
        const double lr = schedule->at(step);
        const double norm = dp->step(float(lr), o.grad_clip, plan->grad_accum);
        if (!std::isfinite(norm))
            throw JobError("step " + std::to_string(step + 1) + ": the gradient norm is " +
                               std::to_string(norm) + "; stopping (checkpoints untouched)",
                           root);
        loss = comm.allreduce_mean(loss / plan->grad_accum);
        ++step;

        const double seconds = std::chrono::duration<double>(clock::now() - t0).count();
        const double elapsed = std::chrono::duration<double>(clock::now() - run_start).count();
        const double eta = elapsed / (step - first_step) * (plan->steps - step);
        say("step %d/%d | loss %.6f | lr %.4e | norm %.4f | %.1f ms | %.0f tok/s | eta %s\n", step,
            plan->steps, loss, lr, norm, seconds * 1e3, tokens_per_step / seconds,
            duration_text(eta).c_str());
        json entry = {{"step", step},        {"loss", loss},          {"lr", lr},
                      {"grad_norm", norm},   {"ms", seconds * 1e3},   {"tok_per_s", tokens_per_step / seconds}};
        if (ranks > 1) entry["comm_ms"] = dp->comm_seconds() * 1e3;
        const bool last = step == plan->steps;
        if (val_loader && ((o.val_every > 0 && step % o.val_every == 0) || last)) {
            entry["val_loss"] = validate();
            say("step %d | val loss %.6f\n", step, entry["val_loss"].get<double>());
        }
        const bool evaluate = !evaluators.empty() && ((o.eval_every > 0 && step % o.eval_every == 0) || last);
        const bool sampling = o.sample_every > 0 && (step % o.sample_every == 0 || last);
        if (evaluate || sampling)
            agreed(comm, [&] {
                if (evaluate) run_evaluators(entry);
                if (sampling && root) sample(step);
            });
        write_log(entry);
        const bool stopping = comm.any(stop.requested());
        if ((o.checkpoint_every > 0 && step % o.checkpoint_every == 0) || last || stopping) save();
        if (stopping) {
            say("stopped by signal after step %d; resume with --resume %s\n", step, o.out.c_str());
            return;
        }
    }
}

} // namespace train
