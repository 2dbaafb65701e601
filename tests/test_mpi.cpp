// gpt2 train under mpirun: W ranks of batch B against one rank of batch W*B, ZeRO-1,
// resuming on another number of ranks, and failures that must end the job, not hang it;
// and, in one process, the ZeRO-1 partition and DataParallel's step.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include <doctest/doctest.h>
#include <sys/wait.h>
#include <unistd.h>

#include "data/shard.h"
#include "helpers.h"
#include "model/gpt2.h"
#include "model/io.h"
#include "model/layout.h"
#include "optim/optim.h"
#include "train/checkpoint.h"
#include "train/communicator.h"
#include "train/parallel.h"

using namespace testing;

namespace {

// A 2-layer model on a preset's vocabulary, shuffling off so that ranks split the same
// stream of windows as one rank of a W-times larger batch does.
const std::string kTrain = "train --model d6 --n-layer 2 --n-head 2 --n-embd 32 --max-seq 32 "
                           "--seq 16 --lr 3e-3 --warmup 2 --grad-clip 1 --shuffle off";

void make_shard(const Workdir& w, const std::string& name, size_t n) {
    std::vector<uint16_t> tokens(n);
    uint32_t x = 777;
    for (auto& t : tokens) {
        x = x * 1103515245u + 12345u;
        t = uint16_t((x >> 16) % 500);
    }
    data::write_shard(w / name, tokens.data(), tokens.size());
}

// Runs `program` on np ranks, killed after `timeout` seconds if it has not ended.
// `env` may set GPT2_RANKS_PER_NODE to make the ranks behave as several machines.
Run mpirun_program(int np, const std::string& program, int timeout, const std::string& env = "") {
    const std::string cmd =
        env +
        " OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1 "
        "timeout -s KILL " +
        std::to_string(timeout) +
        " " MPIEXEC " --oversubscribe "
        "--bind-to none -np " +
        std::to_string(np) + " " + program + " 2>&1";
    return run_shell(cmd);
}

// build/gpt2 with args on np ranks.
Run mpirun(int np, const std::string& args, int timeout = 120, const std::string& env = "") {
    return mpirun_program(np, GPT2_BINARY " " + args, timeout, env);
}

// The losses of the "step n/N | loss X" lines, in order.
std::vector<double> losses(const std::string& out) {
    std::vector<double> found;
    std::istringstream in(out);
    for (std::string line; std::getline(in, line);) {
        const size_t at = line.find(" | loss ");
        if (line.starts_with("step ") && at != std::string::npos)
            found.push_back(std::stod(line.substr(at + 8)));
    }
    return found;
}

void check_same_losses(const Run& a, const Run& b, size_t steps) {
    INFO(a.out);
    INFO(b.out);
    REQUIRE(a.status == 0);
    REQUIRE(b.status == 0);
    const auto la = losses(a.out), lb = losses(b.out);
    REQUIRE(la.size() == steps);
    REQUIRE(lb.size() == steps);
    for (size_t i = 0; i < steps; ++i) {
        CAPTURE(i);
        CHECK(std::abs(la[i] - lb[i]) <= 1e-5);
    }
}

std::string data_args(const Workdir& w) {
    return " --train-data '" + (w / "train_*.bin") + "'";
}

} // namespace

TEST_CASE(
    "mpirun: 2 ranks of batch B give one rank of batch 2B's losses, with and without ZeRO-1") {
    Workdir w;
    make_shard(w, "train_000001.bin", 6000);
    const std::string args = kTrain + data_args(w) + " --steps 10 --grad-accum 2";
    const Run one = run_gpt2(args + " --batch 4 --out " + (w / "one"));
    const Run plain = mpirun(2, args + " --batch 2 --zero 0 --out " + (w / "two"));
    check_same_losses(one, plain, 10);
    CHECK(plain.out.find("gradients shared, all-reduced after backward") != std::string::npos);
    // As two machines: MPI_Allreduce after backward, and MPI_Iallreduce per tensor during it.
    check_same_losses(one,
                      mpirun(2, args + " --batch 2 --overlap off --out " + (w / "two-blocking"),
                             120, "GPT2_RANKS_PER_NODE=1"),
                      10);
    check_same_losses(one,
                      mpirun(2, args + " --batch 2 --overlap on --out " + (w / "two-overlap"), 120,
                             "GPT2_RANKS_PER_NODE=1"),
                      10);
    // ZeRO-1 with parameters and gradients in shared memory, and with a copy per rank
    // (gradients copied through the window's slots, parameters all-gathered).
    const Run zero = mpirun(2, args + " --batch 2 --zero 1 --out " + (w / "two-zero"));
    check_same_losses(one, zero, 10);
    CHECK(zero.out.find("ZeRO-1 (optimizer moments sharded; parameters and gradients shared)") !=
          std::string::npos);
    const Run gathered = mpirun(2, args + " --batch 2 --zero 1 --out " + (w / "two-gathered"), 120,
                                "GPT2_SHARED_BUFFERS=0");
    check_same_losses(one, gathered, 10);
    CHECK(gathered.out.find("ZeRO-1 (optimizer moments sharded; reduce-scatter, all-gather)") !=
          std::string::npos);
    // Only rank 0 prints and writes.
    const Run two =
        mpirun(2, kTrain + data_args(w) + " --batch 2 --steps 2 --out " + (w / "print"));
    INFO(two.out);
    CHECK(losses(two.out).size() == 2);
    // --zero auto: ZeRO-1 on one machine, plain data parallelism across machines.
    CHECK(
        two.out.find("ranks: 2 ranks on 1 machine (2 per machine, shared memory inside a machine); "
                     "ZeRO-1 (optimizer moments sharded; parameters and gradients shared)") !=
        std::string::npos);
    const Run machines =
        mpirun(2, kTrain + data_args(w) + " --batch 2 --steps 2 --out " + (w / "print-machines"),
               120, "GPT2_RANKS_PER_NODE=1");
    INFO(machines.out);
    CHECK(machines.out.find("; gradients all-reduced in buckets during backward") !=
          std::string::npos);
}

TEST_CASE("mpirun: with a loss mask, 2 ranks of batch B still give one rank of batch 2B's "
          "losses") {
    // The mean is over the scored targets of every rank's micro-batches: each rank scores a
    // different number of them.
    Workdir w;
    make_shard(w, "train_000001.bin", 6000);
    std::vector<uint8_t> classes(6000);
    uint32_t x = 4242;
    for (auto& c : classes) {
        x = x * 1103515245u + 12345u;
        c = uint8_t((x >> 16) % 3);
    }
    data::write_mask(data::mask_path(w / "train_000001.bin"), classes.data(), classes.size(), 0);
    const std::string args = kTrain + data_args(w) + " --steps 6 --grad-accum 2";
    const Run one = run_gpt2(args + " --batch 4 --out " + (w / "one"));
    check_same_losses(one, mpirun(2, args + " --batch 2 --zero 0 --out " + (w / "two")), 6);
    check_same_losses(one, mpirun(2, args + " --batch 2 --zero 1 --out " + (w / "two-zero")), 6);
}

TEST_CASE("mpirun: 3 ranks split batches and ZeRO-1 shards unevenly, and match one rank") {
    Workdir w;
    make_shard(w, "train_000001.bin", 6000);
    const std::string args = kTrain + data_args(w) + " --steps 10";
    const Run one = run_gpt2(args + " --batch 3 --out " + (w / "one"));
    check_same_losses(one, mpirun(3, args + " --batch 1 --zero 1 --out " + (w / "three")), 10);
    // Same final weights, to float rounding, as one rank that computes the same micro-batches.
    // The key bias is left out: its gradient is zero in exact arithmetic (a query's scores
    // all move by the same amount), so AdamW turns the rounding noise of each summation
    // order into steps of up to the learning rate (1.3e-5 apart here with AVX2 kernels).
    REQUIRE(run_gpt2(args + " --batch 1 --grad-accum 3 --out " + (w / "accum")).status == 0);
    const auto a = model::read_model(w / "accum/ckpt_00000010.h5");
    const auto b = model::read_model(w / "three/ckpt_00000010.h5");
    REQUIRE(a.params.size() == b.params.size());
    const model::ParamLayout layout(a.config);
    const size_t C = size_t(a.config.n_embd);
    double worst = 0;
    for (size_t i = 0; i < a.params.size(); ++i) {
        const size_t qkvb = layout.group_offset(model::kQkvb);
        const bool key_bias = i >= qkvb && i < qkvb + layout.group_size(model::kQkvb) &&
                              (i - qkvb) % (3 * C) / C == 1;
        if (!key_bias) worst = std::max(worst, double(std::abs(a.params[i] - b.params[i])));
    }
    CHECK(worst < 1e-5);
}

TEST_CASE(
    "mpirun: 4 ranks as 2 machines (shared memory inside, MPI across) and as 4 match one rank") {
    Workdir w;
    make_shard(w, "train_000001.bin", 6000);
    const std::string args = kTrain + data_args(w) + " --steps 6 --grad-accum 2";
    const Run one = run_gpt2(args + " --batch 4 --out " + (w / "one"));
    // 2 ranks per machine: slices reduced through the shared window, then across.
    check_same_losses(
        one, mpirun(4, args + " --batch 1 --out " + (w / "a"), 120, "GPT2_RANKS_PER_NODE=2"), 6);
    check_same_losses(
        one,
        mpirun(4, args + " --batch 1 --zero 1 --out " + (w / "b"), 120, "GPT2_RANKS_PER_NODE=2"),
        6);
    // Machines of 3 and 1 ranks: plain MPI collectives.
    check_same_losses(
        one, mpirun(4, args + " --batch 1 --out " + (w / "c"), 120, "GPT2_RANKS_PER_NODE=3"), 6);
    // One rank per machine: non-blocking all-reduce per tensor.
    check_same_losses(
        one, mpirun(4, args + " --batch 1 --out " + (w / "d"), 120, "GPT2_RANKS_PER_NODE=1"), 6);
}

TEST_CASE("mpirun: a checkpoint written by 2 ranks with ZeRO-1 resumes on 3 ranks and on 1") {
    Workdir w;
    make_shard(w, "train_000001.bin", 6000);
    const std::string args = kTrain + data_args(w) + " --steps 8 --batch 2";
    // 2 ranks x grad-accum 3 and 3 ranks x grad-accum 2 and 1 rank x grad-accum 6 all
    // take 6 windows per step: the same run.
    const Run first = mpirun(
        2, args + " --grad-accum 3 --zero 1 --checkpoint-every 4 --keep 0 --out " + (w / "a"));
    REQUIRE(first.status == 0);
    const std::string ckpt = w / "a/ckpt_00000004.h5";
    const auto saved = train::load_checkpoint(ckpt);
    CHECK(saved.loader.window == 4 * 6);
    const Run three =
        mpirun(3, args + " --grad-accum 2 --zero 1 --resume " + ckpt + " --out " + (w / "b"));
    const Run one = run_gpt2(args + " --grad-accum 6 --resume " + ckpt + " --out " + (w / "c"));
    const auto full = losses(first.out);
    REQUIRE(full.size() == 8);
    for (const Run* r : {&three, &one}) {
        INFO(r->out);
        REQUIRE(r->status == 0);
        const auto resumed = losses(r->out);
        REQUIRE(resumed.size() == 4);
        for (size_t i = 0; i < 4; ++i) CHECK(std::abs(resumed[i] - full[4 + i]) <= 1e-5);
    }
}

TEST_CASE("mpirun: evaluators during training run on rank 0 and every rank goes on, no hang") {
    Workdir w;
    make_shard(w, "train_000001.bin", 6000);
    std::ofstream(w / "text.txt") << "Some text to score. It has two sentences.\n";
    const Run r =
        mpirun(2,
               kTrain + data_args(w) + " --batch 2 --steps 3 --eval ppl:" + (w / "text.txt") +
                   " --eval-every 2 --out " + (w / "run"),
               60);
    INFO(r.out);
    REQUIRE(r.status == 0);
    CHECK(logged(w / "run/log.jsonl", "eval_text_ppl_token").size() == 2); // steps 2 and 3
    CHECK(logged(w / "run/log.jsonl", "loss").size() == 3);
}

// The step numbers of the lines "step N | ..." that contain `what`.
std::vector<int> steps_saying(const std::string& out, const std::string& what) {
    std::vector<int> steps;
    std::istringstream in(out);
    for (std::string line; std::getline(in, line);)
        if (line.starts_with("step ") && line.find(what) != std::string::npos)
            steps.push_back(std::stoi(line.substr(5)));
    return steps;
}

TEST_CASE("mpirun: an evaluator's metric, measured on rank 0, keeps the best and stops every rank "
          "early") {
    Workdir w;
    make_shard(w, "train_000001.bin", 6000);
    std::ofstream(w / "text.txt") << "Some text to score. It has two sentences.\n";
    // lr 0: the perplexity never improves after step 1's, so the run stops after step 3.
    const Run r =
        mpirun(2,
               "train --model d6 --n-layer 2 --n-head 2 --n-embd 32 --max-seq 32 "
               "--seq 16 --lr 0" +
                   data_args(w) + " --batch 2 --steps 6 --zero 1 --eval ppl:" + (w / "text.txt") +
                   " --eval-every 1 --best-metric text:ppl_token --keep-best "
                   "--early-stop 2 --out " +
                   (w / "run"),
               60);
    INFO(r.out);
    REQUIRE(r.status == 0);
    CHECK(steps_saying(r.out, "| best text:ppl_token ") == std::vector<int>{1});
    CHECK(steps_saying(r.out, "| early stop: text:ppl_token has not improved in 2") ==
          std::vector<int>{3});
    CHECK(train::load_checkpoint(w / "run/best.h5").step == 1);
    CHECK(train::latest_checkpoint(w / "run") == train::checkpoint_path(w / "run", 3));
}

TEST_CASE("mpirun: 2 ranks with ZeRO-1 skip outliers, keep the best and stop early as one rank "
          "does") {
    Workdir w;
    make_shard(w, "train_000001.bin", 6000);
    make_shard(w, "val_000000.bin", 600);
    // A small vocabulary: the guard judges only after 128 steps.
    const auto config = model::make_config(2, 2, 32, 512, 32);
    model::GPT2<float> m(config);
    m.init_weights(7);
    model::write_model(w / "init.h5", config, m.params());
    const std::string args = "train --model " + (w / "init.h5") + data_args(w) + " --val-data '" +
                             (w / "val_*.bin") +
                             "' --seq 16 --lr 1e-3 --lr-schedule constant --grad-clip 1 "
                             "--shuffle off --steps 300 --val-every 10 --val-batches 2 "
                             "--keep-best --early-stop 15 --skip-loss-z 1 --skip-grad-z 1.5";
    const Run one = run_gpt2(args + " --batch 2 --out " + (w / "one"));
    const Run two = mpirun(2, args + " --batch 1 --zero 1 --out " + (w / "two"), 300);
    INFO(one.out);
    INFO(two.out);
    REQUIRE(one.status == 0);
    REQUIRE(two.status == 0);
    const auto skipped = steps_saying(one.out, "update skipped");
    CHECK(!skipped.empty());
    CHECK(steps_saying(two.out, "update skipped") == skipped);
    CHECK(steps_saying(two.out, "| best val_loss") == steps_saying(one.out, "| best val_loss"));
    const auto stop = steps_saying(one.out, "| early stop");
    REQUIRE(stop.size() == 1);
    CHECK(steps_saying(two.out, "| early stop") == stop);
    const auto c = train::load_checkpoint(train::checkpoint_path(w / "two", stop[0]));
    CHECK(c.adam_t == c.step - int64_t(skipped.size()));
    CHECK(c.loop.skipped_steps == int64_t(skipped.size()));
}

TEST_CASE("mpirun: a bad shard on one rank stops every rank with one error, no hang") {
    Workdir w;
    // Batch 1 x seq 16 on 2 ranks: rank 1 reads tokens 16..32 first. Token 20 is out of range.
    std::vector<uint16_t> tokens(2000, 7);
    tokens[20] = 60000;
    data::write_shard(w / "train_000001.bin", tokens.data(), tokens.size());
    const Run r =
        mpirun(2, kTrain + data_args(w) + " --batch 1 --steps 3 --out " + (w / "run"), 60);
    INFO(r.out);
    CHECK(r.status != 0);
    CHECK(r.out.find("gpt2: error: rank 1: " + (w / "train_000001.bin") +
                     ": token 60000 at position 20") != std::string::npos);
    CHECK(r.out.find("step 1/3") == std::string::npos);
}

TEST_CASE("mpirun: a rank that cannot open its data or is killed ends the job, no hang") {
    Workdir w;
    make_shard(w, "train_000001.bin", 6000);
    SUBCASE("a glob matching nothing") {
        const Run r = mpirun(2,
                             kTrain + " --train-data '" + (w / "missing_*.bin") +
                                 "' --batch 1 --steps 3 --out " + (w / "run"),
                             60);
        CHECK(r.status != 0);
        CHECK(r.out.find("gpt2: error: rank 0: no token shards match") != std::string::npos);
    }
    SUBCASE("rank 1 killed mid-run") {
        // Rank 1 replaces a shell that kills it with SIGKILL once rank 0 has logged step 1
        // (however long a loaded machine takes to get there).
        const std::string program =
            "sh -c 'if [ \"$OMPI_COMM_WORLD_RANK\" = 1 ]; then (until grep -qs step.:1, " +
            (w / "run/log.jsonl") +
            "; do sleep 0.1; done; kill -9 $$) & fi; exec " GPT2_BINARY " " + kTrain +
            data_args(w) + " --batch 1 --steps 100000 --out " + (w / "run") + "'";
        const auto t0 = std::chrono::steady_clock::now();
        const Run r = mpirun_program(2, program, 60);
        const double seconds =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        INFO(r.out);
        CHECK(seconds < 50); // ended by mpirun, not by the test's timeout
        CHECK(r.status != 0);
        CHECK(r.out.find("step 1/100000") != std::string::npos);
    }
}

TEST_CASE("partition splits a buffer into 16-aligned parts that cover it in order") {
    for (size_t n : {size_t(0), size_t(5), size_t(1000), size_t(124475904)})
        for (int ranks : {1, 2, 3, 7}) {
            CAPTURE(n);
            CAPTURE(ranks);
            const auto o = train::partition(n, ranks);
            REQUIRE(o.size() == size_t(ranks) + 1);
            CHECK(o.front() == 0);
            CHECK(o.back() == n);
            for (int r = 0; r < ranks; ++r) {
                CHECK(o[r] <= o[r + 1]);
                CHECK(o[r] % 16 == 0);
                CHECK(o[r + 1] - o[r] <= n / size_t(ranks) + 16);
            }
        }
}

TEST_CASE("one process: DataParallel's step is the plain clipped AdamW step, bit for bit, with or "
          "without ZeRO-1") {
    const auto config = model::make_config(2, 2, 16, 64, 8);
    model::GPT2<float> reference(config);
    reference.init_weights(3);
    std::vector<int> tokens(2 * 8 + 1);
    for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = int(i * 7 % 64);
    const optim::AdamWConfig adam_config{0.9, 0.95, 1e-8, 0.1};

    // Two micro-batches, clipped at 0.5, as the trainer did before DataParallel.
    auto grads_of = [&](model::GPT2<float>& m) {
        m.reserve(2, 8, true);
        m.zero_grad();
        for (int k = 0; k < 2; ++k) {
            m.forward(tokens.data(), tokens.data() + 1, 2, 8, model::Pass::training);
            m.backward();
        }
    };
    grads_of(reference);
    optim::AdamW adam(reference.layout(), adam_config);
    const double norm = optim::grad_norm(reference.grads(), reference.num_params()) / 2;
    adam.step(reference.params(), reference.grads(), 1e-3f,
              float(optim::clip_factor(norm, 0.5) / 2));

    for (int zero : {0, 1}) {
        CAPTURE(zero);
        model::GPT2<float> m(config);
        m.init_weights(3);
        train::SingleProcess comm;
        train::DataParallel dp(comm, m, adam_config, {zero, true});
        grads_of(m);
        const double got = dp.step(1e-3f, 0.5, 2);
        CHECK(got == doctest::Approx(norm).epsilon(1e-12));
        CHECK(std::equal(m.params(), m.params() + m.num_params(), reference.params()));
    }
}

namespace {

std::string mpirun_command(int np, const std::string& args) {
    return "env OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 "
           "OMP_NUM_THREADS=1 " MPIEXEC " --oversubscribe --bind-to none -np " +
           std::to_string(np) + " " GPT2_BINARY " " + args;
}

} // namespace

TEST_CASE("mpirun: SIGUSR1 to mpirun stops every rank at the same step with rank 0's checkpoint, "
          "exit 0") {
    Workdir w;
    make_shard(w, "train_000001.bin", 6000);
    // mpirun forwards SIGUSR1 to every rank (SIGTERM it would follow with SIGKILL).
    const Run r = signalled_run(
        mpirun_command(2, kTrain + data_args(w) + " --batch 2 --steps 100000 --out " + (w / "run")),
        "step 2/", [](pid_t pid) { kill(pid, SIGUSR1); });
    INFO(r.out);
    CHECK(r.status == 0);
    CHECK(r.out.find("stopped by signal after step") != std::string::npos);
    const std::string latest = train::latest_checkpoint(w / "run");
    REQUIRE(!latest.empty());
    CHECK(train::load_checkpoint(latest).step >= 2);
}

TEST_CASE("mpirun: SIGTERM to one rank alone stops every rank at the same step with a checkpoint, "
          "exit 0") {
    Workdir w;
    make_shard(w, "train_000001.bin", 6000);
    // The newest rank that mpirun started (rank 0 or 1): the ranks agree at the step's end.
    const Run r = signalled_run(
        mpirun_command(2, kTrain + data_args(w) + " --batch 2 --steps 100000 --out " + (w / "run")),
        "step 2/", [](pid_t mpirun_pid) {
            const std::string find = "pgrep -n -x gpt2 -P " + std::to_string(mpirun_pid);
            FILE* p = popen(find.c_str(), "r");
            REQUIRE(p);
            int rank_pid = 0;
            const bool found = std::fscanf(p, "%d", &rank_pid) == 1;
            pclose(p);
            REQUIRE(found);
            kill(pid_t(rank_pid), SIGTERM);
        });
    INFO(r.out);
    CHECK(r.status == 0);
    CHECK(r.out.find("stopped by signal after step") != std::string::npos);
    const std::string latest = train::latest_checkpoint(w / "run");
    REQUIRE(!latest.empty());
    CHECK(train::load_checkpoint(latest).step >= 2);
}
