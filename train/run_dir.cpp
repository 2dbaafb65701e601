#include "train/run_dir.h"

#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "train/checkpoint.h"

namespace train {

namespace fs = std::filesystem;

namespace {

// Creates dir first: the lock file lives in it.
std::string lock_path(const std::string& dir) {
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) throw base::FileError(dir, "cannot create the run folder (" + ec.message() + ")");
    return (fs::path(dir) / ".lock").string();
}

base::FileLock lock_folder(const std::string& dir) {
    const std::string lock = lock_path(dir);
    try {
        return base::FileLock(lock);
    } catch (const base::FileError& e) {
        if (!e.problem().starts_with("held by")) throw; // cannot create or lock it at all
        throw base::FileError(dir,
                              "in use by another training run (" + lock + " " + e.problem() + ")");
    }
}

} // namespace

RunDir::RunDir(const std::string& dir, bool resuming, bool overwrite) : lock_(lock_folder(dir)) {
    // Under the lock no other run writes here: a temporary is a killed run's.
    static const std::regex kTemporary(R"((ckpt_\d+\.h5|best\.h5|log\.jsonl)\.tmp)");
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(dir, ec))
        if (std::regex_match(entry.path().filename().string(), kTemporary))
            fs::remove(entry.path(), ec);
    if (resuming || overwrite) return;
    if (const std::string newest = latest_checkpoint(dir); !newest.empty())
        throw base::SettingError(
            "out",
            dir + " holds another run's checkpoints (newest " +
                fs::path(newest).filename().string() +
                "): resume that run with {resume}, or start a new one there with {overwrite}");
}

void truncate_log(const std::string& path, int64_t step) {
    std::ifstream in(path, std::ios::binary);
    if (!in) return;
    std::ostringstream kept;
    bool dropped = false;
    for (std::string line; std::getline(in, line);) {
        const bool complete = !in.eof(); // a last line without '\n' was cut short
        const auto j = nlohmann::json::parse(line, nullptr, false);
        if (complete && j.is_object() && j.contains("step") && j["step"].is_number_integer() &&
            j["step"].get<int64_t>() <= step)
            kept << line << '\n';
        else
            dropped = true;
    }
    if (in.bad()) throw base::FileError(path, "read failed");
    if (!dropped) return;
    const std::string text = kept.str();
    base::write_atomically(path, [&](const std::string& tmp) {
        std::ofstream out(tmp, std::ios::binary);
        out << text;
        out.close();
        if (!out)
            throw base::FileError(path, "write failed (" + tmp + ": " + base::errno_text() + ")");
    });
}

std::string set_aside_log(const std::string& path) {
    std::error_code ec;
    if (!fs::exists(path, ec) || fs::file_size(path, ec) == 0 || ec) return "";
    for (int i = 1;; ++i) {
        const std::string aside = path + "." + std::to_string(i);
        if (fs::exists(aside, ec)) continue;
        fs::rename(path, aside, ec);
        if (ec)
            throw base::FileError(path, "cannot rename it to " + aside + " (" + ec.message() + ")");
        return aside;
    }
}

} // namespace train
