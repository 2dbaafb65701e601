#include "helpers.h"

#include <algorithm>
#include <cstdio>
#include <stdexcept>

#include <sys/wait.h>

#include <nlohmann/json.hpp>

#include <doctest/doctest.h>

#include "train/checkpoint.h"
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

Run signalled_run(const std::string& cmd, const std::string& seen,
                  const std::function<void(pid_t)>& signal) {
    int fds[2];
    REQUIRE(pipe(fds) == 0);
    const pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        dup2(fds[1], 1);
        dup2(fds[1], 2);
        close(fds[0]);
        execl("/bin/sh", "sh", "-c", ("exec " + cmd).c_str(), static_cast<char*>(nullptr));
        _exit(127);
    }
    close(fds[1]);
    std::string out;
    char buf[4096];
    bool signalled = false;
    for (ssize_t n; (n = read(fds[0], buf, sizeof buf)) > 0;) {
        out.append(buf, size_t(n));
        if (!signalled && out.find(seen) != std::string::npos) {
            signal(pid);
            signalled = true;
        }
    }
    close(fds[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    REQUIRE(signalled);
    return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

train::MemorySink train_in_process(const train::TrainOptions& o) {
    train::MemorySink sink;
    train::SingleProcess comm;
    train::Trainer trainer(o, comm, {&sink});
    trainer.run();
    return sink;
}

std::vector<double> values_of(const train::MemorySink& sink, const std::string& key) {
    std::vector<double> values;
    for (const auto& r : sink.records)
        if (const auto v = r.get(key)) values.push_back(*v);
    return values;
}

void check_same_checkpoint(const std::string& path_a, const std::string& path_b) {
    INFO(path_a, " against ", path_b);
    const auto a = train::load_checkpoint(path_a);
    const auto b = train::load_checkpoint(path_b);
    CHECK(a.step == b.step);
    CHECK(a.params == b.params);
    CHECK(a.m == b.m);
    CHECK(a.v == b.v);
    CHECK(a.adam_t == b.adam_t);
    CHECK(a.loader == b.loader);
    CHECK(a.loop.best_step == b.loop.best_step);
    CHECK(a.loop.best_value == b.loop.best_value);
    CHECK(a.loop.since_best == b.loop.since_best);
    CHECK(a.loop.skipped_steps == b.loop.skipped_steps);
    CHECK(a.loop.loss_outliers.window == b.loop.loss_outliers.window);
    CHECK(a.loop.grad_norm_outliers.window == b.loop.grad_norm_outliers.window);
}

} // namespace testing
