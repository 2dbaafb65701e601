#include "model/safetensors.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <stdexcept>
#include <tuple>
#include <unordered_set>
#include <vector>

#include "base/error.h"
#include "base/file.h"
#include "model/layout.h"

namespace model {

namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

// The format is little-endian; we read and write it raw.
static_assert(std::endian::native == std::endian::little);

constexpr uint64_t kMaxHeaderBytes = 100'000'000;

std::string config_path(const std::string& path) {
    return (fs::path(path).parent_path() / "config.json").string();
}

using Shape = std::vector<uint64_t>;

std::string shape_text(const Shape& shape) {
    std::string s = "[";
    for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
    return s + "]";
}

uint64_t elements(const Shape& shape) {
    uint64_t n = 1;
    for (uint64_t d : shape) n *= d;
    return n;
}

// HF's shape: Conv1D weights are (in, out), the transpose of ours; wte has V rows, not Vp.
Shape hf_shape(const TensorInfo& t, const Config& c) {
    if (t.hf_transposed) return {uint64_t(t.shape[1]), uint64_t(t.shape[0])};
    if (t.group == kWte) return {uint64_t(c.vocab), uint64_t(c.n_embd)};
    return {t.shape.begin(), t.shape.end()};
}

// IEEE half, exactly: subnormals are man * 2^-24; inf and NaN keep their payload.
float f16_to_float(uint16_t h) {
    const uint32_t sign = uint32_t(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff;
    if (exp == 0x1f) return std::bit_cast<float>(sign | 0x7f800000u | man << 13);
    const float mag =
        exp == 0 ? std::ldexp(float(man), -24) : std::ldexp(float(man | 0x400), int(exp) - 25);
    return sign ? -mag : mag;
}

// bf16 is the top half of an fp32.
float bf16_to_float(uint16_t h) {
    return std::bit_cast<float>(uint32_t(h) << 16);
}

// ---- config.json ----

int config_int(const json& j, const std::string& key, const std::string& cfg) {
    const auto it = j.find(key);
    if (it == j.end()) throw base::FileError(cfg, "missing '" + key + "'");
    if (!it->is_number_integer() || it->get<int64_t>() < 1 || it->get<int64_t>() > (1 << 30))
        throw base::FileError(cfg,
                              "'" + key + "' is " + it->dump() + ", expected a positive integer");
    return int(it->get<int64_t>());
}

Config read_hf_config(const std::string& model_path) {
    const std::string cfg = config_path(model_path);
    std::ifstream in(cfg);
    if (!in)
        throw base::FileError(model_path,
                              "cannot open its config " + cfg + " (" + base::errno_text() + ")");
    const json j = json::parse(in, nullptr, false);
    if (j.is_discarded() || !j.is_object()) throw base::FileError(cfg, "not a JSON object");

    Config c;
    c.n_layer = config_int(j, "n_layer", cfg);
    c.n_head = config_int(j, "n_head", cfg);
    c.n_embd = config_int(j, "n_embd", cfg);
    c.vocab = config_int(j, "vocab_size", cfg);
    c.max_seq = config_int(j, j.contains("n_positions") ? "n_positions" : "n_ctx", cfg);
    c.padded_vocab = pad_vocab(c.vocab);
    check_file_config(cfg, c);
    // Variants of GPT-2 we do not implement must not load silently.
    if (const auto eps = j.find("layer_norm_epsilon");
        eps != j.end() && !(eps->is_number() && std::abs(eps->get<double>() - 1e-5) < 1e-12))
        throw base::FileError(cfg, "layer_norm_epsilon " + eps->dump() +
                                       " is not supported (only 1e-5)");
    if (const auto act = j.find("activation_function");
        act != j.end() && *act != "gelu_new" && *act != "gelu_pytorch_tanh")
        throw base::FileError(
            cfg, "activation_function " + act->dump() +
                     " is not supported (only the tanh GELU: gelu_new, gelu_pytorch_tanh)");
    if (j.contains("scale_attn_weights") && j["scale_attn_weights"] != true)
        throw base::FileError(cfg, "scale_attn_weights must be true");
    if (j.contains("scale_attn_by_inverse_layer_idx") &&
        j["scale_attn_by_inverse_layer_idx"] != false)
        throw base::FileError(cfg, "scale_attn_by_inverse_layer_idx must be false");
    return c;
}

void write_hf_config(const std::string& model_path, const Config& c) {
    nlohmann::ordered_json j = {
        {"model_type", "gpt2"},        {"architectures", {"GPT2LMHeadModel"}},
        {"n_layer", c.n_layer},        {"n_head", c.n_head},
        {"n_embd", c.n_embd},          {"vocab_size", c.vocab},
        {"n_positions", c.max_seq},    {"n_ctx", c.max_seq},
        {"layer_norm_epsilon", 1e-5},  {"activation_function", "gelu_new"},
        {"tie_word_embeddings", true},
    };
    if (c.vocab == 50257) j["bos_token_id"] = j["eos_token_id"] = 50256;
    const std::string cfg = config_path(model_path);
    base::write_atomically(cfg, [&](const std::string& tmp) {
        std::ofstream out(tmp);
        out << j.dump(2) << '\n';
        out.close();
        if (!out) throw base::FileError(cfg, "write failed (" + tmp + ")");
    });
}

// ---- the tensors ----

class Reader {
public:
    explicit Reader(const std::string& path) : path_(path), in_(path, std::ios::binary) {
        if (!in_) throw base::FileError(path, "cannot open (" + base::errno_text() + ")");
        std::error_code ec;
        const uint64_t size = fs::file_size(path, ec);
        if (ec) throw base::FileError(path, "cannot read (" + ec.message() + ")");
        uint64_t n = 0;
        if (size < sizeof n)
            throw base::FileError(path, "too short for a safetensors file (" +
                                            std::to_string(size) + " bytes)");
        in_.read(reinterpret_cast<char*>(&n), sizeof n);
        if (n > kMaxHeaderBytes || n > size - sizeof n)
            throw base::FileError(path, "bad header length " + std::to_string(n) +
                                            " (the file has " + std::to_string(size) + " bytes)");
        std::string text(n, '\0');
        if (!in_.read(text.data(), std::streamsize(n))) throw base::FileError(path, "read failed");
        header_ = json::parse(text, nullptr, false);
        if (header_.is_discarded() || !header_.is_object())
            throw base::FileError(path, "header is not a JSON object");
        data_start_ = sizeof n + n;
        data_size_ = size - data_start_;
        check_layout();
    }

    const json& header() const { return header_; }

    // Reads tensor `name`, which must have `shape`, into dst as float.
    void read(const std::string& name, const Shape& shape, float* dst) {
        const std::string what = "tensor '" + name + "'";
        const auto it = header_.find(name);
        if (it == header_.end()) throw base::FileError(path_, "missing " + what);
        if (!it->is_object()) throw base::FileError(path_, what + " is not a JSON object");
        const json& e = *it;

        const auto dtype_it = e.find("dtype");
        const std::string dtype =
            dtype_it != e.end() && dtype_it->is_string() ? dtype_it->get<std::string>() : "?";
        if (dtype != "F32" && dtype != "F16" && dtype != "BF16")
            throw base::FileError(path_,
                                  what + " has dtype " + dtype + " (supported: F32, F16, BF16)");
        const Shape stored = uints(e, "shape", what);
        if (stored != shape)
            throw base::FileError(path_, what + " has shape " + shape_text(stored) + ", expected " +
                                             shape_text(shape));
        const Shape offsets = uints(e, "data_offsets", what);
        const uint64_t itemsize = dtype == "F32" ? 4 : 2, bytes = elements(shape) * itemsize;
        if (offsets.size() != 2 || offsets[0] > offsets[1] || offsets[1] - offsets[0] != bytes)
            throw base::FileError(path_, what + " has data_offsets " + shape_text(offsets) +
                                             ", expected " + std::to_string(bytes) + " bytes for " +
                                             dtype + " " + shape_text(shape));
        if (offsets[1] > data_size_)
            throw base::FileError(path_, "truncated: " + what + " ends at data byte " +
                                             std::to_string(offsets[1]) + ", the file has " +
                                             std::to_string(data_size_));

        in_.seekg(std::streamoff(data_start_ + offsets[0]));
        const size_t n = elements(shape);
        if (dtype == "F32") {
            read_bytes(dst, bytes);
            return;
        }
        std::vector<uint16_t> half(n);
        read_bytes(half.data(), bytes);
        if (dtype == "F16")
            for (size_t i = 0; i < n; ++i) dst[i] = f16_to_float(half[i]);
        else
            for (size_t i = 0; i < n; ++i) dst[i] = bf16_to_float(half[i]);
    }

private:
    // As the format requires: each tensor's data_offsets span shape x dtype bytes, and
    // the tensors, ordered by offset, cover the data exactly, without overlap or gaps.
    void check_layout() const {
        static const std::map<std::string, uint64_t> kItemBytes = {
            {"F64", 8}, {"F32", 4}, {"F16", 2},  {"BF16", 2},    {"I64", 8},
            {"I32", 4}, {"I16", 2}, {"I8", 1},   {"U64", 8},     {"U32", 4},
            {"U16", 2}, {"U8", 1},  {"BOOL", 1}, {"F8_E4M3", 1}, {"F8_E5M2", 1}};
        std::vector<std::tuple<uint64_t, uint64_t, std::string>> spans;
        for (const auto& [name, e] : header_.items()) {
            if (name == "__metadata__") continue;
            const std::string what = "tensor '" + name + "'";
            if (!e.is_object()) throw base::FileError(path_, what + " is not a JSON object");
            const auto dtype = e.find("dtype");
            const auto item = dtype != e.end() && dtype->is_string()
                                  ? kItemBytes.find(dtype->get<std::string>())
                                  : kItemBytes.end();
            if (item == kItemBytes.end())
                throw base::FileError(path_, what + " has an unknown dtype " +
                                                 (dtype != e.end() ? dtype->dump() : "(none)"));
            const Shape offsets = uints(e, "data_offsets", what);
            const uint64_t bytes = elements(uints(e, "shape", what)) * item->second;
            if (offsets.size() != 2 || offsets[0] > offsets[1] || offsets[1] - offsets[0] != bytes)
                throw base::FileError(path_, what + " has data_offsets " + shape_text(offsets) +
                                                 ", expected a span of " + std::to_string(bytes) +
                                                 " bytes for its dtype and shape");
            spans.emplace_back(offsets[0], offsets[1], name);
        }
        std::sort(spans.begin(), spans.end());
        uint64_t at = 0;
        std::string previous = "the header";
        for (const auto& [begin, end, name] : spans) {
            if (begin != at)
                throw base::FileError(
                    path_, "tensor '" + name + "' starts at data byte " + std::to_string(begin) +
                               ", but " + previous + " ends at " + std::to_string(at) +
                               (begin < at ? " (overlapping tensors)" : " (a gap)"));
            at = end;
            previous = "tensor '" + name + "'";
        }
        if (at != data_size_)
            throw base::FileError(path_,
                                  std::string(at > data_size_ ? "truncated" : "trailing bytes") +
                                      ": the tensors end at data byte " + std::to_string(at) +
                                      ", the data are " + std::to_string(data_size_) + " bytes");
    }

    // An array of non-negative integers.
    Shape uints(const json& e, const char* key, const std::string& what) const {
        const auto it = e.find(key);
        if (it == e.end() || !it->is_array() ||
            !std::all_of(it->begin(), it->end(),
                         [](const json& v) { return v.is_number_unsigned(); }))
            throw base::FileError(path_, what + " has no valid '" + key + "'");
        return it->get<Shape>();
    }

    void read_bytes(void* dst, uint64_t bytes) {
        if (!in_.read(static_cast<char*>(dst), std::streamsize(bytes)))
            throw base::FileError(path_, "read failed");
    }

    std::string path_;
    std::ifstream in_;
    json header_;
    uint64_t data_start_ = 0, data_size_ = 0;
};

} // namespace

ModelFile read_safetensors(const std::string& path) {
    Reader file(path);
    ModelFile m;
    m.config = read_hf_config(path);
    const Config& c = m.config;
    const ParamLayout layout(c);

    // GPT2LMHeadModel saves "transformer.wte.weight", GPT2Model "wte.weight".
    const json& header = file.header();
    const std::string prefix = header.contains("transformer.wte.weight") ? "transformer." : "";
    std::unordered_set<std::string> params;
    for (const TensorInfo& t : layout.tensors()) params.insert(prefix + t.name);
    // The causal-mask buffers that older checkpoints carry.
    const std::regex buffer((prefix.empty() ? "" : R"(transformer\.)") +
                            std::string(R"(h\.\d+\.attn\.(bias|masked_bias))"));
    for (const auto& [name, entry] : header.items())
        if (name != "__metadata__" && name != "lm_head.weight" && !params.contains(name) &&
            !std::regex_match(name, buffer))
            throw base::FileError(path, "tensor '" + name + "' is not a GPT-2 parameter");

    m.params.assign(layout.total(), 0.0f); // wte's padded rows stay zero
    std::vector<float> hf;
    for (const TensorInfo& t : layout.tensors()) {
        const Shape shape = hf_shape(t, c);
        float* dst = m.params.data() + t.offset;
        if (!t.hf_transposed) {
            file.read(prefix + t.name, shape, dst);
            continue;
        }
        hf.resize(t.size);
        file.read(prefix + t.name, shape, hf.data());
        transpose(hf.data(), dst, shape[0], shape[1]);
    }

    if (header.contains("lm_head.weight")) {
        const TensorInfo& wte = layout.find("wte.weight");
        hf.resize(size_t(c.vocab) * size_t(c.n_embd));
        file.read("lm_head.weight", hf_shape(wte, c), hf.data());
        if (!std::equal(hf.begin(), hf.end(), m.params.begin() + std::ptrdiff_t(wte.offset)))
            throw base::FileError(
                path, "lm_head.weight differs from wte.weight (only tied LM heads are supported)");
    }
    return m;
}

void write_safetensors(const std::string& path, const Config& config, const float* params) {
    // The folder's config.json describes every .safetensors file beside it: one that holds
    // another model's config, or cannot be replaced, is found before anything is written.
    const std::string cfg = config_path(path);
    std::error_code ec;
    if (fs::is_directory(cfg, ec))
        throw base::FileError(cfg, "is a folder, where config.json goes");
    if (fs::exists(cfg, ec)) {
        Config held;
        try {
            held = read_hf_config(path);
        } catch (const base::FileError&) {
            throw base::FileError(cfg, "exists and is not a GPT-2 config: write the model into "
                                       "another folder");
        }
        if (!(held == config))
            throw base::FileError(cfg, "holds another model's config (" + held.describe() +
                                           "), which the .safetensors files beside it need: "
                                           "write the model into another folder");
    }
    const ParamLayout layout(config);
    std::vector<const TensorInfo*> tensors;
    for (const TensorInfo& t : layout.tensors()) tensors.push_back(&t);
    std::sort(tensors.begin(), tensors.end(), [](auto* a, auto* b) { return a->name < b->name; });

    json header = {{"__metadata__", {{"format", "pt"}}}};
    uint64_t offset = 0;
    for (const TensorInfo* t : tensors) {
        const Shape shape = hf_shape(*t, config);
        const uint64_t bytes = elements(shape) * sizeof(float);
        header[t->name] = {
            {"dtype", "F32"}, {"shape", shape}, {"data_offsets", {offset, offset + bytes}}};
        offset += bytes;
    }
    std::string text = header.dump();
    text.append((8 - text.size() % 8) % 8, ' '); // the data start 8-byte aligned
    const uint64_t n = text.size();

    base::write_atomically(path, [&](const std::string& tmp) {
        std::ofstream out(tmp, std::ios::binary);
        out.write(reinterpret_cast<const char*>(&n), sizeof n);
        out.write(text.data(), std::streamsize(n));
        std::vector<float> hf;
        for (const TensorInfo* t : tensors) {
            const float* src = params + t->offset;
            if (t->hf_transposed) {
                hf.resize(t->size);
                transpose(src, hf.data(), size_t(t->shape[0]), size_t(t->shape[1]));
                src = hf.data();
            }
            out.write(reinterpret_cast<const char*>(src),
                      std::streamsize(elements(hf_shape(*t, config)) * sizeof(float)));
        }
        out.close();
        if (!out) throw base::FileError(path, "write failed (" + tmp + ")");
    });
    write_hf_config(path, config);
}

} // namespace model
