#include <doctest/doctest.h>

#include "helpers.h"

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <functional>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "model/io.h"
#include "model/layout.h"
#include "model/safetensors.h"

namespace {

using testing::read_bytes;
using testing::Workdir;

const std::string kHfDir = std::string(SHARED_DATA_DIR) + "/hf-tiny-gpt2";

// One tensor as a safetensors file stores it.
struct Tensor {
    std::string name, dtype;
    std::vector<int64_t> shape;
    std::string bytes;
};

template <class T> std::string raw(const std::vector<T>& v) {
    return {reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T)};
}

// The format, written by hand: uint64 header length, JSON header, then the data.
std::string safetensors_bytes(const std::vector<Tensor>& tensors) {
    std::string header = R"({"__metadata__":{"format":"pt"})", data;
    for (const Tensor& t : tensors) {
        header += ",\"" + t.name + "\":{\"dtype\":\"" + t.dtype + "\",\"shape\":[";
        for (size_t i = 0; i < t.shape.size(); ++i)
            header += (i ? "," : "") + std::to_string(t.shape[i]);
        header += "],\"data_offsets\":[" + std::to_string(data.size()) + "," +
                  std::to_string(data.size() + t.bytes.size()) + "]}";
        data += t.bytes;
    }
    header += "}";
    return raw(std::vector<uint64_t>{header.size()}) + header + data;
}

// Every GPT-2 tensor of c under its HF name and shape (Conv1D (in, out); wte with V
// rows), with n elements of data from bytes(tensor, n).
std::vector<Tensor>
hf_tensors(const model::Config& c, const std::string& dtype,
           const std::function<std::string(const model::TensorInfo&, size_t)>& bytes,
           const std::string& prefix = "") {
    std::vector<Tensor> out;
    const model::ParamLayout layout(c);
    for (const model::TensorInfo& t : layout.tensors()) {
        std::vector<int64_t> shape = t.shape;
        if (t.hf_transposed) std::swap(shape[0], shape[1]);
        if (t.group == model::kWte) shape[0] = c.vocab;
        size_t n = 1;
        for (int64_t d : shape) n *= size_t(d);
        out.push_back({prefix + t.name, dtype, shape, bytes(t, n)});
    }
    return out;
}

// F32 tensors holding params (our layout), as HF stores them.
std::vector<Tensor> hf_tensors(const model::Config& c, const std::vector<float>& params,
                               const std::string& prefix = "") {
    return hf_tensors(
        c, "F32",
        [&](const model::TensorInfo& t, size_t n) {
            std::vector<float> v(params.begin() + ptrdiff_t(t.offset),
                                 params.begin() + ptrdiff_t(t.offset + n));
            if (t.hf_transposed) {
                const size_t rows = size_t(t.shape[0]), cols = size_t(t.shape[1]);
                for (size_t r = 0; r < rows; ++r)
                    for (size_t k = 0; k < cols; ++k)
                        v[k * rows + r] = params[t.offset + r * cols + k];
            }
            return raw(v);
        },
        prefix);
}

std::string config_json(const model::Config& c, const std::string& extra = "") {
    return "{\"n_layer\": " + std::to_string(c.n_layer) +
           ", \"n_head\": " + std::to_string(c.n_head) +
           ", \"n_embd\": " + std::to_string(c.n_embd) +
           ", \"vocab_size\": " + std::to_string(c.vocab) +
           ", \"n_positions\": " + std::to_string(c.max_seq) + extra + "}";
}

void write_text(const std::string& path, const std::string& bytes) {
    std::ofstream(path, std::ios::binary).write(bytes.data(), std::streamsize(bytes.size()));
}

// A model folder: dir/model.safetensors and dir/config.json. Returns the model's path.
std::string write_folder(const Workdir& dir, const std::vector<Tensor>& tensors,
                         const std::string& config) {
    write_text(dir / "config.json", config);
    write_text(dir / "model.safetensors", safetensors_bytes(tensors));
    return dir / "model.safetensors";
}

// L1 NH1 C2 V3 (Vp128) T2: every kind of tensor in a few bytes.
model::Config tiny_config() {
    return model::make_config(1, 1, 2, 3, 2);
}

// Distinct values, padded wte rows zero (they are not stored in safetensors).
std::vector<float> pattern(const model::Config& c) {
    const model::ParamLayout layout(c);
    std::vector<float> p(layout.total());
    for (size_t i = 0; i < p.size(); ++i) p[i] = 0.001f * float(i) - 3.0f;
    std::fill(p.begin() + ptrdiff_t(size_t(c.vocab) * size_t(c.n_embd)),
              p.begin() + ptrdiff_t(layout.group_size(model::kWte)), 0.0f);
    return p;
}

// The message is one line that starts with `where` and contains `what`.
void check_rejected(const std::string& path, const std::string& where, const std::string& what) {
    std::string message = "(no error)";
    try {
        model::read_model(path);
    } catch (const std::runtime_error& e) {
        message = e.what();
    }
    INFO(message);
    CHECK(message.rfind(where + ": ", 0) == 0);
    CHECK(message.find(what) != std::string::npos);
    CHECK(message.find('\n') == std::string::npos);
}

// Element (r, c) of our (rows, cols) tensor `name`.
float at(const model::ModelFile& m, const std::string& name, size_t r, size_t c = 0) {
    const model::ParamLayout layout(m.config);
    const model::TensorInfo& t = layout.find(name);
    const size_t cols = t.shape.size() > 1 ? size_t(t.shape[1]) : 1;
    return m.params[t.offset + r * cols + c];
}

bool padded_rows_zero(const model::ModelFile& m) {
    const model::Config& c = m.config;
    for (size_t i = size_t(c.vocab) * size_t(c.n_embd);
         i < size_t(c.padded_vocab) * size_t(c.n_embd); ++i)
        if (m.params[i] != 0.0f) return false;
    return true;
}

} // namespace

// Expected values printed by numpy from the raw files (json header + np.frombuffer).
TEST_CASE("safetensors reads sshleifer/tiny-gpt2 with transposed Conv1D weights and padded wte") {
    const auto m = model::read_model(kHfDir + "/sshleifer-tiny-gpt2/model.safetensors");
    CHECK(m.config == model::make_config(2, 2, 2, 50257, 1024));
    CHECK(m.config.padded_vocab == 50304);
    CHECK(at(m, "wte.weight", 50256, 1) == -0.0182080399f);
    CHECK(at(m, "wpe.weight", 3, 0) == -0.0237869658f);
    CHECK(at(m, "ln_f.weight", 0) == 1.0f);
    // HF's Conv1D (in, out) element (i, j) is our (out, in) element (j, i).
    CHECK(at(m, "h.1.attn.c_attn.weight", 4, 1) == 0.00608842913f);
    CHECK(at(m, "h.0.mlp.c_proj.weight", 1, 7) == 0.012153131f);
    CHECK(padded_rows_zero(m));
}

TEST_CASE("safetensors reads tiny-random-gpt2 (5 layers, n_positions 512)") {
    const auto m = model::read_model(kHfDir + "/tiny-random-gpt2-derived/model.safetensors");
    CHECK(m.config == model::make_config(5, 4, 32, 1000, 512));
    CHECK(m.config.padded_vocab == 1024);
    CHECK(at(m, "wte.weight", 999, 31) == -0.00417578919f);
    CHECK(at(m, "wpe.weight", 511, 0) == -0.0398047455f);
    CHECK(at(m, "h.4.mlp.c_fc.weight", 100, 5) == 0.0121232737f);
    CHECK(at(m, "h.2.attn.c_attn.weight", 70, 31) == 0.0162295178f);
    CHECK(padded_rows_zero(m));
}

TEST_CASE("safetensors written then read gives back the config and parameters") {
    Workdir dir;
    const model::Config c = model::make_config(2, 2, 16, 64, 8);
    std::vector<float> p = pattern(c);
    std::fill(p.begin() + 64 * 16, p.begin() + 128 * 16, 7.0f); // padding is not written
    const std::string path = dir / "model.safetensors";
    model::write_model(path, c, p.data());

    const auto m = model::read_model(path);
    CHECK(m.config == c);
    REQUIRE(m.params.size() == p.size());
    std::fill(p.begin() + 64 * 16, p.begin() + 128 * 16, 0.0f);
    CHECK(m.params == p);

    // The layout: data 8-byte aligned, header padded with spaces, F32 tensors in name
    // order, wte with V rows only.
    const std::string bytes = read_bytes(path);
    uint64_t n = 0;
    std::memcpy(&n, bytes.data(), sizeof n);
    const std::string header = bytes.substr(8, n);
    CHECK((8 + n) % 8 == 0);
    CHECK(bytes.size() == 8 + n + 4 * model::ParamLayout(c).count_unpadded());
    CHECK(header.find(R"("__metadata__":{"format":"pt"})") != std::string::npos);
    CHECK(header.find(
              R"("h.0.attn.c_attn.bias":{"data_offsets":[0,192],"dtype":"F32","shape":[48]})") !=
          std::string::npos);
    CHECK(header.find(R"("wte.weight":{"data_offsets":)") != std::string::npos);
    CHECK(header.find(R"("shape":[64,16]})") != std::string::npos);
    CHECK(header.find(R"("h.1.mlp.c_fc.weight":{"data_offsets":)") <
          header.find(R"("wpe.weight")"));

    const std::string config = read_bytes(dir / "config.json");
    for (const char* key :
         {R"("model_type": "gpt2")", R"("GPT2LMHeadModel")", R"("n_layer": 2)", R"("n_embd": 16)",
          R"("vocab_size": 64)", R"("n_positions": 8)", R"("n_ctx": 8)",
          R"("layer_norm_epsilon": 1e-05)", R"("activation_function": "gelu_new")",
          R"("tie_word_embeddings": true)"})
        CHECK_MESSAGE(config.find(key) != std::string::npos, key);
    CHECK(config.find("eos_token_id") == std::string::npos); // only for GPT-2's own vocab
}

TEST_CASE("safetensors .bin -> .safetensors -> .bin reproduces the bytes") {
    Workdir dir;
    const model::Config c = model::make_config(2, 2, 16, 64, 8);
    model::write_model(dir / "a.bin", c, pattern(c).data());
    const auto a = model::read_model(dir / "a.bin");
    model::write_model(dir / "m.safetensors", a.config, a.params.data());
    const auto s = model::read_model(dir / "m.safetensors");
    model::write_model(dir / "b.bin", s.config, s.params.data());
    CHECK(read_bytes(dir / "a.bin") == read_bytes(dir / "b.bin"));
}

TEST_CASE("safetensors F16 converts exactly: subnormals, negative zero, inf and NaN") {
    Workdir dir;
    const model::Config c = tiny_config();
    auto tensors = hf_tensors(c, "F16", [](const model::TensorInfo& t, size_t n) {
        std::vector<uint16_t> v(n, 0x3800); // 0.5
        if (t.name == "wte.weight") v = {0x0001, 0x8000, 0x3c00, 0xc000, 0x7c00, 0x03ff};
        if (t.name == "wpe.weight") v = {0x7e00, 0xfc00, 0x7bff, 0x3555};
        return raw(v);
    });
    const auto m = model::read_model(write_folder(dir, tensors, config_json(c)));
    CHECK(at(m, "wte.weight", 0, 0) == std::ldexp(1.0f, -24)); // smallest subnormal
    CHECK(at(m, "wte.weight", 0, 1) == 0.0f);
    CHECK(std::signbit(at(m, "wte.weight", 0, 1)));
    CHECK(at(m, "wte.weight", 1, 0) == 1.0f);
    CHECK(at(m, "wte.weight", 1, 1) == -2.0f);
    CHECK(at(m, "wte.weight", 2, 0) == std::numeric_limits<float>::infinity());
    CHECK(at(m, "wte.weight", 2, 1) == 1023.0f * std::ldexp(1.0f, -24)); // largest subnormal
    CHECK(std::isnan(at(m, "wpe.weight", 0, 0)));
    CHECK(at(m, "wpe.weight", 0, 1) == -std::numeric_limits<float>::infinity());
    CHECK(at(m, "wpe.weight", 1, 0) == 65504.0f);
    CHECK(at(m, "wpe.weight", 1, 1) == 0.333251953125f);
    CHECK(at(m, "h.0.attn.c_attn.weight", 5, 1) == 0.5f);
    CHECK(at(m, "ln_f.bias", 1) == 0.5f);
    CHECK(padded_rows_zero(m));
}

TEST_CASE("safetensors BF16 converts exactly as the top half of a float") {
    Workdir dir;
    const model::Config c = tiny_config();
    auto tensors = hf_tensors(c, "BF16", [](const model::TensorInfo& t, size_t n) {
        std::vector<uint16_t> v(n, 0x3f00); // 0.5
        if (t.name == "wte.weight") v = {0x3f80, 0xc040, 0x0001, 0x8000, 0x7f80, 0x4049};
        return raw(v);
    });
    const auto m = model::read_model(write_folder(dir, tensors, config_json(c)));
    CHECK(at(m, "wte.weight", 0, 0) == 1.0f);
    CHECK(at(m, "wte.weight", 0, 1) == -3.0f);
    CHECK(at(m, "wte.weight", 1, 0) == std::bit_cast<float>(0x00010000u)); // subnormal
    CHECK(at(m, "wte.weight", 1, 1) == 0.0f);
    CHECK(std::signbit(at(m, "wte.weight", 1, 1)));
    CHECK(at(m, "wte.weight", 2, 0) == std::numeric_limits<float>::infinity());
    CHECK(at(m, "wte.weight", 2, 1) == 3.140625f);
    CHECK(at(m, "h.0.mlp.c_proj.bias", 0) == 0.5f);
}

TEST_CASE(
    "safetensors with the transformer. prefix, mask buffers and a tied lm_head reads the same") {
    Workdir dir;
    const model::Config c = tiny_config();
    const auto p = pattern(c);
    auto tensors = hf_tensors(c, p, "transformer.");
    const std::vector<float> wte(p.begin(), p.begin() + 3 * 2), mask(4, 1.0f);
    tensors.push_back({"lm_head.weight", "F32", {3, 2}, raw(wte)});
    tensors.push_back({"transformer.h.0.attn.bias", "F32", {1, 1, 2, 2}, raw(mask)});
    tensors.push_back(
        {"transformer.h.0.attn.masked_bias", "F32", {}, raw(std::vector<float>{-1e4f})});
    const auto m =
        model::read_model(write_folder(dir, tensors, config_json(c, R"(, "n_ctx": 99)")));
    CHECK(m.config == c);
    CHECK(m.params == p);
}

TEST_CASE("safetensors falls back to n_ctx and accepts gelu_pytorch_tanh") {
    Workdir dir;
    const model::Config c = tiny_config();
    const std::string config =
        R"({"n_layer": 1, "n_head": 1, "n_embd": 2, "vocab_size": 3, "n_ctx": 2,
        "layer_norm_epsilon": 1e-05, "activation_function": "gelu_pytorch_tanh"})";
    const auto m = model::read_model(write_folder(dir, hf_tensors(c, pattern(c)), config));
    CHECK(m.config == c);
}

TEST_CASE("safetensors files that are damaged or unsupported are rejected naming the file") {
    Workdir dir;
    const model::Config c = tiny_config();
    const auto p = pattern(c);
    const std::string path = dir / "model.safetensors", cfg = dir / "config.json";
    auto tensors = hf_tensors(c, p);
    auto find = [&](const std::string& name) -> Tensor& {
        for (Tensor& t : tensors)
            if (t.name == name) return t;
        throw std::logic_error(name);
    };

    SUBCASE("lm_head differs from wte") {
        tensors.push_back({"lm_head.weight", "F32", {3, 2}, raw(std::vector<float>(6, 0.25f))});
        write_folder(dir, tensors, config_json(c));
        check_rejected(path, path, "lm_head.weight differs from wte.weight");
    }
    SUBCASE("missing tensor") {
        tensors.erase(tensors.begin() + 2);
        write_folder(dir, tensors, config_json(c));
        check_rejected(path, path, "missing tensor 'h.0.ln_1.weight'");
    }
    SUBCASE("wrong shape") {
        find("h.0.ln_1.weight") = {"h.0.ln_1.weight", "F32", {3}, raw(std::vector<float>(3))};
        write_folder(dir, tensors, config_json(c));
        check_rejected(path, path, "tensor 'h.0.ln_1.weight' has shape [3], expected [2]");
    }
    SUBCASE("wte with the padded rows") {
        find("wte.weight").shape[0] = 128;
        find("wte.weight").bytes = raw(std::vector<float>(128 * 2));
        write_folder(dir, tensors, config_json(c));
        check_rejected(path, path, "tensor 'wte.weight' has shape [128, 2], expected [3, 2]");
    }
    SUBCASE("data_offsets that disagree with the shape") {
        find("ln_f.bias").bytes += "abcd";
        write_folder(dir, tensors, config_json(c));
        check_rejected(path, path, "tensor 'ln_f.bias' has data_offsets");
    }
    SUBCASE("unsupported dtype") {
        find("wpe.weight") = {"wpe.weight", "F64", {2, 2}, raw(std::vector<double>(4))};
        write_folder(dir, tensors, config_json(c));
        check_rejected(path, path, "tensor 'wpe.weight' has dtype F64");
    }
    SUBCASE("unknown tensor") {
        tensors.push_back({"score.weight", "F32", {1}, raw(std::vector<float>(1))});
        write_folder(dir, tensors, config_json(c));
        check_rejected(path, path, "tensor 'score.weight' is not a GPT-2 parameter");
    }
    SUBCASE("truncated data") {
        write_folder(dir, tensors, config_json(c));
        std::string bytes = read_bytes(path);
        write_text(path, bytes.substr(0, bytes.size() - 4));
        check_rejected(path, path, "truncated");
    }
    SUBCASE("bad header length") {
        write_folder(dir, tensors, config_json(c));
        std::string bytes = read_bytes(path);
        const uint64_t n = bytes.size();
        std::memcpy(bytes.data(), &n, sizeof n);
        write_text(path, bytes);
        check_rejected(path, path, "bad header length");
    }
    SUBCASE("too short") {
        write_text(cfg, config_json(c));
        write_text(path, "abc");
        check_rejected(path, path, "too short");
    }
    SUBCASE("header not JSON") {
        write_text(cfg, config_json(c));
        write_text(path, raw(std::vector<uint64_t>{4}) + "{{{{");
        check_rejected(path, path, "header is not a JSON object");
    }
    SUBCASE("missing config.json") {
        write_text(path, safetensors_bytes(tensors));
        check_rejected(path, path, cfg);
    }
    SUBCASE("LayerNorm eps other than 1e-5") {
        write_folder(dir, tensors, config_json(c, R"(, "layer_norm_epsilon": 1e-6)"));
        check_rejected(path, cfg, "layer_norm_epsilon");
    }
    SUBCASE("erf GELU") {
        write_folder(dir, tensors, config_json(c, R"(, "activation_function": "gelu")"));
        check_rejected(path, cfg, "activation_function \"gelu\" is not supported");
    }
    SUBCASE("config without n_embd") {
        write_folder(dir, tensors,
                     R"({"n_layer": 1, "n_head": 1, "vocab_size": 3, "n_positions": 2})");
        check_rejected(path, cfg, "missing 'n_embd'");
    }
}

TEST_CASE("safetensors whose tensors overlap, leave a gap or disagree with dtype x shape are "
          "rejected naming the file") {
    Workdir dir;
    const model::Config c = tiny_config();
    const std::string good = safetensors_bytes(hf_tensors(c, pattern(c)));
    uint64_t n = 0;
    std::memcpy(&n, good.data(), sizeof n);
    const auto header = nlohmann::json::parse(good.substr(8, n));
    const std::string path = dir / "model.safetensors";
    write_text(dir / "config.json", config_json(c));
    // The good file with `name`'s data_offsets moved by `shift` bytes, or its shape set.
    auto edited = [&](const std::string& name, int64_t shift, const nlohmann::json& shape) {
        nlohmann::json h = header;
        auto& offsets = h[name]["data_offsets"];
        offsets = {offsets[0].get<int64_t>() + shift, offsets[1].get<int64_t>() + shift};
        if (!shape.is_null()) h[name]["shape"] = shape;
        const std::string text = h.dump();
        write_text(path, raw(std::vector<uint64_t>{text.size()}) + text + good.substr(8 + n));
    };
    edited("wte.weight", 0, nullptr);
    CHECK(model::read_model(path).config == c);

    // Tensors in name order: h.0.attn.c_attn.bias comes first in the data.
    SUBCASE("overlapping") {
        edited("h.0.attn.c_attn.weight", -4, nullptr);
        check_rejected(path, path, "(overlapping tensors)");
    }
    SUBCASE("a gap") {
        edited("wte.weight", 4, nullptr);
        check_rejected(path, path, "(a gap)");
    }
    SUBCASE("out of bounds") {
        edited("wte.weight", int64_t(good.size()), nullptr);
        check_rejected(path, path, "starts at data byte");
    }
    SUBCASE("shape x dtype is not the byte length") {
        edited("wpe.weight", 0, {2, 1});
        check_rejected(path, path, "expected a span of 8 bytes");
    }
}

TEST_CASE("a safetensors file is not written beside another model's config.json, nor when "
          "config.json cannot be replaced, and nothing is touched then") {
    testing::Workdir w;
    const auto a = model::make_config(1, 1, 8, 64, 16), b = model::make_config(1, 2, 16, 64, 16);
    const std::vector<float> pa(model::ParamLayout(a).total(), 0.5f),
        pb(model::ParamLayout(b).total(), 0.25f);
    model::write_safetensors(w / "a.safetensors", a, pa.data());
    const std::string a_bytes = read_bytes(w / "a.safetensors"),
                      config = read_bytes(w / "config.json");
    CHECK_THROWS_WITH_AS(model::write_safetensors(w / "b.safetensors", b, pb.data()),
                         doctest::Contains("config.json: holds another model's config (L1 NH1 C8"),
                         std::runtime_error);
    CHECK(!std::filesystem::exists(w / "b.safetensors"));
    CHECK(read_bytes(w / "config.json") == config);
    // The same model again, under another name: its config is the folder's already.
    model::write_safetensors(w / "c.safetensors", a, pa.data());
    CHECK(read_bytes(w / "c.safetensors") == a_bytes);
    CHECK(model::read_model(w / "a.safetensors").config == a);

    std::filesystem::create_directories(w / "sub/config.json");
    std::ofstream(w / "sub/x.safetensors") << "precious";
    CHECK_THROWS_WITH_AS(model::write_safetensors(w / "sub/x.safetensors", a, pa.data()),
                         doctest::Contains("config.json: is a folder"), std::runtime_error);
    CHECK(read_bytes(w / "sub/x.safetensors") == "precious");
}
