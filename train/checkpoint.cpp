#include "train/checkpoint.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <random>
#include <regex>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "model/h5.h"
#include "model/io.h"
#include "model/layout.h"
#include "train/options.h"

namespace train {

namespace fs = std::filesystem;
namespace h5 = model::h5;

namespace {

using json = nlohmann::json;

json outliers_json(const OutlierDetector::State& s) {
    return {{"window", s.window}, {"in_a_row", s.outliers_in_a_row}};
}

OutlierDetector::State outliers_from(const json& j) {
    return {j.at("window").get<std::vector<double>>(), j.at("in_a_row").get<int64_t>()};
}

void write_loop_state(int64_t g, const LoopState& loop, const std::string& path) {
    h5::write_attr(g, "skipped_steps", loop.skipped_steps, path);
    if (loop.best_step > 0) {
        h5::write_attr(g, "best_metric", loop.best_metric, path);
        h5::write_attr(g, "best_value", loop.best_value, path);
        h5::write_attr(g, "best_step", loop.best_step, path);
        h5::write_attr(g, "since_best", loop.since_best, path);
    }
    if (!loop.loss_outliers.window.empty() || !loop.grad_norm_outliers.window.empty())
        h5::write_attr(g, "outliers",
                       json{{"loss", outliers_json(loop.loss_outliers)},
                            {"grad_norm", outliers_json(loop.grad_norm_outliers)}}
                           .dump(),
                       path);
}

// The loop's state as saved (checked by the caller), or the defaults if absent.
LoopState read_loop_state(int64_t g, const std::string& path) {
    LoopState loop;
    if (H5Aexists(g, "skipped_steps") > 0)
        loop.skipped_steps = h5::read_int(g, "skipped_steps", path);
    if (H5Aexists(g, "best_step") > 0) {
        loop.best_metric = h5::read_string(g, "best_metric", path);
        loop.best_value = h5::read_double(g, "best_value", path);
        loop.best_step = h5::read_int(g, "best_step", path);
        loop.since_best = h5::read_int(g, "since_best", path);
    }
    if (H5Aexists(g, "outliers") > 0) {
        try {
            const json j = json::parse(h5::read_string(g, "outliers", path));
            loop.loss_outliers = outliers_from(j.at("loss"));
            loop.grad_norm_outliers = outliers_from(j.at("grad_norm"));
        } catch (const json::exception& e) {
            throw base::FileError(path, std::string("damaged or not a checkpoint of this "
                                                    "program: outliers (") +
                                            e.what() + ")");
        }
    }
    return loop;
}

bool valid_outliers(const OutlierDetector::State& s) {
    try {
        OutlierDetector().restore(s);
        return true;
    } catch (const std::invalid_argument&) {
        return false;
    }
}

} // namespace

void save_checkpoint(const std::string& path, const model::Config& config, const float* params,
                     const OptimizerState& opt, int64_t step, const data::LoaderState& loader,
                     const std::string& args_json, const std::string& run_id,
                     const LoopState& loop) {
    const size_t n = model::ParamLayout(config).total();
    if (opt.m.size() != n || opt.v.size() != n)
        throw std::logic_error("save_checkpoint needs the optimizer state of every parameter");
    model::write_hdf5(path, config, params, "gpt2-cpp checkpoint", [&](int64_t file) {
        {
            h5::Id g(H5Gcreate2(file, "optimizer", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
                     H5Gclose);
            if (!g.ok()) throw base::FileError(path, "cannot write (" + h5::error_text() + ")");
            h5::write_floats(g, "m", {n}, opt.m.data(), path);
            h5::write_floats(g, "v", {n}, opt.v.data(), path);
            h5::write_attr(g, "t", opt.t, path);
            h5::write_attr(g, "beta1", opt.config.beta1, path);
            h5::write_attr(g, "beta2", opt.config.beta2, path);
            h5::write_attr(g, "eps", opt.config.eps, path);
            h5::write_attr(g, "weight_decay", opt.config.weight_decay, path);
        }
        h5::Id g(H5Gcreate2(file, "training", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Gclose);
        if (!g.ok()) throw base::FileError(path, "cannot write (" + h5::error_text() + ")");
        h5::write_attr(g, "step", step, path);
        h5::write_attr(g, "loader_epoch", int64_t(loader.epoch), path);
        h5::write_attr(g, "loader_window", int64_t(loader.window), path);
        h5::write_attr(g, "args", args_json, path);
        if (!run_id.empty()) h5::write_attr(g, "run_id", run_id, path);
        write_loop_state(g, loop, path);
    });
}

namespace {

// A value read from a checkpoint that cannot be what a run saved.
void require(bool ok, const std::string& path, const std::string& what) {
    if (!ok) throw base::FileError(path, "damaged or not a checkpoint of this program: " + what);
}

bool all_finite(const std::vector<float>& x) {
    return std::all_of(x.begin(), x.end(), [](float f) { return std::isfinite(f); });
}

bool is_run_id(const std::string& id) {
    return id.size() == 16 && id.find_first_not_of("0123456789abcdef") == std::string::npos;
}

} // namespace

Checkpoint load_checkpoint(const std::string& path) {
    model::ModelFile weights = model::read_hdf5(path);
    Checkpoint c;
    c.config = weights.config;
    c.params = std::move(weights.params);
    const hsize_t n = c.params.size();

    h5::Quiet quiet;
    h5::Id file = h5::open_file(path);
    if (H5Lexists(file, "optimizer", H5P_DEFAULT) <= 0 ||
        H5Lexists(file, "training", H5P_DEFAULT) <= 0)
        throw base::FileError(path, "a model file, not a training checkpoint (no optimizer "
                                    "state): start a new run from it instead of resuming");
    optim::AdamWConfig adam;
    {
        h5::Id g(H5Gopen2(file, "optimizer", H5P_DEFAULT), H5Gclose);
        if (!g.ok())
            throw base::FileError(path, "cannot read /optimizer (" + h5::error_text() + ")");
        c.m.resize(n);
        c.v.resize(n);
        h5::read_floats(g, "m", {n}, c.m.data(), path);
        h5::read_floats(g, "v", {n}, c.v.data(), path);
        c.adam_t = h5::read_int(g, "t", path);
        adam = {h5::read_double(g, "beta1", path), h5::read_double(g, "beta2", path),
                h5::read_double(g, "eps", path), h5::read_double(g, "weight_decay", path)};
    }
    h5::Id g(H5Gopen2(file, "training", H5P_DEFAULT), H5Gclose);
    if (!g.ok()) throw base::FileError(path, "cannot read /training (" + h5::error_text() + ")");
    c.step = h5::read_int(g, "step", path);
    const int64_t epoch = h5::read_int(g, "loader_epoch", path);
    const char* window = H5Aexists(g, "loader_window") > 0 ? "loader_window" : "loader_batch";
    const int64_t win = h5::read_int(g, window, path);
    c.args_json = h5::read_string(g, "args", path);
    if (H5Aexists(g, "run_id") > 0) c.run_id = h5::read_string(g, "run_id", path);
    c.loop = read_loop_state(g, path);

    // What a run can have saved: one Adam step per optimizer step, a loader no further
    // on than one epoch a step, moments and weights that are numbers.
    const std::string s = std::to_string(c.step);
    require(c.step >= 1 && c.step <= kMaxStep, path,
            "step " + s + " (expected 1.." + std::to_string(kMaxStep) + ")");
    const LoopState& loop = c.loop;
    require(loop.skipped_steps >= 0 && loop.skipped_steps <= c.step, path,
            "skipped_steps " + std::to_string(loop.skipped_steps) + " at step " + s);
    require(c.adam_t == c.step - loop.skipped_steps, path,
            "AdamW's t is " + std::to_string(c.adam_t) + " at step " + s + " with " +
                std::to_string(loop.skipped_steps) + " skipped (t is the steps not skipped)");
    require(loop.best_step >= 0 && loop.best_step <= c.step && loop.since_best >= 0 &&
                loop.since_best <= c.step && std::isfinite(loop.best_value),
            path, "best_step, best_value or since_best out of range");
    require(valid_outliers(loop.loss_outliers) && valid_outliers(loop.grad_norm_outliers), path,
            "an outlier window is too long or holds a value that is not a finite number");
    require(epoch >= 0 && epoch <= c.step, path,
            "loader_epoch " + std::to_string(epoch) + " at step " + s);
    require(win >= 0 && win <= (int64_t(1) << 48), path, "loader_window " + std::to_string(win));
    c.loader.epoch = uint64_t(epoch);
    c.loader.window = uint64_t(win);
    require(adam.beta1 >= 0 && adam.beta1 < 1 && adam.beta2 >= 0 && adam.beta2 < 1 &&
                adam.eps > 0 && std::isfinite(adam.eps) && adam.weight_decay >= 0 &&
                std::isfinite(adam.weight_decay),
            path, "AdamW settings out of range");
    require(c.run_id.empty() || is_run_id(c.run_id), path, "run_id '" + c.run_id + "'");
    try {
        train_options_from_json(c.args_json);
    } catch (const std::exception& e) {
        require(false, path, std::string("its training options do not parse (") + e.what() + ")");
    }
    require(all_finite(c.params), path, "a weight is not a finite number");
    require(all_finite(c.m), path, "a first moment is not a finite number");
    require(all_finite(c.v) && std::all_of(c.v.begin(), c.v.end(), [](float x) { return x >= 0; }),
            path, "a second moment is negative or not a finite number");
    return c;
}

std::string new_run_id() {
    std::random_device rd;
    const uint64_t id = (uint64_t(rd()) << 32 | rd()) ^
                        uint64_t(std::chrono::system_clock::now().time_since_epoch().count());
    char text[17];
    std::snprintf(text, sizeof text, "%016llx", static_cast<unsigned long long>(id));
    return text;
}

std::string checkpoint_run_id(const std::string& path) {
    h5::Quiet quiet;
    try {
        h5::Id file = h5::open_file(path);
        if (H5Lexists(file, "training", H5P_DEFAULT) <= 0) return "";
        h5::Id g(H5Gopen2(file, "training", H5P_DEFAULT), H5Gclose);
        if (!g.ok() || H5Aexists(g, "run_id") <= 0) return "";
        return h5::read_string(g, "run_id", path);
    } catch (const base::FileError&) {
        return "";
    }
}

std::string checkpoint_path(const std::string& dir, int64_t step) {
    char name[32];
    std::snprintf(name, sizeof name, "ckpt_%08lld.h5", static_cast<long long>(step));
    return (fs::path(dir) / name).string();
}

namespace {

// Checkpoints in dir with their steps, oldest first.
std::vector<std::pair<int64_t, std::string>> checkpoints_in(const std::string& dir) {
    static const std::regex kName(R"(ckpt_(\d{8,18})\.h5)");
    std::vector<std::pair<int64_t, std::string>> found;
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(dir, ec)) {
        std::smatch m;
        const std::string name = entry.path().filename().string();
        if (entry.is_regular_file(ec) && std::regex_match(name, m, kName))
            found.emplace_back(std::stoll(m[1]), entry.path().string());
    }
    std::sort(found.begin(), found.end());
    return found;
}

} // namespace

std::vector<std::string> list_checkpoints(const std::string& dir) {
    std::vector<std::string> paths;
    const auto found = checkpoints_in(dir);
    for (auto it = found.rbegin(); it != found.rend(); ++it) paths.push_back(it->second);
    return paths;
}

std::string latest_checkpoint(const std::string& dir) {
    const auto found = checkpoints_in(dir);
    return found.empty() ? "" : found.back().second;
}

Checkpoint load_latest_valid(const std::string& dir, std::string& path,
                             std::vector<base::FileError>& skipped) {
    const auto paths = list_checkpoints(dir);
    if (paths.empty()) throw base::FileError(dir, "no checkpoint (ckpt_*.h5) to resume from");
    for (const std::string& p : paths) {
        try {
            Checkpoint c = load_checkpoint(p);
            path = p;
            return c;
        } catch (const base::FileError& e) {
            skipped.push_back(e);
        }
    }
    throw base::FileError(dir, "no checkpoint verifies (" + std::to_string(paths.size()) +
                                   " tried; newest: " + skipped.front().what() + ")");
}

void prune_checkpoints(const std::string& dir, int keep, const std::string& run_id, int64_t step,
                       const std::vector<std::string>& damaged) {
    if (keep <= 0 || run_id.empty()) return;
    std::vector<std::string> ours; // newest first
    const auto found = checkpoints_in(dir);
    for (auto it = found.rbegin(); it != found.rend(); ++it)
        if (it->first <= step &&
            std::find(damaged.begin(), damaged.end(), it->second) == damaged.end() &&
            checkpoint_run_id(it->second) == run_id)
            ours.push_back(it->second);
    for (size_t i = size_t(keep); i < ours.size(); ++i) {
        std::error_code ec;
        fs::remove(ours[i], ec);
        if (ec)
            throw base::FileError(ours[i],
                                  "cannot delete an old checkpoint (" + ec.message() + ")");
    }
}

} // namespace train
