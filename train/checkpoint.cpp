#include "train/checkpoint.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <regex>
#include <stdexcept>

#include "base/error.h"
#include "model/h5.h"
#include "model/io.h"
#include "model/layout.h"

namespace train {

namespace fs = std::filesystem;
namespace h5 = model::h5;

void save_checkpoint(const std::string& path, const model::Config& config, const float* params,
                     const OptimizerState& opt, int64_t step, const data::LoaderState& loader,
                     const std::string& args_json) {
    const size_t n = model::ParamLayout(config).total();
    if (opt.m.size() != n || opt.v.size() != n)
        throw std::logic_error("save_checkpoint needs the optimizer state of every parameter");
    model::write_hdf5(path, config, params, "gpt2-cpp checkpoint", [&](int64_t file) {
        {
            h5::Id g(H5Gcreate2(file, "optimizer", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
                     H5Gclose);
            h5::write_floats(g, "m", {n}, opt.m.data(), path);
            h5::write_floats(g, "v", {n}, opt.v.data(), path);
            h5::write_attr(g, "t", opt.t, path);
            h5::write_attr(g, "beta1", opt.config.beta1, path);
            h5::write_attr(g, "beta2", opt.config.beta2, path);
            h5::write_attr(g, "eps", opt.config.eps, path);
            h5::write_attr(g, "weight_decay", opt.config.weight_decay, path);
        }
        h5::Id g(H5Gcreate2(file, "training", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Gclose);
        h5::write_attr(g, "step", step, path);
        h5::write_attr(g, "loader_epoch", int64_t(loader.epoch), path);
        h5::write_attr(g, "loader_window", int64_t(loader.window), path);
        h5::write_attr(g, "args", args_json, path);
    });
}

Checkpoint load_checkpoint(const std::string& path) {
    model::ModelFile weights = model::read_hdf5(path);
    Checkpoint c;
    c.config = weights.config;
    c.params = std::move(weights.params);
    const hsize_t n = c.params.size();

    h5::Quiet quiet;
    h5::Id file(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose);
    if (H5Lexists(file, "optimizer", H5P_DEFAULT) <= 0 ||
        H5Lexists(file, "training", H5P_DEFAULT) <= 0)
        throw base::FileError(path, "a model file, not a training checkpoint (no optimizer "
                                    "state): start a new run from it instead of resuming");
    {
        h5::Id g(H5Gopen2(file, "optimizer", H5P_DEFAULT), H5Gclose);
        c.m.resize(n);
        c.v.resize(n);
        h5::read_floats(g, "m", {n}, c.m.data(), path);
        h5::read_floats(g, "v", {n}, c.v.data(), path);
        c.adam_t = h5::read_int(g, "t", path);
    }
    h5::Id g(H5Gopen2(file, "training", H5P_DEFAULT), H5Gclose);
    c.step = h5::read_int(g, "step", path);
    c.loader.epoch = uint64_t(h5::read_int(g, "loader_epoch", path));
    const char* window = H5Aexists(g, "loader_window") > 0 ? "loader_window" : "loader_batch";
    c.loader.window = uint64_t(h5::read_int(g, window, path));
    c.args_json = h5::read_string(g, "args", path);
    return c;
}

std::string checkpoint_path(const std::string& dir, int64_t step) {
    char name[32];
    std::snprintf(name, sizeof name, "ckpt_%08lld.h5", static_cast<long long>(step));
    return (fs::path(dir) / name).string();
}

namespace {

// Checkpoints in dir, oldest first (the zero-padded step sorts by name).
std::vector<fs::path> checkpoints_in(const std::string& dir) {
    static const std::regex kName(R"(ckpt_\d{8,}\.h5)");
    std::vector<fs::path> found;
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(dir, ec))
        if (entry.is_regular_file() && std::regex_match(entry.path().filename().string(), kName))
            found.push_back(entry.path());
    std::sort(found.begin(), found.end(), [](const fs::path& a, const fs::path& b) {
        const auto fa = a.filename().string(), fb = b.filename().string();
        return fa.size() != fb.size() ? fa.size() < fb.size() : fa < fb;
    });
    return found;
}

} // namespace

std::string latest_checkpoint(const std::string& dir) {
    const auto found = checkpoints_in(dir);
    return found.empty() ? "" : found.back().string();
}

void prune_checkpoints(const std::string& dir, int keep) {
    if (keep <= 0) return;
    const auto found = checkpoints_in(dir);
    for (size_t i = 0; i + size_t(keep) < found.size(); ++i) fs::remove(found[i]);
}

} // namespace train
