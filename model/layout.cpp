#include "model/layout.h"

#include <stdexcept>

namespace model {

namespace {

struct GroupSpec {
    const char* llmc_name;
    const char* hf_suffix; // after "h.N." for layer groups
    bool per_layer;
    bool hf_transposed;
};

constexpr GroupSpec kGroups[kNumGroups] = {
    {"wte", "wte.weight", false, false},
    {"wpe", "wpe.weight", false, false},
    {"ln1w", "ln_1.weight", true, false},
    {"ln1b", "ln_1.bias", true, false},
    {"qkvw", "attn.c_attn.weight", true, true},
    {"qkvb", "attn.c_attn.bias", true, false},
    {"attprojw", "attn.c_proj.weight", true, true},
    {"attprojb", "attn.c_proj.bias", true, false},
    {"ln2w", "ln_2.weight", true, false},
    {"ln2b", "ln_2.bias", true, false},
    {"fcw", "mlp.c_fc.weight", true, true},
    {"fcb", "mlp.c_fc.bias", true, false},
    {"fcprojw", "mlp.c_proj.weight", true, true},
    {"fcprojb", "mlp.c_proj.bias", true, false},
    {"lnfw", "ln_f.weight", false, false},
    {"lnfb", "ln_f.bias", false, false},
};

// Shape of one slice (one layer's, for layer groups), in our layout.
std::vector<int64_t> slice_shape(Group g, const Config& c) {
    const int64_t C = c.n_embd;
    switch (g) {
    case kWte:
        return {c.padded_vocab, C};
    case kWpe:
        return {c.max_seq, C};
    case kQkvw:
        return {3 * C, C};
    case kQkvb:
        return {3 * C};
    case kAttprojw:
        return {C, C};
    case kFcw:
        return {4 * C, C};
    case kFcb:
        return {4 * C};
    case kFcprojw:
        return {C, 4 * C};
    default:
        return {C}; // LayerNorm weights and biases, attprojb, fcprojb
    }
}

size_t elements(const std::vector<int64_t>& shape) {
    size_t n = 1;
    for (int64_t d : shape) n *= size_t(d);
    return n;
}

} // namespace

const char* group_name(Group g) {
    return kGroups[g].llmc_name;
}

ParamLayout::ParamLayout(const Config& config) : config_(config) {
    config_.validate();
    size_t offset = 0;
    for (int gi = 0; gi < kNumGroups; ++gi) {
        const Group g = Group(gi);
        const GroupSpec& spec = kGroups[g];
        group_offset_[g] = offset;
        const auto shape = slice_shape(g, config_);
        const size_t n = elements(shape);
        slice_size_[g] = n;
        const int layers = spec.per_layer ? config_.n_layer : 1;
        for (int l = 0; l < layers; ++l) {
            TensorInfo t;
            t.name = spec.per_layer ? "h." + std::to_string(l) + "." + spec.hf_suffix
                                    : std::string(spec.hf_suffix);
            t.group = g;
            t.layer = spec.per_layer ? l : -1;
            t.shape = shape;
            t.offset = offset;
            t.size = n;
            t.hf_transposed = spec.hf_transposed;
            tensors_.push_back(std::move(t));
            offset += n;
        }
    }
    group_offset_[kNumGroups] = offset;
}

const TensorInfo& ParamLayout::find(const std::string& hf_name) const {
    for (const auto& t : tensors_)
        if (t.name == hf_name) return t;
    throw std::out_of_range("no parameter tensor named '" + hf_name + "'");
}

size_t ParamLayout::padding_elements() const {
    return size_t(config_.padded_vocab - config_.vocab) * size_t(config_.n_embd);
}

size_t ParamLayout::count_unpadded() const {
    return total() - padding_elements();
}

void transpose(const float* src, float* dst, size_t rows, size_t cols) {
    for (size_t r = 0; r < rows; ++r)
        for (size_t c = 0; c < cols; ++c) dst[c * rows + r] = src[r * cols + c];
}

} // namespace model
