#include "train/metrics.h"

#include <cmath>

#include <nlohmann/json.hpp>

#include "base/error.h"

namespace train {

namespace {

std::string duration_text(double seconds) {
    const long s = std::lround(seconds);
    char buf[32];
    if (s >= 3600)
        std::snprintf(buf, sizeof buf, "%ldh%02ldm", s / 3600, s / 60 % 60);
    else if (s >= 60)
        std::snprintf(buf, sizeof buf, "%ldm%02lds", s / 60, s % 60);
    else
        std::snprintf(buf, sizeof buf, "%lds", s);
    return buf;
}

std::string z_text(std::optional<double> z) {
    if (!z) return "-";
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.2f", *z);
    return buf;
}

} // namespace

void ConsoleSink::on_message(const std::string& text) {
    std::fprintf(out_, "%s\n", text.c_str());
    std::fflush(out_);
}

void ConsoleSink::on_warning(const std::string& text) {
    std::fflush(out_);
    std::fprintf(stderr, "warning: %s\n", text.c_str());
    std::fflush(stderr);
}

void ConsoleSink::on_step(const StepMetrics& m) {
    std::fprintf(
        out_, "step %lld/%lld | loss %.6f | lr %.4e | norm %.4f | %.1f ms | %.0f tok/s | eta %s\n",
        static_cast<long long>(m.step), static_cast<long long>(m.steps), m.loss, m.lr, m.grad_norm,
        m.seconds * 1e3, m.tokens_per_second, duration_text(m.eta_seconds).c_str());
    if (m.skipped && (m.loss_z || m.grad_norm_z)) // else the trainer said why
        std::fprintf(out_, "step %lld | outlier (loss z %s, norm z %s): update skipped\n",
                     static_cast<long long>(m.step), z_text(m.loss_z).c_str(),
                     z_text(m.grad_norm_z).c_str());
    std::fflush(out_);
}

void ConsoleSink::on_validation(int64_t step, double loss) {
    std::fprintf(out_, "step %lld | val loss %.6f\n", static_cast<long long>(step), loss);
    std::fflush(out_);
}

void ConsoleSink::on_evaluation(int64_t step, const eval::Evaluation& e) {
    std::fprintf(out_, "step %lld | %s: %s\n", static_cast<long long>(step), e.name.c_str(),
                 e.summary.c_str());
    std::fflush(out_);
}

void ConsoleSink::on_best(int64_t step, const std::string& metric, double value,
                          const std::string& path) {
    std::fprintf(out_, "step %lld | best %s %.6f%s%s\n", static_cast<long long>(step),
                 metric.c_str(), value, path.empty() ? "" : ": wrote ", path.c_str());
    std::fflush(out_);
}

void ConsoleSink::on_early_stop(int64_t step, const std::string& metric, int measurements) {
    std::fprintf(out_, "step %lld | early stop: %s has not improved in %d measurements\n",
                 static_cast<long long>(step), metric.c_str(), measurements);
    std::fflush(out_);
}

std::optional<double> Record::get(std::string_view name) const {
    for (const auto& [key, value] : values)
        if (key == name) return value;
    for (const auto& [key, value] : counts)
        if (key == name) return double(value);
    return std::nullopt;
}

std::optional<std::string> Record::text(std::string_view name) const {
    for (const auto& [key, value] : texts)
        if (key == name) return value;
    return std::nullopt;
}

void RecordSink::on_step(const StepMetrics& m) {
    auto& v = pending_.values;
    v.insert(v.end(), {{"loss", m.loss},
                       {"lr", m.lr},
                       {"grad_norm", m.grad_norm},
                       {"ms", m.seconds * 1e3},
                       {"tok_per_s", m.tokens_per_second}});
    if (m.comm_seconds) v.emplace_back("comm_ms", *m.comm_seconds * 1e3);
    if (m.loss_z) v.emplace_back("loss_z", *m.loss_z);
    if (m.grad_norm_z) v.emplace_back("grad_norm_z", *m.grad_norm_z);
    if (m.skipped) pending_.counts.emplace_back("skipped", 1);
}

void RecordSink::on_validation(int64_t, double loss) {
    pending_.values.emplace_back("val_loss", loss);
}

void RecordSink::on_evaluation(int64_t, const eval::Evaluation& e) {
    for (const eval::Metric& m : e.metrics)
        pending_.values.emplace_back("eval_" + e.name + "_" + m.name, m.value);
}

void RecordSink::on_best(int64_t, const std::string& metric, double value, const std::string&) {
    pending_.texts.emplace_back("best_metric", metric);
    pending_.values.emplace_back("best_value", value);
}

void RecordSink::on_early_stop(int64_t, const std::string&, int measurements) {
    pending_.counts.emplace_back("early_stop", measurements);
}

void RecordSink::on_step_end(int64_t step) {
    if (pending_.values.empty() && pending_.counts.empty()) return;
    pending_.step = step;
    write(pending_);
    pending_ = {};
}

JsonlSink::JsonlSink(const std::string& path) : path_(path), out_(path, std::ios::app) {
    if (!out_) throw base::FileError(path, "cannot open for appending");
}

void JsonlSink::write(const Record& record) {
    nlohmann::ordered_json j = {{"step", record.step}};
    for (const auto& [key, value] : record.values) j[key] = value;
    for (const auto& [key, value] : record.counts) j[key] = value;
    for (const auto& [key, value] : record.texts) j[key] = value;
    out_ << j.dump() << '\n' << std::flush;
    if (!out_) throw base::FileError(path_, "write failed");
}

} // namespace train
