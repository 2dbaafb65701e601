// The training loop: pretraining from a preset or fine-tuning from a model file, with
// validation, evaluators, samples, crash-safe checkpoints and exact resume, on one
// process or on every rank of an MPI job (train/parallel.h).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "data/loader.h"
#include "data/tokenizer.h"
#include "eval/evaluators.h"
#include "model/gpt2.h"
#include "optim/optim.h"
#include "train/checkpoint.h"
#include "train/communicator.h"
#include "train/metrics.h"
#include "train/options.h"
#include "train/outlier.h"
#include "train/parallel.h"
#include "train/run_dir.h"

namespace train {

class Trainer {
public:
    // Prepares a run on every rank of comm: the root reads the starting point (a preset,
    // a model file, or with options.resume a checkpoint) and sends it to all; the data,
    // optimizer, schedule, evaluators and run folder are set up. Everything that can be
    // checked before training is checked here, and a failure on any rank throws on all
    // (JobError). On the root the Trainer reports to `sinks` and to OUT/log.jsonl (or
    // options.log_file); other ranks report nothing. The root holds OUT's lock
    // (train/run_dir.h) for the Trainer's lifetime. From construction on, SIGINT,
    // SIGTERM, SIGUSR1 and SIGUSR2 only ask the run to stop (see run()).
    Trainer(const TrainOptions& options, Communicator& comm, std::vector<MetricsSink*> sinks = {});
    ~Trainer();
    Trainer(const Trainer&) = delete;
    Trainer& operator=(const Trainer&) = delete;

    // Trains to the last step, with validation, evaluators, samples and checkpoints as
    // the options say. SIGINT, SIGTERM, SIGUSR1 or SIGUSR2 (on any rank: the ranks agree
    // at every step's end) finish the step, write a checkpoint and return; a second
    // SIGINT ends the process at once. Throws on a non-finite loss or gradient norm
    // before any checkpoint is written over. With keep_best or early_stop it follows the
    // best metric (from step 1 on): best_path() at each improvement, and after
    // early_stop measurements without one an early end (with a checkpoint); the last
    // message then names the best step and value.
    void run();

    // The parts of run(), each reporting what it measured.
    StepMetrics step(); // one optimizer step: the micro-batches, the reduction, AdamW
    double validate();  // the mean loss over the first val_batches validation batches
    void evaluate();    // every evaluator on the current weights (root)
    void sample();      // a text sample from the current weights (root)
    std::string save(); // a checkpoint of this step; its path on the root

    // OUT/best.h5: the checkpoint of the best step so far, with keep_best.
    std::string best_path() const;

    int64_t steps_done() const { return step_; }
    int total_steps() const { return plan_.steps; }
    const model::GPT2<float>& model() const { return *gpt_; }

private:
    struct Start;
    class SignalGuard;
    struct Plan {
        int grad_accum = 1, steps = 0;
    };

    static Start load_start(const TrainOptions& options);
    void build(const model::Config& config);
    void resume(const Checkpoint* checkpoint);
    void start_fresh(const std::vector<float>* params);
    void describe(const std::string& from);
    Plan make_plan() const;
    bool due(int every) const { return every > 0 && step_ % every == 0; }
    void end_step();
    template <class F> void report(F&& f);
    bool skips(double loss, double grad_norm, StepMetrics& m);
    bool follow_metric(bool measured);
    void note_evaluation(const eval::Evaluation& e);
    std::string write_checkpoint(const std::string& path, bool prune);
    void summarize();

    TrainOptions o_;
    std::unique_ptr<SignalGuard> signals_;
    Communicator& comm_;
    const bool root_;                 // rank 0 alone reports and writes files
    std::vector<MetricsSink*> sinks_; // empty except on the root
    std::unique_ptr<RunDir> run_dir_; // the root's lock on OUT
    std::string run_id_;
    std::vector<std::string> damaged_; // checkpoints of OUT that resume found damaged
    std::unique_ptr<JsonlSink> log_;
    std::unique_ptr<model::GPT2<float>> gpt_;
    std::unique_ptr<DataParallel> dp_;
    std::optional<data::Loader> train_loader_, val_loader_;
    Plan plan_;
    optim::Schedule schedule_;
    std::optional<data::Tokenizer> tokenizer_;
    std::vector<std::unique_ptr<eval::Evaluator>> evaluators_;
    std::unique_ptr<model::GPT2<float>> eval_model_; // a copy of the weights, sized for evaluation
    std::vector<int> inputs_, targets_;
    std::vector<float> m_buf_, v_buf_; // the root's gathered moments under ZeRO-1
    int64_t step_ = 0, first_step_ = 0;
    // The followed metric (with keep_best or early_stop), its value at this step, and
    // the outlier guard: saved in checkpoints as loop_.
    std::optional<TrackedMetric> tracked_;
    double measured_ = 0;
    OutlierDetector loss_outliers_, grad_norm_outliers_;
    LoopState loop_;
    std::chrono::steady_clock::time_point run_start_;
};

} // namespace train
