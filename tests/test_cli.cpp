// The gpt2 program end to end: exit codes, output lines, one-line errors.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <sys/stat.h>
#include <sys/wait.h>
#include <vector>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include "data/shard.h"
#include "eval/loss.h"
#include "helpers.h"
#include "model/gpt2.h"
#include "model/h5.h"
#include "model/io.h"
#include "model/matmul.h"
#include "model/precision.h"

namespace fs = std::filesystem;
using namespace testing;

namespace {

Run run(const std::string& args) {
    return run_gpt2(args);
}

// A tiny random model file and a shard of tokens for it.
void make_model_and_shard(const Workdir& w, size_t n_tokens) {
    const auto config = model::make_config(2, 2, 16, 64, 16);
    model::GPT2<float> m(config);
    m.init_weights(5);
    model::write_llmc(w / "model.bin", config, m.params());
    std::vector<uint16_t> tokens(n_tokens);
    for (size_t i = 0; i < n_tokens; ++i) tokens[i] = uint16_t((i * 31 + i / 7) % 64);
    data::write_shard(w / "shard.bin", tokens.data(), tokens.size());
}

// A tiny random model on GPT-2's vocabulary, for the commands that take text; written
// to path and returned.
model::GPT2<float> make_gpt2_vocab_model(const std::string& path, uint64_t seed) {
    const auto config = model::make_config(2, 2, 16, 50257, 32);
    model::GPT2<float> m(config);
    m.init_weights(seed);
    model::write_llmc(path, config, m.params());
    return m;
}

} // namespace

TEST_CASE("gpt2 gradcheck passes on its default small model") {
    const Run r = run("gradcheck");
    INFO(r.out);
    CHECK(r.status == 0);
    CHECK(r.out.find("h.1.mlp.c_proj.weight") != std::string::npos);
    CHECK(r.out.find("attention/qkv") != std::string::npos);
    CHECK(r.out.find("float vs double") != std::string::npos);
    CHECK(r.out.find("FAIL") == std::string::npos);
}

TEST_CASE("gpt2 convert .bin -> .h5 -> .bin reproduces the bytes, and info describes the file") {
    Workdir w;
    make_model_and_shard(w, 100);
    CHECK(run("convert " + (w / "model.bin") + " " + (w / "model.h5")).status == 0);
    CHECK(run("convert " + (w / "model.h5") + " " + (w / "again.bin")).status == 0);
    CHECK(read_bytes(w / "again.bin") == read_bytes(w / "model.bin"));
    const Run info = run("info " + (w / "model.h5"));
    INFO(info.out);
    CHECK(info.status == 0);
    CHECK(info.out.find("n_layer 2, n_head 2, n_embd 16, vocab 64 (padded to 128)") !=
          std::string::npos);
}

TEST_CASE("gpt2 eval loss prints the mean loss over K consecutive batches") {
    Workdir w;
    make_model_and_shard(w, 1000);
    const Run r = run("eval loss --model " + (w / "model.bin") + " --data " + (w / "shard.bin") +
                      " --batch 2 --seq 16 --batches 3");
    INFO(r.out);
    REQUIRE(r.status == 0);

    // The same computed here: batch i reads the B*T+1 tokens starting at i*B*T.
    const auto file = model::read_model(w / "model.bin");
    model::GPT2<float> m(file.config);
    m.set_params(file.params.data(), file.params.size());
    const data::Shard shard(w / "shard.bin");
    double sum = 0;
    for (int i = 0; i < 3; ++i) {
        std::vector<int> t(shard.tokens() + i * 32, shard.tokens() + i * 32 + 33);
        sum += m.forward(t.data(), t.data() + 1, 2, 16);
    }
    char expected[64];
    std::snprintf(expected, sizeof expected, "loss %.6f\n", sum / 3);
    CHECK(r.out.find(expected) != std::string::npos);
}

TEST_CASE("gpt2 eval loss without --batches scores every target once, whatever B") {
    Workdir w;
    make_model_and_shard(w, 1000); // 999 targets: 31 batches of 2 x 16 and 7 left over
    const auto file = model::read_model(w / "model.bin");
    model::GPT2<float> m(file.config);
    m.set_params(file.params.data(), file.params.size());
    const data::Shard shard(w / "shard.bin");
    // Row by row: 62 rows of 16 targets and one of 7, padded with targets -1.
    double sum = 0;
    for (size_t at = 0; at + 1 < shard.size(); at += 16) {
        std::vector<int> in(16, 0), out(16, -1);
        for (size_t j = 0; j < 16 && at + j + 1 < shard.size(); ++j)
            in[j] = shard[at + j], out[j] = shard[at + j + 1];
        sum += m.forward(in.data(), out.data(), 1, 16) * m.targets_kept();
    }
    for (const char* batch : {"2", "3"}) {
        CAPTURE(batch);
        const Run r = run("eval loss --model " + (w / "model.bin") + " --data " +
                          (w / "shard.bin") + " --batch " + batch + " --seq 16");
        INFO(r.out);
        REQUIRE(r.status == 0);
        CHECK(r.out.find("999 tokens scored") != std::string::npos);
        const size_t at = r.out.find("loss ");
        REQUIRE(at != std::string::npos);
        CHECK(std::stod(r.out.substr(at + 5)) == doctest::Approx(sum / 999).epsilon(1e-5));
    }
}

TEST_CASE("gpt2 gives a one-line error and exit 1 for bad files") {
    Workdir w;
    make_model_and_shard(w, 100);
    SUBCASE("a shard given as the model") {
        fs::copy_file(w / "shard.bin", w / "notmodel.bin");
        const Run r = run("info " + (w / "notmodel.bin"));
        CHECK(r.status == 1);
        CHECK(count_lines(r.out) == 1);
        CHECK(r.out.find("notmodel.bin: bad magic") != std::string::npos);
    }
    SUBCASE("a truncated model") {
        const std::string bytes = read_bytes(w / "model.bin");
        std::ofstream(w / "short.bin", std::ios::binary)
            .write(bytes.data(), std::streamsize(bytes.size() - 10));
        const Run r = run("convert " + (w / "short.bin") + " " + (w / "out.h5"));
        CHECK(r.status == 1);
        CHECK(count_lines(r.out) == 1);
        CHECK(r.out.find("short.bin: truncated") != std::string::npos);
        CHECK(!fs::exists(w / "out.h5"));
    }
    SUBCASE("a shard too short for the batches asked for") {
        const Run r = run("eval loss --model " + (w / "model.bin") + " --data " +
                          (w / "shard.bin") + " --batch 2 --seq 16 --batches 5");
        CHECK(r.status == 1);
        CHECK(count_lines(r.out) == 1);
        // 99 targets: 3 batches of 32 and a last one, padded, of 3.
        CHECK(r.out.find("shard.bin: holds 4 batches") != std::string::npos);
    }
    SUBCASE("a sequence longer than the model's context") {
        const Run r = run("eval loss --model " + (w / "model.bin") + " --data " +
                          (w / "shard.bin") + " --batch 1 --seq 32");
        CHECK(r.status == 2); // an option out of range is a usage error
        CHECK(count_lines(r.out) == 1);
    }
}

TEST_CASE("gpt2 tokenize writes a val shard, then train shards, with <|endoftext|> before each "
          "document") {
    Workdir w;
    {
        std::ofstream(w / "a.txt") << "First block.\n\nSecond block.\n";
        std::ofstream(w / "b.txt") << "Another file.";
    }
    const std::string common = " --tokenizer " TOKENIZER_DIR " --input " + (w / "a.txt") + " " +
                               (w / "b.txt") + " --eot-between-docs --doc-split blank-line";
    const Run r =
        run("tokenize" + common + " --output " + (w / "out") + " --val-tokens 3 --shard-tokens 4");
    INFO(r.out);
    REQUIRE(r.status == 0);
    // Documents: "First block.\n\n" | "Second block.\n" | "Another file."
    // = EOT First(5962) block(2512) .(13) \n\n(628) | EOT Second(12211) block .(13) \n(198)
    //   | EOT Another(6610) file(2393) .(13)
    const std::vector<uint16_t> all = {50256, 5962, 2512, 13,    628,  50256, 12211,
                                       2512,  13,   198,  50256, 6610, 2393,  13};
    std::vector<uint16_t> got;
    for (const char* name : {"out_val_000000.bin", "out_train_000001.bin", "out_train_000002.bin",
                             "out_train_000003.bin"}) {
        const data::Shard s(w / name);
        got.insert(got.end(), s.tokens(), s.tokens() + s.size());
    }
    CHECK(data::Shard(w / "out_val_000000.bin").size() == 3);
    CHECK(got == all);
    CHECK(!fs::exists(w / "out_train_000004.bin"));

    const Run one = run("tokenize" + common + " --output " + (w / "all.bin"));
    REQUIRE(one.status == 0);
    const data::Shard s(w / "all.bin");
    CHECK(std::vector<uint16_t>(s.tokens(), s.tokens() + s.size()) == all);
}

TEST_CASE("gpt2 encode and decode are inverse") {
    Workdir w;
    std::ofstream(w / "t.txt") << "Caf\xC3\xA9 \xF0\x9F\xA4\x96 <|endoftext|> 42";
    const Run enc = run("encode --tokenizer " TOKENIZER_DIR " --input " + (w / "t.txt"));
    REQUIRE(enc.status == 0);
    std::ofstream(w / "ids.txt") << enc.out;
    const Run dec = run("decode --tokenizer " TOKENIZER_DIR " --input " + (w / "ids.txt"));
    REQUIRE(dec.status == 0);
    CHECK(dec.out == "Caf\xC3\xA9 \xF0\x9F\xA4\x96 <|endoftext|> 42");
    std::ofstream(w / "bad.txt") << "1 2 x3";
    const Run bad = run("decode --tokenizer " TOKENIZER_DIR " --input " + (w / "bad.txt"));
    CHECK(bad.status == 1);
    CHECK(bad.out.find("bad.txt: 'x3' is not a token id") != std::string::npos);
}

TEST_CASE("gpt2 sample is reproducible from its seed and streams ids or text") {
    Workdir w;
    make_gpt2_vocab_model(w / "m.bin", 8);
    const std::string base =
        "sample --model " + (w / "m.bin") + " --tokenizer " TOKENIZER_DIR " --max-tokens 12";
    const Run a = run(base + " --prompt 'Hello' --seed 3 --top-k 20");
    const Run b = run(base + " --prompt 'Hello' --seed 3 --top-k 20");
    INFO(a.out);
    REQUIRE(a.status == 0);
    CHECK(a.out == b.out);
    CHECK(a.out.starts_with("Hello"));
    const Run ids = run(base + " --prompt-ids '15496 995' --ids --temperature 0");
    REQUIRE(ids.status == 0);
    std::istringstream in(ids.out);
    int count = 0;
    for (int id; in >> id; ++count) CHECK(id < 50257);
    CHECK(count == 12);
    const Run bad = run(base + " --prompt-ids '1 x'");
    CHECK(bad.status == 2); // a bad option value is a usage error
    CHECK(bad.out.find("--prompt-ids: 'x' is not a token id") != std::string::npos);
}

TEST_CASE("gpt2 embed writes the last hidden state of every token") {
    Workdir w;
    auto m = make_gpt2_vocab_model(w / "m.bin", 9);
    const Run r = run("embed --model " + (w / "m.bin") + " --tokenizer " TOKENIZER_DIR +
                      " --input 'Hello world, again.' --all-layers --out " + (w / "e.h5"));
    INFO(r.out);
    REQUIRE(r.status == 0);
    const std::vector<int> ids = {15496, 995, 11, 757, 13}; // "Hello world, again."
    m.forward(ids.data(), nullptr, 1, 5);
    std::vector<float> last(5 * 16), all(3 * 5 * 16);
    const hid_t f = H5Fopen((w / "e.h5").c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
    REQUIRE(f >= 0);
    model::h5::read_floats(f, "last_hidden_state", {5, 16}, last.data(), "e.h5");
    model::h5::read_floats(f, "hidden_states", {3, 5, 16}, all.data(), "e.h5");
    H5Fclose(f);
    for (size_t i = 0; i < last.size(); ++i) {
        CHECK(last[i] == doctest::Approx(m.activations().lnf[i]).epsilon(1e-5));
        CHECK(all[2 * 80 + i] == last[i]);
        CHECK(all[i] == doctest::Approx(m.activations().encoded[i]).epsilon(1e-6));
    }
}

TEST_CASE("gpt2 names the option whose value a library rejects, in one line") {
    Workdir w;
    make_gpt2_vocab_model(w / "m.bin", 3);
    std::ofstream(w / "text.txt") << "Some words to score, and a few more words after them.\n";
    const std::string train =
        "train --model d6 --train-data '" + (w / "none_*.bin") + "' --steps 1";
    const std::string ppl = "eval ppl --model " + (w / "m.bin") + " --tokenizer " TOKENIZER_DIR +
                            " --data " + (w / "text.txt");
    const std::pair<std::string, std::string> cases[] = {
        {train + " --lr -1",
         "gpt2: error: --lr: must be at least 0, got -1 (see 'gpt2 train --help')\n"},
        {train + " --beta1 2",
         "gpt2: error: --beta1: must be in [0, 1), got 2 (see 'gpt2 train --help')\n"},
        {train + " --eval nonsense", "gpt2: error: --eval: unknown evaluator 'nonsense'"},
        {train + " --n-layer 0 --n-head -1", "gpt2: error: --n-head: must be at least 0"},
        {ppl + " --batch 0",
         "gpt2: error: --batch: must be positive, got 0 (see 'gpt2 eval ppl --help')\n"},
        {ppl + " --context 33", "gpt2: error: --context: must be in 1..32"},
    };
    for (const auto& entry : cases) {
        const auto& args = std::get<0>(entry);
        const auto& expected = std::get<1>(entry);
        const Run r = run(args);
        INFO(args);
        INFO(r.out);
        CHECK(r.status == 2); // a usage error
        CHECK(count_lines(r.out) == 1);
        CHECK(r.out.starts_with(expected));
        CHECK(r.out.ends_with(" --help')\n"));
    }
}

TEST_CASE("--precision fp32|bf16 is in the help of every command that runs a model, and takes "
          "only those words") {
    for (const char* cmd : {"train", "bench", "eval loss", "eval grads", "eval ppl", "eval lambada",
                            "eval cbt", "sample", "embed"}) {
        const Run r = run(std::string(cmd) + " --help");
        INFO(cmd);
        INFO(r.out);
        CHECK(r.status == 0);
        CHECK(r.out.find("--precision bf16|fp32=fp32") != std::string::npos);
    }
    Workdir w;
    make_model_and_shard(w, 1000);
    const Run bad = run("eval loss --model " + (w / "model.bin") + " --data " + (w / "shard.bin") +
                        " --precision fp16");
    INFO(bad.out);
    CHECK(bad.status != 0);
    CHECK(bad.out.find("--precision") != std::string::npos);
    CHECK(bad.out.find("fp16") != std::string::npos);
}

TEST_CASE("eval loss, sample and bench run in bf16, or name --precision where bf16 is missing") {
    Workdir w;
    make_model_and_shard(w, 1000);
    const std::string loss =
        "eval loss --model " + (w / "model.bin") + " --data " + (w / "shard.bin") + " --seq 16";
    const Run fp32 = run(loss);
    const Run bf16 = run(loss + " --precision bf16");
    INFO(bf16.out);
    REQUIRE(fp32.status == 0);
    if (!model::matmul_has_bf16() || !model::cpu_has_bf16()) {
        CHECK(bf16.status == 2);
        CHECK(count_lines(bf16.out) == 1);
        CHECK(bf16.out.starts_with("gpt2: error: --precision: bf16 needs"));
        return;
    }
    REQUIRE(bf16.status == 0);
    auto value = [](const std::string& out) {
        return std::stod(out.substr(out.find("loss ") + 5));
    };
    CHECK(value(bf16.out) == doctest::Approx(value(fp32.out)).epsilon(0.01));

    make_gpt2_vocab_model(w / "m.bin", 8);
    const Run sample = run("sample --model " + (w / "m.bin") +
                           " --tokenizer " TOKENIZER_DIR
                           " --max-tokens 8 --prompt-ids '15496 995' --ids --precision bf16");
    INFO(sample.out);
    CHECK(sample.status == 0);

    const std::string bench = "bench --model " + (w / "model.bin") +
                              " --batch 2 --seq 16 --steps 2 --warmup 1 --precision bf16";
    const Run measured = run(bench + " --json");
    INFO(measured.out);
    REQUIRE(measured.status == 0);
    const auto j = nlohmann::json::parse(measured.out);
    CHECK(j["precision"] == "bf16");
    CHECK(j["peak_gflops_fp32"].get<double>() > 0);
    CHECK(j["peak_gflops_bf16"].get<double>() > 0);
    CHECK(j["peak_gflops"] == j["peak_gflops_bf16"]);
    CHECK(j["mfu"].get<double>() > 0);
    CHECK(j["tok_per_s"].get<double>() > 0);
    const Run given = run(bench + " --forward-only --peak-gflops 100 --peak-gflops-bf16 200");
    INFO(given.out);
    REQUIRE(given.status == 0);
    CHECK(given.out.find("forward only, bf16, matmul") != std::string::npos);
    CHECK(given.out.find("% MFU of the bf16 peak") != std::string::npos);
    CHECK(given.out.find("peak fp32 100 GFLOP/s (given), bf16 200 GFLOP/s (given)\n") !=
          std::string::npos);
    CHECK(given.out.find("time per step (mean): matmul") != std::string::npos);
}

namespace {

// A run of the program that coreutils' timeout ends after a minute: a hang shows as
// status 124 instead of a test that never ends.
Run run_within_a_minute(const std::string& args) {
    const std::string cmd = "timeout 60 " GPT2_BINARY " " + args + " 2>&1";
    return run_shell(cmd);
}

// Every failure: one line on standard error, "gpt2: error: ", the status given.
void check_one_line_error(const Run& r, int status, const std::string& part) {
    INFO(r.out);
    CHECK(r.status == status);
    CHECK(count_lines(r.out) == 1);
    CHECK(r.out.starts_with("gpt2: error: "));
    CHECK(r.out.find(part) != std::string::npos);
    if (status == 2) CHECK(r.out.ends_with(" --help')\n"));
}

} // namespace

TEST_CASE("command-line parse errors are one line and exit 2 with a hint; --help exits 0") {
    const std::pair<std::string, std::string> cases[] = {
        {"train --bogus --train-data x --steps 1",
         "gpt2: error: --bogus: unknown option (see 'gpt2 train --help')\n"},
        {"", "gpt2: error: command: a command is needed: train"},
        {"nosuch", "gpt2: error: nosuch: unknown command"},
        {"eval", "gpt2: error: eval: a command is needed: loss, grads, ppl, lambada, cbt"},
        {"eval ppl --model m.bin --data t.txt --batch abc",
         "gpt2: error: --batch: 'abc' is not an integer (see 'gpt2 eval ppl --help')\n"},
        {"eval ppl --data t.txt", "gpt2: error: --model: is required"},
        {"eval ppl --model m.bin --data t.txt --batch", "gpt2: error: --batch: needs a value"},
        {"train --train-data x --steps 1 --epochs 2",
         "gpt2: error: --steps: cannot be given with --epochs"},
        {"train --train-data x --steps 1 --steps 2",
         "gpt2: error: --steps: is given more than once"},
        {"convert a.bin", "gpt2: error: output: is required (see 'gpt2 convert --help')\n"},
        {"convert a.bin b.bin c.bin", "gpt2: error: c.bin: unexpected argument"},
        {"train --shuffle maybe --train-data x --steps 1", "gpt2: error: --shuffle: maybe"},
    };
    for (const auto& entry : cases) {
        const auto& args = std::get<0>(entry);
        const auto& expected = std::get<1>(entry);
        const Run r = run(args);
        INFO(args);
        check_one_line_error(r, 2, expected);
        CHECK(r.out.starts_with(expected));
    }
    const Run help = run("eval ppl --help");
    CHECK(help.status == 0);
    CHECK(help.out.find("--context") != std::string::npos);
}

TEST_CASE("option values out of range are refused before any work, and --help states ranges") {
    Workdir w;
    make_gpt2_vocab_model(w / "m.bin", 3);
    std::ofstream(w / "text.txt") << "Some words to score, and a few more words after them.\n";
    const std::string train =
        "train --model d6 --train-data '" + (w / "none_*.bin") + "' --steps 1";
    const std::string ppl = "eval ppl --model " + (w / "m.bin") + " --tokenizer " TOKENIZER_DIR +
                            " --data " + (w / "text.txt");
    const std::string sample =
        "sample --model " + (w / "m.bin") + " --tokenizer " TOKENIZER_DIR " --max-tokens 4";
    const std::pair<std::string, std::string> cases[] = {
        {ppl + " --context 0", "--context: must be at least 1, got 0"},
        {ppl + " --stride -3", "--stride: must be at least 1, got -3"},
        {ppl + " --context 16 --stride 40", "--stride: must be at most --context (16), got 40"},
        {ppl + " --stride 40", "--stride: must be at most the context (32), got 40"},
        {ppl + " --max-tokens -1", "--max-tokens: must be at least 0, got -1"},
        {train + " --beta1 2", "--beta1: must be in [0, 1), got 2"},
        {train + " --beta2 nan", "--beta2: must be in [0, 1), got nan"},
        {train + " --eps 0", "--eps: must be positive, got 0"},
        {train + " --weight-decay -0.1", "--weight-decay: must be at least 0, got -0.1"},
        {train + " --grad-clip -1", "--grad-clip: must be at least 0, got -1"},
        {train + " --keep -1", "--keep: must be at least 0, got -1"},
        {train + " --lr -1", "--lr: must be at least 0, got -1"},
        {train + " --lr nan", "--lr: must be at least 0, got nan"},
        {"train --model d6 --train-data x --epochs inf", "--epochs: must be positive, got inf"},
        {train + " --batch 0", "--batch: must be positive, got 0"},
        {train + " --seq 0", "--seq: must be at least 1, got 0"},
        {train + " --sample-temperature nan", "--sample-temperature: must be at least 0, got nan"},
        {train + " --zero 2", "--zero: 2 not in {0,1,auto}"},
        {sample + " --temperature nan", "--temperature: must be at least 0, got nan"},
        {sample + " --top-p nan", "--top-p: must be in (0, 1], got nan"},
        {sample + " --top-p 2", "--top-p: must be in (0, 1], got 2"},
        {sample + " --top-k -1", "--top-k: must be at least 0, got -1"},
        {sample + " --seed -1",
         "--seed: must be a whole number in [0, 18446744073709551615], got -1"},
        {train + " --seed 18446744073709551616",
         "--seed: must be a whole number in [0, 18446744073709551615], got 18446744073709551616"},
        {"eval loss --model m.bin --data s.bin --batch 0", "--batch: must be positive, got 0"},
        {"tokenize --input a.txt --output o --shard-tokens 0",
         "--shard-tokens: must be at least 1, got 0"},
        // Settings that would be ignored without a word.
        {train + " --eval-every 1", "--eval-every: runs the --eval evaluators: none given"},
        {train + " --total-batch-tokens 16 --grad-accum 3",
         "--grad-accum: is set by --total-batch-tokens: give one of the two"},
        {"tokenize --input " + (w / "text.txt") + " --output " + (w / "o.bin") +
             " --val-tokens 5 --tokenizer " TOKENIZER_DIR,
         "--val-tokens: needs a prefix as the output: one .bin shard holds every token"},
    };
    for (const auto& entry : cases) {
        const auto& args = std::get<0>(entry);
        const auto& expected = std::get<1>(entry);
        INFO(args);
        check_one_line_error(run(args), 2, "gpt2: error: " + expected + " (see 'gpt2 ");
    }
    const Run help = run("train --help");
    CHECK(help.out.find("--beta1 FLOAT:[0, 1)") != std::string::npos);
    CHECK(help.out.find("--eps FLOAT:> 0") != std::string::npos);
    CHECK(help.out.find("--batch INT:> 0") != std::string::npos);
    CHECK(run("sample --help").out.find("--top-p FLOAT:(0, 1]") != std::string::npos);
}

TEST_CASE("a FIFO or a folder given as an input file is refused before it is opened") {
    Workdir w;
    make_model_and_shard(w, 1000);
    make_gpt2_vocab_model(w / "m.bin", 3);
    REQUIRE(mkfifo((w / "fifo.bin").c_str(), 0600) == 0);
    std::ofstream(w / "text.txt") << "Some words.\n";
    const std::string tok = " --tokenizer " TOKENIZER_DIR;
    const std::string cases[] = {
        "eval ppl --model " + (w / "m.bin") + tok + " --data " + (w / "fifo.bin"),
        "eval ppl --model " + (w / "fifo.bin") + tok + " --data " + (w / "text.txt"),
        "info " + (w / "fifo.bin"),
        "convert " + (w / "fifo.bin") + " " + (w / "out.h5"),
        "eval loss --model " + (w / "model.bin") + " --data " + (w / "fifo.bin"),
        "eval lambada --model " + (w / "m.bin") + tok + " --data " + (w / "fifo.bin"),
        "eval hellaswag " + (w / "fifo.bin") + " --model " + (w / "m.bin") + tok,
        "encode --input " + (w / "fifo.bin") + tok,
        "tokenize --input " + (w / "fifo.bin") + " --output " + (w / "o") + tok,
        "train --model " + (w / "model.bin") + " --train-data " + (w / "fifo.bin") +
            " --steps 1 --batch 1 --seq 8 --out " + (w / "run"),
    };
    for (const auto& args : cases) {
        INFO(args);
        check_one_line_error(run_within_a_minute(args), 1, "fifo.bin: ");
    }
    check_one_line_error(run("info " + w.dir.string()), 1, "is a folder, not a file");
    check_one_line_error(run("info " + (w / "missing.bin")), 1, "missing.bin: no such file");
}

TEST_CASE("an output that is one of the inputs is refused, and the input is left as it was") {
    Workdir w;
    make_model_and_shard(w, 1000);
    make_gpt2_vocab_model(w / "m.bin", 3);
    const std::string model = read_bytes(w / "model.bin"), m = read_bytes(w / "m.bin");
    const std::string tok = " --tokenizer " TOKENIZER_DIR;
    fs::create_directories(w / "sub");
    fs::copy_file(w / "shard.bin", w / "shard.1");
    std::ofstream(w / "shard") << "{\"step\": 1}\n";
    const std::string train = "train --model " + (w / "model.bin") + " --train-data " +
                              (w / "shard.bin") + " --steps 1 --batch 1 --seq 8 --out " +
                              (w / "run");
    const std::pair<std::string, std::string> cases[] = {
        {"convert " + (w / "model.bin") + " " + (w / "model.bin"), "output: "},
        {"convert " + (w / "model.bin") + " " + (w / "sub/../model.bin"), "output: "},
        {"eval grads --model " + (w / "model.bin") + " --data " + (w / "shard.bin") +
             " --batch 2 --seq 8 --out " + (w / "model.bin"),
         "--out: "},
        {"eval grads --model " + (w / "model.bin") + " --data " + (w / "shard.bin") +
             " --batch 2 --seq 8 --out " + (w / "shard.bin"),
         "--out: "},
        {"embed --model " + (w / "m.bin") + tok + " --input hello --out " + (w / "m.bin"),
         "--out: "},
        {"tokenize --input " + (w / "shard.bin") + " --output " + (w / "shard.bin") + tok,
         "--output: "},
        {"eval hellaswag " + (w / "model.bin") + " --model " + (w / "m.bin") + tok +
             " --per-example " + (w / "m.bin"),
         "--per-example: "},
        // The log is appended to, or set aside as LOG.1: never an input, nor a checkpoint.
        {train + " --log-file " + (w / "shard.bin"), "--log-file: "},
        {train + " --log-file " + (w / "model.bin"), "--log-file: "},
        // An old log LOG would be set aside as LOG.1, the training data here.
        {"train --model " + (w / "model.bin") + " --train-data " + (w / "shard.1") +
             " --steps 1 --batch 1 --seq 8 --out " + (w / "run") + " --log-file " + (w / "shard"),
         "--log-file: "},
        {train + " --log-file " + (w / "run/ckpt_00000001.h5"), "--log-file: "},
    };
    for (const auto& entry : cases) {
        const auto& args = std::get<0>(entry);
        const auto& option = std::get<1>(entry);
        INFO(args);
        check_one_line_error(run(args), 2, "gpt2: error: " + option);
    }
    CHECK(read_bytes(w / "model.bin") == model);
    CHECK(read_bytes(w / "m.bin") == m);
    CHECK(read_bytes(w / "shard.1") == read_bytes(w / "shard.bin"));
    CHECK(fs::exists(w / "shard"));
    // A checkpoint of the folder resumed from, written into another --out.
    REQUIRE(run(train).status == 0);
    const std::string ckpt = read_bytes(w / "run/ckpt_00000001.h5");
    check_one_line_error(run("train --train-data " + (w / "shard.bin") + " --steps 2 --batch 1 " +
                             "--seq 8 --resume " + (w / "run") + " --out " + (w / "run2") +
                             " --log-file " + (w / "run/ckpt_00000001.h5")),
                         2, "gpt2: error: --log-file: ");
    CHECK(read_bytes(w / "run/ckpt_00000001.h5") == ckpt);

    // Shards of a prefix that would replace an input.
    std::ofstream(w / "t.txt") << "Some text to tokenize.";
    REQUIRE(run("tokenize --input " + (w / "t.txt") + " --output " + (w / "out") + tok).status ==
            0);
    const std::string shard = read_bytes(w / "out_train_000000.bin");
    check_one_line_error(
        run("tokenize --input " + (w / "out_train_000000.bin") + " --output " + (w / "out") + tok),
        2, "--output: its shards would replace the input");
    CHECK(read_bytes(w / "out_train_000000.bin") == shard);

    // A safetensors file converted beside another: its config.json is an input.
    REQUIRE(run("convert " + (w / "model.bin") + " " + (w / "sub/a.safetensors")).status == 0);
    const std::string config = read_bytes(w / "sub/config.json");
    check_one_line_error(
        run("convert " + (w / "sub/a.safetensors") + " " + (w / "sub/b.safetensors")), 2,
        "config.json is the input");
    CHECK(read_bytes(w / "sub/config.json") == config);
    CHECK(!fs::exists(w / "sub/b.safetensors"));
}

TEST_CASE("embed takes inline text longer than a file name can be") {
    Workdir w;
    const auto config = model::make_config(1, 2, 16, 50257, 128); // room for the text
    model::GPT2<float> m(config);
    m.init_weights(9);
    model::write_llmc(w / "m.bin", config, m.params());
    std::string text;
    while (text.size() < 400) text += "many words ";
    const Run r = run("embed --model " + (w / "m.bin") + " --tokenizer " TOKENIZER_DIR +
                      " --input '" + text + "' --out " + (w / "e.h5"));
    INFO(r.out);
    CHECK(r.status == 0);
    CHECK(r.out.find("e.h5: 75 tokens x 16 channels") != std::string::npos); // 37 x 2 + " "
}

TEST_CASE("eval: an empty text, a one-word LAMBADA line and sample past the context") {
    Workdir w;
    make_gpt2_vocab_model(w / "m.bin", 3);
    const std::string with = " --model " + (w / "m.bin") + " --tokenizer " TOKENIZER_DIR;
    std::ofstream(w / "empty.txt");
    check_one_line_error(run("eval ppl" + with + " --data " + (w / "empty.txt")), 1,
                         "empty.txt: empty: there is no text to score");
    check_one_line_error(
        run("embed" + with + " --input " + (w / "empty.txt") + " --out " + (w / "e.h5")), 1,
        "empty.txt: empty: there is no text to embed");

    std::ofstream(w / "lambada.txt", std::ios::binary) << "hello\r\nthe cat sat\r\n";
    const Run lambada = run("eval lambada" + with + " --data " + (w / "lambada.txt") +
                            " --json --per-example " + (w / "items.jsonl"));
    INFO(lambada.out);
    REQUIRE(lambada.status == 0);
    const std::string items = read_bytes(w / "items.jsonl");
    CHECK(items.find("\"target\":\" hello\"") != std::string::npos);
    CHECK(items.find("\"target\":\" sat\"") != std::string::npos);
    check_one_line_error(run("eval lambada" + with + " --data " + (w / "lambada.txt") +
                             " --per-example " + (w / "lambada.txt")),
                         2, "--per-example: ");

    // 32 positions: a one-token prompt leaves room for 32 new tokens.
    const std::string sample = "sample" + with + " --prompt-ids 5 --ids --max-tokens ";
    const Run fits = run(sample + "32");
    INFO(fits.out);
    CHECK(fits.status == 0);
    std::istringstream in(fits.out);
    int count = 0;
    for (int id; in >> id;) ++count;
    CHECK(count == 32);
    check_one_line_error(run(sample + "33"), 2,
                         "--max-tokens: must be at most 32 after a prompt of 1 tokens");
}

TEST_CASE("train checks its evaluators, samples and memory before the first step") {
    Workdir w;
    make_model_and_shard(w, 5000);
    std::ofstream(w / "empty.txt");
    const std::string train = "train --model d6 --n-layer 1 --n-head 2 --n-embd 16 --max-seq 32 "
                              "--train-data " +
                              (w / "shard.bin") + " --steps 2 --out " + (w / "run");
    const std::pair<std::string, std::string> usage[] = {
        {" --sample-every 1 --sample-tokens 33", "--sample-tokens: must be at most the model's 32"},
        {" --batch 1 --seq 64", "--seq: must be at most the model's 32 positions"},
        {" --eval bogus", "--eval: unknown evaluator 'bogus'"},
    };
    for (const auto& entry : usage) {
        const auto& args = std::get<0>(entry);
        const auto& part = std::get<1>(entry);
        INFO(args);
        const Run r = run(train + args +
                          (args.find("--seq") != std::string::npos ? "" : " --batch 1 --seq 8"));
        check_one_line_error(r, 2, part);
        CHECK(r.out.find("step 1") == std::string::npos);
    }
    const std::pair<std::string, std::string> failures[] = {
        {" --eval ppl:" + (w / "empty.txt"), "empty.txt: empty: there is no text to score"},
        {" --eval ppl:" + (w / "missing.txt"), "missing.txt: no such file"},
        {" --eval lambada:" + (w / "empty.txt"), "empty.txt: no passages"},
        {" --sample-every 1", "none: no such folder"},
    };
    for (const auto& entry : failures) {
        const auto& args = std::get<0>(entry);
        const auto& part = std::get<1>(entry);
        INFO(args);
        const std::string tokenizer = args == " --sample-every 1" ? (w / "none") : TOKENIZER_DIR;
        const Run r = run(train + args + " --batch 1 --seq 8 --tokenizer " + tokenizer);
        check_one_line_error(r, 1, part);
        CHECK(!fs::exists(w / "run/ckpt_00000002.h5"));
    }
    // A model of another vocabulary cannot be sampled as GPT-2 text.
    const Run vocab = run("train --model " + (w / "model.bin") +
                          " --tokenizer " TOKENIZER_DIR " --train-data " + (w / "shard.bin") +
                          " --steps 1 --batch 1 --seq 8 --sample-every 1 --out " + (w / "run2"));
    check_one_line_error(vocab, 2, "--sample-every: samples are text of GPT-2's 50257 tokens");

    // Far more memory than any machine has: refused with the sizes, before allocating.
    // --recompute all is advised only where it is not in use already (it is the default).
    const Run memory = run(train + " --batch 200000000 --seq 8");
    check_one_line_error(memory, 1, "--batch: activations, gradients and AdamW moments for batch");
    CHECK(memory.out.find("GiB is available; lower --batch or --seq\n") != std::string::npos);
    const Run memory_gelu = run(train + " --batch 200000000 --seq 8 --recompute gelu");
    check_one_line_error(memory_gelu, 1, "--batch: activations, gradients and AdamW moments for");
    CHECK(memory_gelu.out.find("GiB is available; lower --batch or --seq, or use --recompute "
                               "all") != std::string::npos);
    const Run eval_memory = run("eval loss --model " + (w / "model.bin") + " --data " +
                                (w / "shard.bin") + " --batch 100000000 --seq 16");
    check_one_line_error(eval_memory, 1, "--batch: activations for batch 100000000 x seq 16 need");
    // A preset too large for the machine: refused before its weights are initialised.
    const Run huge = run_within_a_minute("train --model gpt2-xl --n-layer 4096 --train-data " +
                                         (w / "shard.bin") + " --steps 1 --out " + (w / "run3"));
    check_one_line_error(huge, 1, "--model: weights, gradients and AdamW moments of gpt2-xl need");
    CHECK(huge.out.find("; use a smaller model") != std::string::npos);
}
