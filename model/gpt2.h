// The GPT-2 model: parameters, gradients and activations in flat buffers, with the
// forward and backward passes written out layer by layer.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <span>
#include <type_traits>
#include <utility>
#include <vector>

#include "base/memory.h"
#include "model/activations.h"
#include "model/config.h"
#include "model/layout.h"
#include "model/matmul.h"
#include "model/precision.h"
#include "model/recompute.h"

namespace model {

// Kinds of work in a pass, for the time profile.
enum Stage { kMatmul, kAttention, kNorm, kPointwise, kLoss, kNumStages };
const char* stage_name(Stage stage); // "matmul", "attention", "layernorm", "pointwise", "loss"

// What a forward pass with targets is for. inference: the loss, no gradient touched.
// training: also the classifier's backward, for a backward() to finish (see forward()).
enum class Pass { inference, training };

template <class T> class GPT2 {
public:
    explicit GPT2(const Config& config);
    GPT2(const GPT2&) = delete; // params_ may point into own_params_, which a move keeps
    GPT2& operator=(const GPT2&) = delete;
    GPT2(GPT2&&) = default;
    GPT2& operator=(GPT2&&) = default;

    const Config& config() const { return layout_.config(); }
    const ParamLayout& layout() const { return layout_; }
    size_t num_params() const { return params_.size(); }
    // Mutable access tells the model its weights may change: what it derives from them
    // (bf16 or repacked copies for the products) is remade before the next pass. Write
    // through the pointer before the next forward(), not after.
    T* params() {
        mm_.weights_changed();
        return params_.data();
    }
    const T* params() const { return params_.data(); }
    T* grads() { return grads_.data(); } // null until allocate_grads()
    const T* grads() const { return grads_.data(); }

    // GPT-2 initialisation: weights ~ N(0, 0.02), the two residual projections of each
    // block (attn.c_proj, mlp.c_proj) ~ N(0, 0.02/sqrt(2L)), biases 0, LayerNorm
    // weights 1, padded wte rows 0. Reproducible from the seed, for float and double alike.
    void init_weights(uint64_t seed);
    // Copies parameters in (count must equal num_params()); any scalar type.
    template <class U> void set_params(const U* values, size_t count);
    // Moves the parameters to storage (num_params() values that the caller keeps alive),
    // such as memory shared by the processes of a machine: what storage holds becomes
    // the parameters, and the model's own copy is freed. Null moves them back into memory
    // of the model's own, with their current values.
    void use_params_at(T* storage);
    // The same for the gradients, which must be allocated: they are copied to storage.
    void use_grads_at(T* storage);

    // The arithmetic of the passes (model/precision.h); fp32 by default. bf16 needs
    // float; throws base::SettingError("precision") if the build or CPU cannot run it.
    void set_precision(Precision precision);
    Precision precision() const { return mm_.precision(); }

    // Allocate buffers up front so that forward/backward never allocate: activations
    // for up to (max_batch, max_seq) with or without the backward scratch, gradients.
    // A model reserved for inference keeps all (B,T,Vp) logits; one reserved for training
    // only classifier_rows() rows of them. Throws base::SettingError ("batch" or "seq")
    // for a shape the model cannot take, and base::MemoryError ("batch") when what it
    // would allocate is more than the machine has available; both before allocating.
    void reserve(int max_batch, int max_seq, bool for_training);
    // The bytes reserve() would allocate: activations, token buffers, the products'
    // weight copies and (for training, when not yet allocated) gradients.
    size_t reserve_bytes(int max_batch, int max_seq, bool for_training) const;
    int reserved_batch() const { return cap_batch_; } // 0 before reserve()
    int reserved_seq() const { return cap_seq_; }
    void allocate_grads();
    // What the backward pass recomputes rather than keeps (model/recompute.h); off by
    // default. Results are bit-identical whatever the setting; a reserved model is
    // reserved again for the same shape.
    void set_recompute(Recompute recompute);
    Recompute recompute() const { return recompute_; }
    // Rows per chunk of the fused classifier of a model reserved for training: its logits
    // buffer is (rows,Vp) instead of (B,T,Vp). Default 256 (52 MB for GPT-2's vocabulary;
    // 64 and 128 rows ran slower, 512 no faster). Throws
    // base::SettingError("classifier_rows") below 1; a reserved model is reserved again.
    void set_classifier_rows(int rows);
    int classifier_rows() const { return classifier_rows_; }

    // tokens (B,T) in [0,V); targets (B,T) in [-1,V) with -1 = ignored, or null for
    // logits only (a model reserved for training then stops at lnf). Returns the mean
    // loss over kept targets (0 if none or no targets). The classifier runs chunk by
    // chunk on a model reserved for training: logits = lnf @ wte^T, then each row's
    // softmax, cross-entropy and prediction. Pass::training (targets needed, a model
    // reserved for training) also runs its backward there: it ADDS the LM head's part of
    // wte's gradient to grads() and keeps d loss/d lnf for backward(). Until that
    // backward(), another forward() or reserve() throws std::logic_error; zero_grad()
    // discards the pass. Throws std::invalid_argument for out-of-range ids, (B,T) beyond
    // reserve() or a training pass without targets; reserves on first use (for training
    // if grads are allocated or pass is training) if nothing was reserved.
    // The gradient is that of (sum of kept losses) / loss_divisor; 0 = the number kept,
    // i.e. of the returned mean. A trainer averaging over several passes (micro-batches,
    // ranks) with masked targets divides by a fixed count here and rescales the sum.
    double forward(const int* tokens, const int* targets, int B, int Tn,
                   Pass pass = Pass::inference, int loss_divisor = 0);
    // Accumulates the rest of d(mean loss)/d(params) into grads(), after a
    // forward(..., Pass::training); throws std::logic_error after any other forward.
    void backward();
    // Zeroes grads() (allocating them if needed) and discards a training forward whose
    // backward has not run.
    void zero_grad();
    // Called by backward() as gradients become final: with l after block l's tensors
    // (l = L-1 down to 0), then with -1 after wte, wpe, lnfw and lnfb. Lets a
    // data-parallel trainer start reducing a block's gradients while earlier blocks
    // are still being differentiated. Empty (the default) = no calls.
    void set_backward_hook(std::function<void(int layer)> hook) {
        backward_hook_ = std::move(hook);
    }

    // Incremental decoding with a key/value cache: start_generation(n) makes room for n
    // positions (at most max_seq); then step(token, pos) for pos = 0, 1, ... runs one
    // position against the cached keys and values of the earlier ones and returns its
    // logits (Vp). Costs one position's work per token instead of the whole prefix.
    void start_generation(int max_positions);
    const T* step(int token, int pos);

    // After a forward on a model reserved for inference: logits (B,T,Vp), or with targets
    // the probabilities (softmax over the first V, padded columns 0). A model reserved
    // for training keeps neither: throws std::logic_error, as before any forward.
    const T* logits() const;
    // After a forward with targets: each position's most likely next token (B,T), the
    // argmax of its V logits (the first of ties). Throws std::logic_error otherwise.
    const int* predictions() const;
    int targets_kept() const { return kept_; }
    // After forward: every activation (features: lnf is HF's last_hidden_state, encoded
    // and residual3 the other hidden_states); what recompute() shares holds the last
    // layer's. Pointers are valid until the next forward.
    const Activations<T>& activations() const { return acts_; }
    // After forward with targets: each position's loss (B,T), 0 where ignored.
    const T* losses() const { return acts_.losses; }

    // Seconds forward and backward spent in each Stage since the last reset.
    const std::array<double, kNumStages>& profile() const { return profile_; }
    void reset_profile() { profile_.fill(0.0); }

private:
    void carve(int B, int Tn);
    void prepare_matmuls(int N, bool training, bool kept_bf16);
    size_t logit_rows(size_t BT, bool training) const; // rows of the logits buffer
    std::pair<size_t, size_t> activation_elements(int max_batch, int max_seq,
                                                  bool for_training) const;
    double classify(int N, bool training, int loss_divisor);
    // Whether what the products and attention read is kept in bf16: bf16 precision.
    bool bf16_kept() const { return std::is_same_v<T, float> && precision() == Precision::bf16; }

    ParamLayout layout_;
    base::LargeVector<T> own_params_; // empty while the parameters live elsewhere
    std::span<T> params_;             // own_params_ or the storage of use_params_at()
    base::LargeVector<T> own_grads_;
    std::span<T> grads_; // empty until allocate_grads(); own_grads_ or use_grads_at()'s
    base::LargeVector<T> act_memory_;
    base::LargeVector<bf16> act_bf16_; // the activations kept in bf16 (bf16 precision)
    Activations<T> acts_{};
    int cap_batch_ = 0, cap_seq_ = 0;
    int attn_slots_ = 0; // attention's scratch slots: the threads it may use
    bool cap_training_ = false;
    Recompute recompute_ = Recompute::off;
    int classifier_rows_ = 256;
    // The last forward's batch, copied in for backward, and the classifier's argmax.
    std::vector<int> tokens_, targets_, predictions_;
    bool has_targets_ = false;     // the last forward had targets
    bool has_logits_ = false;      // acts_.logits holds the last forward's (B,T,Vp)
    bool awaits_backward_ = false; // the last forward was a training pass
    int B_ = 0, T_ = 0, kept_ = 0;
    std::array<double, kNumStages> profile_{};
    std::function<void(int)> backward_hook_;
    Matmul<T> mm_; // the linear layers' products, prepared per shape
    // Generation: the key/value cache and one position's buffers.
    base::LargeVector<T> step_memory_;
    StepActivations<T> step_acts_{};
    int kv_positions_ = 0;
};

} // namespace model
