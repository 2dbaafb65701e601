#include "helpers.h"

#include <algorithm>
#include <cstdio>
#include <stdexcept>

#include <sys/wait.h>

#include <nlohmann/json.hpp>

#include "train/communicator.h"
#include "train/trainer.h"

namespace testing {

Run run_shell(const std::string& command) {
    FILE* pipe = popen(command.c_str(), "r");
    if (!pipe) throw std::runtime_error("cannot run " + command);
    std::string out;
    char buf[4096];
    while (size_t n = fread(buf, 1, sizeof buf, pipe)) out.append(buf, n);
    const int status = pclose(pipe);
    return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

Run run_gpt2(const std::string& args) {
    return run_shell(std::string(GPT2_BINARY) + " " + args + " 2>&1");
}

size_t count_lines(const std::string& s) {
    size_t n = 0;
    for (char c : s) n += c == '\n';
    return n;
}

std::vector<double> logged(const std::string& log_path, const std::string& key) {
    std::ifstream in(log_path);
    if (!in) throw std::runtime_error(log_path + ": cannot open");
    std::vector<double> values;
    for (std::string line; std::getline(in, line);) {
        const auto j = nlohmann::json::parse(line);
        if (j.contains(key)) values.push_back(j[key].get<double>());
    }
    return values;
}

model::GPT2<float> bigram_model(int vocab, int max_seq, uint64_t seed) {
    model::GPT2<float> m(model::make_config(1, 1, 8, vocab, max_seq));
    m.init_weights(seed);
    for (const model::TensorInfo& t : m.layout().tensors())
        if (t.group == model::kAttprojw || t.group == model::kAttprojb ||
            t.group == model::kFcprojw || t.group == model::kFcprojb || t.group == model::kWpe)
            std::fill(m.params() + t.offset, m.params() + t.offset + t.size, 0.0f);
    return m;
}

train::MemorySink train_in_process(const train::TrainOptions& o) {
    train::MemorySink sink;
    train::SingleProcess comm;
    train::Trainer trainer(o, comm, {&sink});
    trainer.run();
    return sink;
}

} // namespace testing
