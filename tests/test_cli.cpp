// The gpt2 program end to end: exit codes, output lines, one-line errors.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
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
        CHECK(r.out.find("shard.bin: holds 3 batches") != std::string::npos);
    }
    SUBCASE("a sequence longer than the model's context") {
        const Run r = run("eval loss --model " + (w / "model.bin") + " --data " +
                          (w / "shard.bin") + " --batch 1 --seq 32");
        CHECK(r.status == 1);
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
    CHECK(bad.status == 1);
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
        {train + " --lr -1", "gpt2: error: --lr: must be at least 0, got -1\n"},
        {train + " --beta1 2", "gpt2: error: --beta1: must be in [0, 1), got 2\n"},
        {train + " --eval nonsense", "gpt2: error: --eval: unknown evaluator 'nonsense'"},
        {train + " --n-layer 0 --n-head -1", "gpt2: error: --n-head: must be at least 0"},
        {ppl + " --batch 0", "gpt2: error: --batch: must be positive\n"},
        {ppl + " --context 33", "gpt2: error: --context: must be in 1..32"},
    };
    for (const auto& [args, expected] : cases) {
        const Run r = run(args);
        INFO(args);
        INFO(r.out);
        CHECK(r.status == 1);
        CHECK(count_lines(r.out) == 1);
        CHECK(r.out.starts_with(expected));
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
        CHECK(bf16.status == 1);
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
