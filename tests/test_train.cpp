// Training: the Trainer in this process (records through a MemorySink, exact resume) and
// gpt2 train end to end (Ctrl-C, NaN, checkpoints, errors).
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <doctest/doctest.h>
#include <fcntl.h>
#include <nlohmann/json.hpp>
#include <sys/wait.h>
#include <unistd.h>

#include "base/error.h"
#include "base/file.h"
#include "data/shard.h"
#include "helpers.h"
#include "model/gpt2.h"
#include "model/io.h"
#include "model/matmul.h"
#include "model/precision.h"
#include "optim/optim.h"
#include "train/checkpoint.h"
#include "train/metrics.h"
#include "train/trainer.h"

using namespace testing;

namespace {

// A 2-layer model on a preset's vocabulary, and 6000 tokens of pseudo-text.
const std::string kModel = "--model d6 --n-layer 2 --n-head 2 --n-embd 32 --max-seq 32";

void make_shards(const Workdir& w) {
    std::vector<uint16_t> tokens(6000);
    uint32_t x = 12345;
    for (auto& t : tokens) {
        x = x * 1103515245u + 12345u;
        t = uint16_t((x >> 16) % 500); // a small, learnable slice of the vocabulary
    }
    data::write_shard(w / "train_000001.bin", tokens.data(), 4000);
    data::write_shard(w / "train_000002.bin", tokens.data() + 4000, 1500);
    data::write_shard(w / "val_000000.bin", tokens.data() + 5500, 500);
}

std::string train_args(const Workdir& w, const std::string& out) {
    return "train " + kModel + " --train-data '" + (w / "train_*.bin") + "' --val-data '" +
           (w / "val_*.bin") + "' --batch 2 --seq 16 --grad-accum 2 --lr 3e-3 --warmup 2 " +
           "--lr-schedule cosine --grad-clip 1 --val-every 3 --val-batches 2 --out " + (w / out);
}

// The same run as train_args, for a Trainer in this process.
train::TrainOptions train_options(const Workdir& w, const std::string& out) {
    train::TrainOptions o;
    o.model = "d6";
    o.n_layer = 2, o.n_head = 2, o.n_embd = 32, o.max_seq = 32;
    o.train_data = w / "train_*.bin";
    o.val_data = w / "val_*.bin";
    o.batch = 2, o.seq = 16, o.grad_accum = 2;
    o.lr = 3e-3, o.warmup = 2, o.lr_schedule = optim::Schedule::Kind::cosine, o.grad_clip = 1;
    o.val_every = 3, o.val_batches = 2;
    o.out = w / out;
    return o;
}

bool bf16_supported() {
    return model::matmul_has_bf16() && model::cpu_has_bf16();
}

// bf16 products round their inputs to 8 significant bits; a few steps of a small model
// stay within 1% of the fp32 losses.
void check_close(const std::vector<double>& bf16, const std::vector<double>& fp32) {
    REQUIRE(bf16.size() == fp32.size());
    for (size_t i = 0; i < bf16.size(); ++i) {
        CAPTURE(i);
        CHECK(std::isfinite(bf16[i]));
        CHECK(bf16[i] == doctest::Approx(fp32[i]).epsilon(0.01));
    }
}

model::Precision saved_precision(const std::string& checkpoint) {
    return train::train_options_from_json(train::load_checkpoint(checkpoint).args_json).precision;
}

} // namespace

TEST_CASE(
    "a run resumed from its step-N checkpoint reports the same losses as the uninterrupted run") {
    Workdir w;
    make_shards(w);
    train::TrainOptions o = train_options(w, "full");
    o.steps = 6, o.checkpoint_every = 3, o.keep = 0;
    const auto full = values_of(train_in_process(o), "loss");
    REQUIRE(full.size() == 6);

    o.out = w / "resumed";
    o.checkpoint_every = 0, o.keep = 2;
    o.resume = w / "full/ckpt_00000003.h5";
    const auto resumed = values_of(train_in_process(o), "loss");
    REQUIRE(resumed.size() == 3);
    for (int i = 0; i < 3; ++i) CHECK(resumed[i] == full[3 + i]);
    // Bit for bit the same weights and moments at the end.
    CHECK(read_bytes(w / "full/ckpt_00000006.h5").size() > 0);
    check_same_checkpoint(w / "full/ckpt_00000006.h5", w / "resumed/ckpt_00000006.h5");
}

TEST_CASE("a run reports each step's numbers to its sinks, and log.jsonl holds the same records") {
    Workdir w;
    make_shards(w);
    train::TrainOptions o = train_options(w, "run");
    o.steps = 4;
    const train::MemorySink sink = train_in_process(o);
    // Validation before step 1, every 3 steps and at the end.
    REQUIRE(sink.records.size() == 5);
    CHECK(sink.records[0].step == 0);
    CHECK(sink.records[0].values.size() == 1);
    CHECK(sink.records[0].get("val_loss").has_value());
    for (int s = 1; s <= 4; ++s) {
        const train::Record& r = sink.records[size_t(s)];
        CAPTURE(s);
        CHECK(r.step == s);
        for (const char* key : {"loss", "lr", "grad_norm", "ms", "tok_per_s"})
            CHECK(r.get(key).has_value());
        CHECK(r.get("val_loss").has_value() == (s == 3 || s == 4));
    }
    CHECK(*sink.records[1].get("lr") == doctest::Approx(3e-3 / 2)); // warmup: lr (s+1)/2
    CHECK(logged(w / "run/log.jsonl", "loss") == values_of(sink, "loss"));
    CHECK(logged(w / "run/log.jsonl", "val_loss").size() == 3);
    CHECK(sink.messages.front().starts_with("model L2 NH2 C32"));
    CHECK(sink.messages.back() == "checkpoint " + (w / "run/ckpt_00000004.h5"));

    // A resumed run does not validate before its first step.
    o.resume = w / "run";
    o.steps = 5;
    const train::MemorySink resumed = train_in_process(o);
    REQUIRE(resumed.records.size() == 1);
    CHECK(resumed.records[0].step == 5);
}

TEST_CASE("resuming with another batch size is refused, naming the option") {
    Workdir w;
    make_shards(w);
    REQUIRE(run_gpt2(train_args(w, "run") + " --steps 1").status == 0);
    const Run r = run_gpt2("train " + kModel + " --train-data '" + (w / "train_*.bin") +
                           "' --batch 4 --seq 16 --steps 2 --out " + (w / "run") + " --resume " +
                           (w / "run"));
    INFO(r.out);
    CHECK(r.status == 2); // options that disagree are a usage error
    CHECK(count_lines(r.out) == 1);
    CHECK(r.out.find("gpt2: error: --batch: is 4, but ") != std::string::npos);
    CHECK(r.out.find("resuming needs the run's batch, seq, shuffle and seed") != std::string::npos);
}

TEST_CASE("Ctrl-C finishes the step, writes a checkpoint and exits 0") {
    Workdir w;
    make_shards(w);
    const Run r =
        signalled_run(std::string(GPT2_BINARY) + " " + train_args(w, "run") + " --steps 100000",
                      "step 2/", [](pid_t pid) { kill(pid, SIGINT); });
    INFO(r.out);
    CHECK(r.status == 0);
    CHECK(r.out.find("stopped by signal") != std::string::npos);
    const std::string latest = train::latest_checkpoint(w / "run");
    REQUIRE(!latest.empty());
    CHECK(train::load_checkpoint(latest).step >= 2);
}

TEST_CASE("a second SIGTERM ends a step too long to wait for, at once") {
    Workdir w;
    make_shards(w);
    // A billion micro-batches: the first step would take days. The CPU-time limit (prlimit
    // execs the program, keeping the pid) only ends the test if the run does not stop.
    std::string args = train_args(w, "run");
    args.replace(args.find("--grad-accum 2"), 14, "--grad-accum 1000000000");
    const auto start = std::chrono::steady_clock::now();
    const Run r =
        signalled_run("prlimit --cpu=120 " + std::string(GPT2_BINARY) + " " + args + " --steps 2",
                      "step 0 | val loss", [](pid_t pid) {
                          usleep(1'000'000); // into step 1
                          kill(pid, SIGTERM);
                          usleep(300'000);
                          kill(pid, SIGTERM);
                      });
    INFO(r.out);
    CHECK(r.status == -1); // ended by a signal
    CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(30));
    CHECK(train::latest_checkpoint(w / "run").empty());
}

TEST_CASE("a non-finite loss stops the run naming the step, and checkpoints are untouched") {
    Workdir w;
    make_shards(w);
    REQUIRE(run_gpt2(train_args(w, "run") + " --steps 1").status == 0);
    const std::string good = read_bytes(w / "run/ckpt_00000001.h5");

    // A model whose weights hold a NaN, started over in the same folder.
    const auto config = model::make_config(2, 2, 32, 50257, 32);
    model::GPT2<float> m(config);
    m.init_weights(1);
    m.params()[m.layout().find("ln_f.bias").offset] = std::numeric_limits<float>::quiet_NaN();
    model::write_llmc(w / "nan.bin", config, m.params());
    const Run r =
        run_gpt2("train --model " + (w / "nan.bin") + " --train-data '" + (w / "train_*.bin") +
                 "' --batch 2 --seq 16 --steps 3 --overwrite --out " + (w / "run"));
    INFO(r.out);
    CHECK(r.status == 1);
    CHECK(r.out.find("step 1: the loss is nan") != std::string::npos);
    CHECK(read_bytes(w / "run/ckpt_00000001.h5") == good);

    // Finite losses, but an update that overflows the weights: no checkpoint of them is
    // written, and the last good one is not pruned.
    std::string args = train_args(w, "run");
    args.replace(args.find("--lr 3e-3"), 9, "--lr 1e300");
    const Run huge =
        run_gpt2(args + " --steps 3 --resume " + (w / "run") + " --keep 1 --checkpoint-every 1");
    INFO(huge.out);
    CHECK(huge.status == 1);
    CHECK(huge.out.find("a weight is not a finite number after the update") != std::string::npos);
    CHECK(count_lines(huge.out.substr(huge.out.find("gpt2: error:"))) == 1);
    CHECK(read_bytes(w / "run/ckpt_00000001.h5") == good);
    CHECK(!std::filesystem::exists(w / "run/ckpt_00000002.h5"));
}

TEST_CASE("epochs that make more steps than a checkpoint records, and a resume that names "
          "another model, are refused before any work") {
    Workdir w;
    make_shards(w);
    const Run epochs = run_gpt2("train " + kModel + " --train-data '" + (w / "train_*.bin") +
                                "' --batch 1 --seq 1 --epochs 1e9 --out " + (w / "e"));
    INFO(epochs.out);
    CHECK(epochs.status == 2);
    CHECK(epochs.out.starts_with("gpt2: error: --epochs: makes 5.5e+12 steps of this data, "
                                 "more than 1e9"));

    REQUIRE(run_gpt2(train_args(w, "run") + " --steps 1").status == 0);
    const std::string resume = " --steps 2 --resume " + (w / "run");
    std::string other_shape = train_args(w, "run");
    other_shape.replace(other_shape.find("--n-embd 32"), 11, "--n-embd 64");
    const Run shape = run_gpt2(other_shape + resume);
    INFO(shape.out);
    CHECK(shape.status == 2);
    CHECK(shape.out.find("gpt2: error: --n-embd: is 64, but " + (w / "run") +
                         "/ckpt_00000001.h5 holds n_embd 32") != std::string::npos);
    std::string other_model = train_args(w, "run");
    other_model.replace(other_model.find(kModel), kModel.size(), "--model gpt2");
    const Run model = run_gpt2(other_model + resume);
    INFO(model.out);
    CHECK(model.status == 2);
    CHECK(model.out.find("gpt2: error: --model: is gpt2, but ") != std::string::npos);
    CHECK(run_gpt2(train_args(w, "run") + resume).status == 0); // the same model goes on
}

TEST_CASE("a checkpoint holds the weights, moments, step and loader position, and converts to a "
          "model file") {
    Workdir w;
    make_shards(w);
    REQUIRE(run_gpt2(train_args(w, "run") + " --steps 2").status == 0);
    const auto c = train::load_checkpoint(w / "run/ckpt_00000002.h5");
    CHECK(c.step == 2);
    CHECK(c.adam_t == 2);
    CHECK(c.loader.window == 4); // 2 steps x 2 micro-batches
    CHECK(c.args_json.find("\"grad_accum\":2") != std::string::npos);
    REQUIRE(run_gpt2("convert " + (w / "run/ckpt_00000002.h5") + " " + (w / "model.bin")).status ==
            0);
    CHECK(model::read_model(w / "model.bin").params == c.params);
    // A plain model file is not a checkpoint.
    CHECK_THROWS_WITH_AS(train::load_checkpoint(w / "nonexistent.h5"),
                         doctest::Contains("nonexistent.h5"), std::runtime_error);
    model::write_hdf5(w / "plain.h5", c.config, c.params.data());
    CHECK_THROWS_WITH_AS(train::load_checkpoint(w / "plain.h5"),
                         doctest::Contains("not a training checkpoint"), std::runtime_error);
}

TEST_CASE("an interrupted atomic write leaves the previous file intact and no temporary behind") {
    Workdir w;
    { std::ofstream(w / "ckpt.h5") << "previous"; }
    CHECK_THROWS(base::write_atomically(w / "ckpt.h5", [](const std::string& tmp) {
        std::ofstream(tmp) << "half";
        throw std::runtime_error("disk full");
    }));
    CHECK(read_bytes(w / "ckpt.h5") == "previous");
    CHECK(!std::filesystem::exists(w / "ckpt.h5.tmp"));
}

TEST_CASE("only the newest checkpoints are kept") {
    Workdir w;
    make_shards(w);
    REQUIRE(run_gpt2(train_args(w, "run") + " --steps 4 --checkpoint-every 1 --keep 2").status ==
            0);
    CHECK(!std::filesystem::exists(w / "run/ckpt_00000002.h5"));
    CHECK(std::filesystem::exists(w / "run/ckpt_00000003.h5"));
    CHECK(train::latest_checkpoint(w / "run") == w / "run/ckpt_00000004.h5");
}

TEST_CASE("a bf16 run trains the model like the fp32 run, to a finite loss within 1%") {
    Workdir w;
    make_shards(w);
    train::TrainOptions o = train_options(w, "bf16");
    o.steps = 6;
    o.precision = model::Precision::bf16;
    train::SingleProcess comm;
    train::MemorySink sink;
    if (!bf16_supported()) {
        // Refused before anything is read or written, naming the setting.
        CHECK_THROWS_WITH_AS(train::Trainer(o, comm, {&sink}), doctest::Contains("precision: bf16"),
                             base::SettingError);
        CHECK(!std::filesystem::exists(o.out));
        return;
    }
    {
        train::Trainer trainer(o, comm, {&sink});
        CHECK(trainer.model().precision() == model::Precision::bf16);
        trainer.run();
    }
    CHECK(sink.messages.front().find("precision bf16") != std::string::npos);
    o.precision = model::Precision::fp32;
    o.out = w / "fp32";
    const auto fp32 = values_of(train_in_process(o), "loss");
    const auto bf16 = values_of(sink, "loss");
    check_close(bf16, fp32);
    CHECK(bf16.back() < bf16.front()); // it learns
    CHECK(saved_precision(w / "bf16/ckpt_00000006.h5") == model::Precision::bf16);
    CHECK(saved_precision(w / "fp32/ckpt_00000006.h5") == model::Precision::fp32);
}

TEST_CASE("a fp32 checkpoint resumes in bf16, and a bf16 one in fp32") {
    if (!bf16_supported()) return; // the test above checks the refusal
    Workdir w;
    make_shards(w);
    train::TrainOptions o = train_options(w, "full");
    o.steps = 6, o.checkpoint_every = 3, o.keep = 0;
    const auto full = values_of(train_in_process(o), "loss");
    REQUIRE(full.size() == 6);

    // Steps 4 and 5 in bf16 from the fp32 run's step 3, then step 6 in fp32 again.
    o.checkpoint_every = 0;
    o.out = w / "bf16", o.resume = w / "full/ckpt_00000003.h5", o.steps = 5;
    o.precision = model::Precision::bf16;
    const auto in_bf16 = values_of(train_in_process(o), "loss");
    check_close(in_bf16, {full[3], full[4]});
    CHECK(saved_precision(w / "bf16/ckpt_00000005.h5") == model::Precision::bf16);

    o.out = w / "back", o.resume = w / "bf16", o.steps = 6;
    o.precision = model::Precision::fp32;
    const auto back = values_of(train_in_process(o), "loss");
    check_close(back, {full[5]});
    CHECK(saved_precision(w / "back/ckpt_00000006.h5") == model::Precision::fp32);
}

namespace {

// Flips one bit of the byte at `offset` of a file.
void flip_byte(const std::string& path, std::streamoff offset) {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(offset);
    char c = 0;
    f.get(c);
    f.seekp(offset);
    f.put(char(c ^ 0x10));
}

// The steps of a log.jsonl, in order.
std::vector<double> logged_steps(const std::string& log) {
    return logged(log, "step");
}

} // namespace

TEST_CASE("a second run on a locked run folder fails in one line naming the holder's pid") {
    Workdir w;
    make_shards(w);
    std::filesystem::create_directories(w / "run");
    base::FileLock held(w / "run/.lock");
    const Run r = run_gpt2(train_args(w, "run") + " --steps 1");
    INFO(r.out);
    CHECK(r.status == 1);
    CHECK(count_lines(r.out) == 1);
    CHECK(r.out.find("in use by another training run") != std::string::npos);
    CHECK(r.out.find("pid " + std::to_string(getpid())) != std::string::npos);
    CHECK(train::latest_checkpoint(w / "run").empty());
}

TEST_CASE("a folder holding another run's checkpoints is refused, and --overwrite prunes only the "
          "new run's") {
    Workdir w;
    make_shards(w);
    REQUIRE(run_gpt2(train_args(w, "run") + " --steps 4 --checkpoint-every 1 --keep 2").status ==
            0);
    const std::string old3 = read_bytes(w / "run/ckpt_00000003.h5");
    const std::string old4 = read_bytes(w / "run/ckpt_00000004.h5");

    const Run refused = run_gpt2(train_args(w, "run") + " --steps 2 --checkpoint-every 1 --keep 1");
    INFO(refused.out);
    CHECK(refused.status == 2); // a usage error: --out needs --resume or --overwrite
    CHECK(count_lines(refused.out) == 1);
    CHECK(refused.out.find("holds another run's checkpoints (newest ckpt_00000004.h5): resume "
                           "that run with --resume, or start a new one there with --overwrite") !=
          std::string::npos);

    // A new run with --overwrite keeps its own newest checkpoint and the old run's.
    const Run r =
        run_gpt2(train_args(w, "run") + " --steps 2 --checkpoint-every 1 --keep 1 --overwrite");
    INFO(r.out);
    REQUIRE(r.status == 0);
    CHECK(!std::filesystem::exists(w / "run/ckpt_00000001.h5"));
    CHECK(train::load_checkpoint(w / "run/ckpt_00000002.h5").step == 2);
    CHECK(read_bytes(w / "run/ckpt_00000003.h5") == old3);
    CHECK(read_bytes(w / "run/ckpt_00000004.h5") == old4);
    CHECK(train::checkpoint_run_id(w / "run/ckpt_00000002.h5") !=
          train::checkpoint_run_id(w / "run/ckpt_00000004.h5"));
    // The old run's log is set aside, not appended to.
    CHECK(logged_steps(w / "run/log.jsonl") == std::vector<double>{0, 1, 2});
    CHECK(logged_steps(w / "run/log.jsonl.1") == std::vector<double>{0, 1, 2, 3, 4});
}

TEST_CASE("resume skips a checkpoint with a damaged byte, says so, and takes the newest that "
          "verifies, and log.jsonl holds each step once") {
    Workdir w;
    make_shards(w);
    REQUIRE(run_gpt2(train_args(w, "run") + " --steps 4 --checkpoint-every 2 --keep 0").status ==
            0);
    // The middle of the file is tensor data (wte, or the moments).
    const std::string newest = w / "run/ckpt_00000004.h5";
    flip_byte(newest, std::streamoff(std::filesystem::file_size(newest) / 2));
    CHECK_THROWS_WITH_AS(train::load_checkpoint(newest), doctest::Contains("checksum mismatch"),
                         base::FileError);

    const Run r = run_gpt2(train_args(w, "run") + " --steps 5 --resume " + (w / "run"));
    INFO(r.out);
    REQUIRE(r.status == 0);
    CHECK(r.out.find("warning: skipped checkpoint " + newest) != std::string::npos);
    CHECK(r.out.find("from " + (w / "run/ckpt_00000002.h5") + " (step 2)") != std::string::npos);
    CHECK(logged_steps(w / "run/log.jsonl") == std::vector<double>{0, 1, 2, 3, 4, 5});

    // None verifies: one error naming the folder.
    flip_byte(w / "run/ckpt_00000002.h5",
              std::streamoff(std::filesystem::file_size(w / "run/ckpt_00000002.h5") / 2));
    flip_byte(w / "run/ckpt_00000005.h5",
              std::streamoff(std::filesystem::file_size(w / "run/ckpt_00000005.h5") / 2));
    const Run none = run_gpt2(train_args(w, "run") + " --steps 6 --resume " + (w / "run"));
    INFO(none.out);
    CHECK(none.status == 1);
    CHECK(none.out.find("gpt2: error: " + (w / "run") + ": no checkpoint verifies") !=
          std::string::npos);
}

TEST_CASE("a checkpoint whose /training values cannot be is refused on load") {
    Workdir w;
    const auto config = model::make_config(1, 1, 8, 64, 8);
    model::GPT2<float> m(config);
    m.init_weights(1);
    const size_t n = m.num_params();
    std::vector<float> mom(n, 0.0f);
    const std::string args = train::to_json(train::TrainOptions{});
    auto save = [&](const std::string& name, int64_t step, int64_t t, float v0 = 0.0f) {
        mom[0] = v0;
        train::save_checkpoint(w / name, config, m.params(), {mom, mom, t, {}}, step, {}, args,
                               train::new_run_id());
        return w / name;
    };
    CHECK(train::load_checkpoint(save("ok.h5", 3, 3)).step == 3);
    CHECK_THROWS_WITH_AS(
        train::load_checkpoint(save("big.h5", 1'000'000'000'000, 1'000'000'000'000)),
        doctest::Contains("step 1000000000000"), base::FileError);
    CHECK_THROWS_WITH_AS(train::load_checkpoint(save("t0.h5", 3, 0)),
                         doctest::Contains("AdamW's t is 0 at step 3"), base::FileError);
    CHECK_THROWS_WITH_AS(train::load_checkpoint(save("neg.h5", 3, 3, -1.0f)),
                         doctest::Contains("second moment"), base::FileError);
}

TEST_CASE("a killed run's temporaries and cut-off log line are cleaned when it resumes") {
    Workdir w;
    make_shards(w);
    REQUIRE(run_gpt2(train_args(w, "run") + " --steps 4 --checkpoint-every 2 --keep 0").status ==
            0);
    // As a kill -9 leaves it: step 4's checkpoint half written, a log line cut short.
    std::filesystem::rename(w / "run/ckpt_00000004.h5", w / "run/ckpt_00000004.h5.tmp");
    { std::ofstream(w / "run/log.jsonl", std::ios::app) << "{\"step\":5,\"lo"; }
    const Run r = run_gpt2(train_args(w, "run") + " --steps 5 --resume " + (w / "run"));
    INFO(r.out);
    REQUIRE(r.status == 0);
    CHECK(!std::filesystem::exists(w / "run/ckpt_00000004.h5.tmp"));
    CHECK(logged_steps(w / "run/log.jsonl") == std::vector<double>{0, 1, 2, 3, 4, 5});
}

namespace {

// The records of a log.jsonl without their timings, which differ from run to run.
std::vector<nlohmann::json> untimed_records(const std::string& log) {
    std::ifstream in(log);
    std::vector<nlohmann::json> records;
    for (std::string line; std::getline(in, line);) {
        auto j = nlohmann::json::parse(line);
        j.erase("ms");
        j.erase("tok_per_s");
        records.push_back(j);
    }
    return records;
}

} // namespace

TEST_CASE("a run killed with SIGKILL at random moments and resumed each time ends with the "
          "weights and log of an uninterrupted run") {
    Workdir w;
    make_shards(w);
    const std::string tail = " --steps 8 --checkpoint-every 1 --keep 2";
    REQUIRE(run_gpt2(train_args(w, "full") + tail).status == 0);

    const unsigned seed = std::random_device{}();
    INFO("seed " << seed);
    std::mt19937 rng(seed);
    std::uniform_int_distribution<int> ms(300, 2500);
    int kills = 0;
    for (int attempt = 0; attempt < 12; ++attempt) {
        const bool resume = !train::latest_checkpoint(w / "cut").empty();
        const std::string cmd = std::string("exec ") + GPT2_BINARY + " " + train_args(w, "cut") +
                                tail + (resume ? " --resume " + (w / "cut") : "") +
                                " >/dev/null 2>&1";
        const pid_t pid = fork();
        REQUIRE(pid >= 0);
        if (pid == 0) {
            execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
            _exit(127);
        }
        const bool last = kills == 5;
        if (!last) {
            usleep(useconds_t(ms(rng)) * 1000);
            if (kill(pid, SIGKILL) == 0) ++kills;
        }
        int status = 0;
        waitpid(pid, &status, 0);
        CAPTURE(attempt);
        // Ended by the kill, or finished before it.
        CHECK(((WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) ||
               (WIFEXITED(status) && WEXITSTATUS(status) == 0)));
        if (WIFEXITED(status) && WEXITSTATUS(status) == 0 &&
            std::filesystem::exists(w / "cut/ckpt_00000008.h5"))
            break;
    }
    check_same_checkpoint(w / "full/ckpt_00000008.h5", w / "cut/ckpt_00000008.h5");
    CHECK(untimed_records(w / "cut/log.jsonl") == untimed_records(w / "full/log.jsonl"));
    for (const auto& entry : std::filesystem::directory_iterator(w / "cut"))
        CHECK(!entry.path().string().ends_with(".tmp"));
}
