// Where every parameter lives in the one flat buffer.
//
// The buffer holds llm.c's 16 groups in llm.c's order; a layer group stacks its
// L per-layer slices. Each slice is also a named tensor with its Hugging Face
// name, so file formats and the optimizer work from one table.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "model/config.h"

namespace model {

// llm.c's parameter groups, in file order.
enum Group : int {
    kWte,      // (Vp, C)     token embedding, tied LM head
    kWpe,      // (maxT, C)   position embedding
    kLn1w,     // (L, C)
    kLn1b,     // (L, C)
    kQkvw,     // (L, 3C, C)
    kQkvb,     // (L, 3C)
    kAttprojw, // (L, C, C)
    kAttprojb, // (L, C)
    kLn2w,     // (L, C)
    kLn2b,     // (L, C)
    kFcw,      // (L, 4C, C)
    kFcb,      // (L, 4C)
    kFcprojw,  // (L, C, 4C)
    kFcprojb,  // (L, C)
    kLnfw,     // (C)
    kLnfb,     // (C)
    kNumGroups
};

const char* group_name(Group g); // llm.c's name: "wte", "qkvw", ...

// One named tensor: a whole non-layer group or one layer's slice of a layer group.
struct TensorInfo {
    std::string name; // Hugging Face name, e.g. "h.3.attn.c_attn.weight"
    Group group;
    int layer;                  // -1 for wte, wpe, lnfw, lnfb
    std::vector<int64_t> shape; // our (llm.c) layout: linear weights are (out, in)
    size_t offset;              // in elements, from the start of the buffer
    size_t size;                // elements
    // HF stores linear weights as Conv1D (in, out): the transpose of ours.
    bool hf_transposed;
    // AdamW decays tensors of two or more dimensions (matrices and embeddings).
    bool decays() const { return shape.size() >= 2; }
};

class ParamLayout {
public:
    explicit ParamLayout(const Config& config);

    const Config& config() const { return config_; }
    size_t total() const { return group_offset_[kNumGroups]; }
    size_t group_offset(Group g) const { return group_offset_[g]; }
    size_t group_size(Group g) const { return group_offset_[g + 1] - group_offset_[g]; }
    // Per-layer slice size of a layer group (the whole group otherwise).
    size_t slice_size(Group g) const { return slice_size_[g]; }
    // Where layer l's slice of group g starts (g itself for a non-layer group).
    size_t offset(Group g, int l = 0) const {
        return group_offset_[g] + size_t(l) * slice_size_[g];
    }

    // Every tensor, in buffer order. find() throws std::out_of_range for an unknown name.
    const std::vector<TensorInfo>& tensors() const { return tensors_; }
    const TensorInfo& find(const std::string& hf_name) const;

    // Parameters a model would have with the real vocab V (HF's count: 124,439,808 for
    // gpt2), and the extra elements that padding wte to Vp adds.
    size_t count_unpadded() const;
    size_t padding_elements() const;

private:
    Config config_;
    std::array<size_t, kNumGroups + 1> group_offset_{};
    std::array<size_t, kNumGroups> slice_size_{};
    std::vector<TensorInfo> tensors_;
};

// One block's parameters (or gradients): layer l's slice of each layer group.
template <class T> struct LayerParams {
    T* ln1_w;     // (C)
    T* ln1_b;     // (C)
    T* qkv_w;     // (3C, C)
    T* qkv_b;     // (3C)
    T* attproj_w; // (C, C)
    T* attproj_b; // (C)
    T* ln2_w;     // (C)
    T* ln2_b;     // (C)
    T* fc_w;      // (4C, C)
    T* fc_b;      // (4C)
    T* fcproj_w;  // (C, 4C)
    T* fcproj_b;  // (C)
};

// The tensors of a flat buffer laid out by a ParamLayout, by name: the parameters,
// or their gradients (same layout).
template <class T> class ParamViews {
public:
    ParamViews(T* base, const ParamLayout& layout)
        : wte(base + layout.offset(kWte)), wpe(base + layout.offset(kWpe)),
          lnf_w(base + layout.offset(kLnfw)), lnf_b(base + layout.offset(kLnfb)), base_(base),
          layout_(&layout) {}

    T* wte;   // (Vp, C) token embedding, tied LM head
    T* wpe;   // (maxT, C) position embedding
    T* lnf_w; // (C)
    T* lnf_b; // (C)

    LayerParams<T> layer(int l) const {
        auto at = [&](Group g) { return base_ + layout_->offset(g, l); };
        return {.ln1_w = at(kLn1w),
                .ln1_b = at(kLn1b),
                .qkv_w = at(kQkvw),
                .qkv_b = at(kQkvb),
                .attproj_w = at(kAttprojw),
                .attproj_b = at(kAttprojb),
                .ln2_w = at(kLn2w),
                .ln2_b = at(kLn2b),
                .fc_w = at(kFcw),
                .fc_b = at(kFcb),
                .fcproj_w = at(kFcprojw),
                .fcproj_b = at(kFcprojb)};
    }

private:
    T* base_;
    const ParamLayout* layout_;
};

// src (rows, cols) -> dst (cols, rows): between our (out, in) linear weights and HF's
// Conv1D (in, out), for the file formats with Hugging Face layouts.
void transpose(const float* src, float* dst, size_t rows, size_t cols);

} // namespace model
