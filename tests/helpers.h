// Shared by the tests that run the gpt2 program or write files.
#pragma once

#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include <sys/types.h>

#include "model/gpt2.h"
#include "train/metrics.h"
#include "train/options.h"

namespace testing {

namespace fs = std::filesystem;

// A fresh folder under the system temp dir, removed with everything in it.
struct Workdir {
    fs::path dir =
        fs::temp_directory_path() / ("gpt2_test_" + std::to_string(std::random_device{}()) +
                                     std::to_string(std::random_device{}()));
    Workdir() { fs::create_directories(dir); }
    ~Workdir() {
        std::error_code ignored;
        fs::remove_all(dir, ignored);
    }
    std::string operator/(const std::string& name) const { return (dir / name).string(); }
};

inline std::string read_bytes(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

struct Run {
    int status;      // exit status, or -1 if killed by a signal
    std::string out; // stdout and stderr together
};

// Runs a shell command and waits for it; out is what it wrote to stdout (add 2>&1 for
// stderr too).
Run run_shell(const std::string& command);
// Runs build/gpt2 with args (a shell fragment) and waits for it.
Run run_gpt2(const std::string& args);
// Starts `cmd` (a shell command) with stdout and stderr to a pipe; once `seen` appears in
// its output, calls signal(child pid). Returns its exit status (-1 if killed) and output.
Run signalled_run(const std::string& cmd, const std::string& seen,
                  const std::function<void(pid_t)>& signal);

size_t count_lines(const std::string& s);

// The values of `key` in a log.jsonl, in order, from the lines that have it.
std::vector<double> logged(const std::string& log_path, const std::string& key);

// A one-layer model whose prediction depends on the current token only: the blocks'
// output projections and the position embedding are zero, so the residual stream is
// wte[x]. Any window layout must then reproduce the pairwise probabilities.
model::GPT2<float> bigram_model(int vocab, int max_seq, uint64_t seed);

// Runs a Trainer in this process to its end and returns what it reported.
train::MemorySink train_in_process(const train::TrainOptions& o);
// The values of `key` in a run's records, in step order, from the records that have it.
std::vector<double> values_of(const train::MemorySink& sink, const std::string& key);
// Two checkpoints of runs that must agree exactly: the same step, weights, moments,
// AdamW's t, loader position and loop state (best, outlier windows), bit for bit.
void check_same_checkpoint(const std::string& path_a, const std::string& path_b);

} // namespace testing
