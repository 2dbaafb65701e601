// What a training run reports, and where it goes. The Trainer calls a sink's methods
// as numbers become known within an optimizer step (the step's own, then validation,
// then evaluators) and on_step_end() once all are in; text such as the run's
// description, samples and checkpoint notices goes to on_message().
//
// Sinks: ConsoleSink prints lines for people, JsonlSink appends one JSON object per
// step to a log file (scripts/plot_loss.py reads it), MemorySink keeps the records for
// tests and programs that drive a Trainer.
#pragma once

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "eval/evaluators.h"

namespace train {

// One optimizer step's own numbers.
struct StepMetrics {
    int64_t step = 0, steps = 0; // steps done (this one included), of all to be done
    double loss = 0, lr = 0, grad_norm = 0;
    double seconds = 0, tokens_per_second = 0, eta_seconds = 0;
    std::optional<double> comm_seconds; // with several ranks
    // The outlier guard's z-scores (while it is on and its window full), and whether the
    // step's update was skipped (by the guard, or because no target was scored).
    std::optional<double> loss_z, grad_norm_z;
    bool skipped = false;
};

class MetricsSink {
public:
    virtual ~MetricsSink() = default;
    virtual void on_message(const std::string& text) { (void)text; }
    // Something the user should know that does not stop the run (a damaged checkpoint
    // skipped on resume).
    virtual void on_warning(const std::string& text) { on_message("warning: " + text); }
    virtual void on_step(const StepMetrics& m) { (void)m; }
    virtual void on_validation(int64_t step, double loss) { (void)step, (void)loss; }
    virtual void on_evaluation(int64_t step, const eval::Evaluation& e) { (void)step, (void)e; }
    // The followed metric improved, and (with keep_best) `path` holds these weights.
    virtual void on_best(int64_t step, const std::string& metric, double value,
                         const std::string& path) {
        (void)step, (void)metric, (void)value, (void)path;
    }
    // The run stops after `step`: `metric` has not improved in `measurements` in a row.
    virtual void on_early_stop(int64_t step, const std::string& metric, int measurements) {
        (void)step, (void)metric, (void)measurements;
    }
    virtual void on_step_end(int64_t step) { (void)step; }
};

// "step n/N | loss .. | lr .. | norm .. | .. ms | .. tok/s | eta .." and friends.
class ConsoleSink final : public MetricsSink {
public:
    explicit ConsoleSink(std::FILE* out = stdout) : out_(out) {}
    void on_message(const std::string& text) override;
    void on_warning(const std::string& text) override; // on standard error
    void on_step(const StepMetrics& m) override;
    void on_validation(int64_t step, double loss) override;
    void on_evaluation(int64_t step, const eval::Evaluation& e) override;
    void on_best(int64_t step, const std::string& metric, double value,
                 const std::string& path) override;
    void on_early_stop(int64_t step, const std::string& metric, int measurements) override;

private:
    std::FILE* out_;
};

// A step's numbers under the names log.jsonl uses: step, loss, lr, grad_norm, ms,
// tok_per_s, comm_ms (several ranks), loss_z and grad_norm_z (outlier guard on),
// skipped (1: the update was skipped), val_loss, eval_<name>_<metric>, best_value
// (with the text best_metric: the followed metric improved), early_stop (the
// measurements without improvement that stopped the run).
struct Record {
    int64_t step = 0;
    std::vector<std::pair<std::string, double>> values;  // in the order they were measured
    std::vector<std::pair<std::string, int64_t>> counts; // written as JSON integers
    std::vector<std::pair<std::string, std::string>> texts;
    std::optional<double> get(std::string_view name) const;
    std::optional<std::string> text(std::string_view name) const;
};

// Collects each step's Record and hands it to write() at the step's end.
class RecordSink : public MetricsSink {
public:
    void on_step(const StepMetrics& m) override;
    void on_validation(int64_t step, double loss) override;
    void on_evaluation(int64_t step, const eval::Evaluation& e) override;
    void on_best(int64_t step, const std::string& metric, double value,
                 const std::string& path) override;
    void on_early_stop(int64_t step, const std::string& metric, int measurements) override;
    void on_step_end(int64_t step) override;

protected:
    virtual void write(const Record& record) = 0;

private:
    Record pending_; // the step's values so far; its step is set at the end
};

// Appends each step's record to a JSON Lines file, flushed per line.
class JsonlSink final : public RecordSink {
public:
    explicit JsonlSink(const std::string& path); // throws base::FileError
    const std::string& path() const { return path_; }

private:
    void write(const Record& record) override;
    std::string path_;
    std::ofstream out_;
};

class MemorySink final : public RecordSink {
public:
    void on_message(const std::string& text) override { messages.push_back(text); }
    std::vector<Record> records;
    std::vector<std::string> messages;

private:
    void write(const Record& record) override { records.push_back(record); }
};

} // namespace train
