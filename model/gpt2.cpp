#include "model/gpt2.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numbers>
#include <random>
#include <stdexcept>
#include <string>
#include <type_traits>

#include <omp.h>

#include "base/error.h"
#include "base/memory.h"
#include "model/blas.h"
#include "model/layers.h"
#include "model/matmul.h"

namespace model {

const char* stage_name(Stage stage) {
    static constexpr const char* kNames[kNumStages] = {"matmul", "attention", "layernorm",
                                                       "pointwise", "loss"};
    return kNames[stage];
}

namespace {

// Adds each timed call's wall time to its Stage in a profile; without a profile, just calls.
class StageTimer {
public:
    StageTimer() = default;
    explicit StageTimer(std::array<double, kNumStages>& profile) : profile_(&profile) {}
    template <class Call> void operator()(Stage stage, Call&& call) const {
        if (!profile_) return call();
        const auto start = std::chrono::steady_clock::now();
        call();
        (*profile_)[stage] +=
            std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    }

private:
    std::array<double, kNumStages>* profile_ = nullptr;
};

} // namespace

// Runs one layer call through the StageTimer `timer` in scope.
#define TIMED(stage, call) timer(stage, [&] { call; })

template <class T>
GPT2<T>::GPT2(const Config& config)
    : layout_(config), own_params_(layout_.total(), T(0)), params_(own_params_) {}

namespace {

// Box-Muller on a 64-bit Mersenne Twister: the same numbers on every platform
// (std::normal_distribution's algorithm is implementation-defined).
class NormalRng {
public:
    explicit NormalRng(uint64_t seed) : gen_(seed) {}
    double next() {
        if (has_spare_) {
            has_spare_ = false;
            return spare_;
        }
        const double u1 = (double(gen_() >> 11) + 1.0) * 0x1.0p-53; // (0, 1]
        const double u2 = double(gen_() >> 11) * 0x1.0p-53;         // [0, 1)
        const double r = std::sqrt(-2.0 * std::log(u1));
        spare_ = r * std::sin(2.0 * std::numbers::pi * u2);
        has_spare_ = true;
        return r * std::cos(2.0 * std::numbers::pi * u2);
    }

private:
    std::mt19937_64 gen_;
    double spare_ = 0;
    bool has_spare_ = false;
};

} // namespace

template <class T> void GPT2<T>::init_weights(uint64_t seed) {
    mm_.weights_changed();
    NormalRng rng(seed);
    const Config& c = config();
    const double residual_std = 0.02 / std::sqrt(2.0 * c.n_layer);
    for (const TensorInfo& t : layout_.tensors()) {
        T* p = params_.data() + t.offset;
        switch (t.group) {
        case kLn1w:
        case kLn2w:
        case kLnfw:
            std::fill(p, p + t.size, T(1));
            break;
        case kQkvw:
        case kFcw:
        case kWpe:
            for (size_t i = 0; i < t.size; ++i) p[i] = T(0.02 * rng.next());
            break;
        case kWte: {
            const size_t real = size_t(c.vocab) * c.n_embd; // padded rows stay 0
            for (size_t i = 0; i < real; ++i) p[i] = T(0.02 * rng.next());
            std::fill(p + real, p + t.size, T(0));
            break;
        }
        case kAttprojw:
        case kFcprojw:
            for (size_t i = 0; i < t.size; ++i) p[i] = T(residual_std * rng.next());
            break;
        default:
            std::fill(p, p + t.size, T(0));
            break; // biases
        }
    }
}

template <class T> template <class U> void GPT2<T>::set_params(const U* values, size_t count) {
    if (count != params_.size())
        throw std::invalid_argument("parameter count " + std::to_string(count) +
                                    " does not match the model's " +
                                    std::to_string(params_.size()));
    std::transform(values, values + count, params_.begin(), [](U v) { return T(v); });
    mm_.weights_changed();
}

namespace {

// A buffer of the model moved to `storage` (its values copied there if `copy`), or back
// into `own` with its current values when storage is null.
template <class T>
void relocate(base::LargeVector<T>& own, std::span<T>& view, T* storage, bool copy) {
    if (storage) {
        if (copy) std::copy(view.begin(), view.end(), storage);
        view = {storage, view.size()};
        base::LargeVector<T>().swap(own);
    } else if (own.empty()) {
        own.assign(view.begin(), view.end());
        view = own;
    }
}

} // namespace

template <class T> void GPT2<T>::use_params_at(T* storage) {
    relocate(own_params_, params_, storage, false);
    mm_.weights_changed();
}

template <class T> void GPT2<T>::use_grads_at(T* storage) {
    if (grads_.empty()) throw std::logic_error("use_grads_at: no gradients allocated");
    relocate(own_grads_, grads_, storage, true);
}

template <class T> void GPT2<T>::set_precision(Precision precision) {
    if (precision == Precision::bf16 && !std::is_same_v<T, float>)
        throw base::SettingError("precision", "bf16 runs float models only");
    check_precision_supported(precision);
    mm_.set_precision(precision);
    if (cap_batch_) reserve(cap_batch_, cap_seq_, cap_training_); // activations in bf16 or not
}

template <class T> void GPT2<T>::allocate_grads() {
    if (grads_.empty()) grads_ = own_grads_ = base::LargeVector<T>(params_.size(), T(0));
}

template <class T> void GPT2<T>::zero_grad() {
    allocate_grads();
    std::fill(grads_.begin(), grads_.end(), T(0));
    awaits_backward_ = false; // its wte gradient is gone with the rest
}

template <class T> void GPT2<T>::set_recompute(Recompute recompute) {
    recompute_ = recompute;
    if (cap_batch_) reserve(cap_batch_, cap_seq_, cap_training_);
}

template <class T> void GPT2<T>::set_classifier_rows(int rows) {
    if (rows < 1)
        throw base::SettingError("classifier_rows",
                                 "must be at least 1, got " + std::to_string(rows));
    classifier_rows_ = rows;
    if (cap_batch_) reserve(cap_batch_, cap_seq_, cap_training_);
}

namespace {

// take()s for the assign_*activations lists: one that only counts the elements taken,
// one that hands out consecutive slices of memory (null for empty ones); no allocation.
template <class U> auto counter(size_t& total) {
    return [&total](size_t n) -> U* {
        total += n;
        return nullptr;
    };
}
template <class U> auto carver(U* memory) {
    return [memory](size_t n) mutable {
        U* p = n ? memory : nullptr;
        memory += n;
        return p;
    };
}

} // namespace

template <class T> void GPT2<T>::reserve(int max_batch, int max_seq, bool for_training) {
    if (max_batch <= 0)
        throw base::SettingError("batch", "must be positive, got " + std::to_string(max_batch));
    if (max_seq <= 0 || max_seq > config().max_seq)
        throw base::SettingError("seq", "must be in 1.." + std::to_string(config().max_seq) +
                                            " (the model's positions), got " +
                                            std::to_string(max_seq));
    if (awaits_backward_)
        throw std::logic_error("reserve() between a training forward() and its backward()");
    const size_t BT = size_t(max_batch) * max_seq;
    base::check_memory(reserve_bytes(max_batch, max_seq, for_training), "batch",
                       std::string(for_training ? "activations and gradients" : "activations") +
                           " for batch " + std::to_string(max_batch) + " x seq " +
                           std::to_string(max_seq));
    attn_slots_ = omp_get_max_threads();
    const auto [total, total_bf16] = activation_elements(max_batch, max_seq, for_training);
    act_memory_.clear();
    act_memory_.shrink_to_fit(); // the old buffers go before the new ones come
    act_bf16_.clear();
    act_bf16_.shrink_to_fit();
    act_memory_.assign(total, T(0));
    act_memory_.shrink_to_fit();
    act_bf16_.assign(total_bf16, bf16{});
    act_bf16_.shrink_to_fit();
    tokens_.assign(BT, 0);
    targets_.assign(BT, -1);
    predictions_.assign(BT, 0);
    has_targets_ = has_logits_ = false;
    cap_batch_ = max_batch;
    cap_seq_ = max_seq;
    cap_training_ = for_training;
    if (for_training) allocate_grads();
    prepare_matmuls(max_batch * max_seq, for_training, bf16_kept());
}

// Elements of the float and the bf16 activation buffers for (max_batch, max_seq), with
// attention scratch for every thread.
template <class T>
std::pair<size_t, size_t> GPT2<T>::activation_elements(int max_batch, int max_seq,
                                                       bool for_training) const {
    const size_t BT = size_t(max_batch) * max_seq;
    Activations<T> sizing{};
    size_t total = 0, total_bf16 = 0;
    assign_activations(sizing, config(), max_batch, max_seq, for_training,
                       size_t(omp_get_max_threads()), recompute_, logit_rows(BT, for_training),
                       bf16_kept(), counter<T>(total), counter<bf16>(total_bf16));
    return {total, total_bf16};
}

template <class T>
size_t GPT2<T>::reserve_bytes(int max_batch, int max_seq, bool for_training) const {
    const size_t BT = size_t(max_batch) * max_seq;
    const auto [total, total_bf16] = activation_elements(max_batch, max_seq, for_training);
    const size_t grads = for_training && grads_.empty() ? params_.size() : 0;
    return (total + grads) * sizeof(T) + total_bf16 * sizeof(bf16) + 3 * BT * sizeof(int) +
           mm_.weight_copy_bytes(params_.size(),
                                 BT > logit_rows(BT, true) ? layout_.group_size(kWte) : 0,
                                 for_training);
}

// Every linear product of a pass on N rows, prepared now rather than in the first pass.
// With the weights, so that derived copies (bf16) are made here too. kept_bf16: qkv and
// fch are kept in bf16 (Activations), so their products write bf16.
template <class T> void GPT2<T>::prepare_matmuls(int N, bool training, bool kept_bf16) {
    const int C = config().n_embd, Vp = config().padded_vocab;
    const ParamViews<const T> p(params_.data(), layout_);
    using Io = typename Matmul<T>::Bf16Io;
    const Io in = kept_bf16 ? Io::bf16_in : Io::rounded_in;
    const Io in_out = kept_bf16 ? Io::bf16_in_out : Io::rounded_in;
    for (int l = 0; l < config().n_layer; ++l) {
        const LayerParams<const T> w = p.layer(l);
        mm_.prepare(N, C, 3 * C, true, training, w.qkv_w, in_out);
        mm_.prepare(N, C, C, true, training, w.attproj_w, in);
        mm_.prepare(N, C, 4 * C, true, training, w.fc_w, in_out);
        mm_.prepare(N, 4 * C, C, true, training, w.fcproj_w, in);
    }
    if (!training) {
        mm_.prepare(N, C, Vp, false, false, p.wte); // the tied LM head
        return;
    }
    // The fused classifier's chunks of rows: whole ones and a last partial one. With more
    // than one, wte keeps a copy per product. With dlogits kept in bf16, the weight
    // gradient runs on pairs of chunks: on 2R rows, and at the end on what is left.
    const int R = int(logit_rows(size_t(N), true));
    const auto copies = N > R ? Matmul<T>::Copies::per_product : Matmul<T>::Copies::alternate;
    const Io io = kept_bf16 ? Io::bf16_grad : Io::rounded_in;
    mm_.prepare(R, C, Vp, false, true, p.wte, io, copies);
    if (N % R) mm_.prepare(N % R, C, Vp, false, true, p.wte, io, copies);
    if (kept_bf16 && N > R) {
        mm_.prepare_weight_grad(std::min(N, 2 * R), C, Vp);
        if (N > 2 * R && N % (2 * R) > R) mm_.prepare_weight_grad(N % (2 * R), C, Vp);
    }
}

template <class T> size_t GPT2<T>::logit_rows(size_t BT, bool training) const {
    return training ? std::min(BT, size_t(classifier_rows_)) : BT;
}

// Points the activation fields into act_memory_ for this (B, T).
template <class T> void GPT2<T>::carve(int B, int Tn) {
    assign_activations(acts_, config(), B, Tn, cap_training_, attn_slots_, recompute_,
                       logit_rows(size_t(B) * Tn, cap_training_), bf16_kept(),
                       carver(act_memory_.data()), carver(act_bf16_.data()));
}

namespace {

template <class T> void fill_zero(T* x, size_t n) {
    std::fill(x, x + n, T(0));
}

// The activations of a block that bf16 precision keeps in bf16, all of one type A: T
// (float or double), or bf16.
template <class A> struct Kept { A *ln1, *qkv, *atty, *ln2, *fch, *fch_gelu; };

// use(kept) on a's Kept activations: in bf16 where the model keeps them so (bf16
// precision), else in T.
template <class T, class Use> void with_kept(const LayerActivations<T>& a, Use&& use) {
    if constexpr (std::is_same_v<T, float>)
        if (a.qkv_bf16)
            return use(Kept<bf16>{a.ln1_bf16, a.qkv_bf16, a.atty_bf16, a.ln2_bf16, a.fch_bf16,
                                  a.fch_gelu_bf16});
    use(Kept<T>{a.ln1, a.qkv, a.atty, a.ln2, a.fch, a.fch_gelu});
}

// One transformer block on N rows, through p's weights and a's buffers:
//   residual2 (N,C) = residual + attproj(attend(qkv(ln1(residual))))
//   residual3 (N,C) = residual2 + fcproj(gelu(fc(ln2(residual2))))
// attend(atty (N,C), lse, qkv (N,3C)) is the attention: over whole sequences for the
// forward pass (lse (B,NH,T) kept for backward), over the key/value cache for a step
// (lse null: a step keeps nothing).
template <class T, class Attend>
void block_forward(const LayerParams<const T>& p, const LayerActivations<T>& a, int N, int C,
                   Matmul<T>& mm, Attend&& attend, const StageTimer& timer) {
    const size_t NC = size_t(N) * C;
    with_kept(a, [&](const auto& k) {
        TIMED(kNorm,
              layernorm_forward(k.ln1, a.ln1_mean, a.ln1_rstd, a.residual, p.ln1_w, p.ln1_b, N, C));
        TIMED(kMatmul, mm.forward(k.qkv, k.ln1, p.qkv_w, p.qkv_b, N, C, 3 * C));
        TIMED(kAttention, attend(k.atty, a.lse, k.qkv));
        TIMED(kMatmul, mm.forward(a.proj, k.atty, p.attproj_w, p.attproj_b, N, C, C));
        TIMED(kPointwise, residual_forward(a.residual2, a.residual, a.proj, NC));
        TIMED(kNorm, layernorm_forward(k.ln2, a.ln2_mean, a.ln2_rstd, a.residual2, p.ln2_w, p.ln2_b,
                                       N, C));
        TIMED(kMatmul, mm.forward(k.fch, k.ln2, p.fc_w, p.fc_b, N, C, 4 * C));
        TIMED(kPointwise, gelu_forward(k.fch_gelu, k.fch, NC * 4));
        TIMED(kMatmul, mm.forward(a.proj, k.fch_gelu, p.fcproj_w, p.fcproj_b, N, 4 * C, C));
        TIMED(kPointwise, residual_forward(a.residual3, a.residual2, a.proj, NC));
    });
}

// block_forward in reverse, into the block's gradients g (accumulated). d.dresidual (N,C)
// holds the gradient of residual3 on entry and that of residual on return: the skip
// paths pass it through unchanged, and each branch's LayerNorm adds its input gradient.
// Scratch: d.dbt_c (N,C), d.dfch (N,4C), then d.dqkv (N,3C) in the same memory.
// attend_backward(dqkv (N,3C), datty (N,C), qkv, atty, lse) adds attend's input gradient,
// from its inputs and outputs. What `recompute` does not keep, it recomputes into the
// shared buffer just before use.
template <class T, class AttendBackward>
void block_backward(const LayerParams<T>& g, const LayerParams<const T>& p,
                    const LayerActivations<T>& a, const BackwardScratch<T>& d, int N, int C,
                    Matmul<T>& mm, Recompute recompute, AttendBackward&& attend_backward,
                    const StageTimer& timer) {
    const size_t NC = size_t(N) * C;
    const bool recompute_ln = recompute == Recompute::all;
    with_kept(a, [&](const auto& k) {
        // MLP branch.
        if (recompute != Recompute::off) TIMED(kPointwise, gelu_forward(k.fch_gelu, k.fch, NC * 4));
        TIMED(kPointwise, fill_zero(d.dfch, NC * 4));
        TIMED(kMatmul, mm.backward(d.dfch, g.fcproj_w, g.fcproj_b, d.dresidual, k.fch_gelu,
                                   p.fcproj_w, N, 4 * C, C));             // d fch_gelu
        TIMED(kPointwise, gelu_backward_in_place(d.dfch, k.fch, NC * 4)); // d fch
        TIMED(kPointwise, fill_zero(d.dbt_c, NC));
        if (recompute_ln)
            TIMED(kNorm, layernorm_recompute(k.ln2, a.residual2, p.ln2_w, p.ln2_b, a.ln2_mean,
                                             a.ln2_rstd, N, C));
        TIMED(kMatmul, mm.backward(d.dbt_c, g.fc_w, g.fc_b, d.dfch, k.ln2, p.fc_w, N, C, 4 * C));
        TIMED(kNorm, layernorm_backward(d.dresidual, g.ln2_w, g.ln2_b, d.dbt_c, a.residual2,
                                        p.ln2_w, a.ln2_mean, a.ln2_rstd, N, C));
        // Attention branch.
        TIMED(kPointwise, fill_zero(d.dbt_c, NC));
        TIMED(kMatmul, mm.backward(d.dbt_c, g.attproj_w, g.attproj_b, d.dresidual, k.atty,
                                   p.attproj_w, N, C, C));
        TIMED(kPointwise, fill_zero(d.dqkv, NC * 3));
        TIMED(kAttention, attend_backward(d.dqkv, d.dbt_c, k.qkv, k.atty, a.lse));
        TIMED(kPointwise, fill_zero(d.dbt_c, NC));
        if (recompute_ln)
            TIMED(kNorm, layernorm_recompute(k.ln1, a.residual, p.ln1_w, p.ln1_b, a.ln1_mean,
                                             a.ln1_rstd, N, C));
        TIMED(kMatmul, mm.backward(d.dbt_c, g.qkv_w, g.qkv_b, d.dqkv, k.ln1, p.qkv_w, N, C, 3 * C));
        TIMED(kNorm, layernorm_backward(d.dresidual, g.ln1_w, g.ln1_b, d.dbt_c, a.residual, p.ln1_w,
                                        a.ln1_mean, a.ln1_rstd, N, C));
    });
}

} // namespace

template <class T>
double GPT2<T>::forward(const int* tokens, const int* targets, int B, int Tn, Pass pass,
                        int loss_divisor) {
    const Config& c = config();
    const bool training = pass == Pass::training;
    if (awaits_backward_)
        throw std::logic_error("forward() after a training forward() whose backward() has not "
                               "run (its wte gradient is in grads() already): call backward() "
                               "or zero_grad() first");
    if (training && !targets) throw std::invalid_argument("a training forward() needs targets");
    if (loss_divisor < 0) throw std::invalid_argument("loss_divisor must not be negative");
    if (cap_batch_ == 0) reserve(B, Tn, training || !grads_.empty());
    if (training && (!cap_training_ || grads_.empty()))
        throw std::logic_error("forward(..., Pass::training) needs reserve(..., for_training = "
                               "true)");
    if (B <= 0 || Tn <= 0 || B > cap_batch_ || Tn > cap_seq_)
        throw std::invalid_argument("batch " + std::to_string(B) + " x " + std::to_string(Tn) +
                                    " exceeds the reserved " + std::to_string(cap_batch_) + " x " +
                                    std::to_string(cap_seq_));
    const size_t BT = size_t(B) * Tn;
    for (size_t i = 0; i < BT; ++i) {
        if (tokens[i] < 0 || tokens[i] >= c.vocab)
            throw std::invalid_argument("token id " + std::to_string(tokens[i]) + " at position " +
                                        std::to_string(i) + " is outside the vocabulary [0, " +
                                        std::to_string(c.vocab) + ")");
        if (targets && (targets[i] < -1 || targets[i] >= c.vocab))
            throw std::invalid_argument("target id " + std::to_string(targets[i]) +
                                        " at position " + std::to_string(i) + " is outside [-1, " +
                                        std::to_string(c.vocab) + ")");
    }
    std::copy(tokens, tokens + BT, tokens_.begin());
    if (targets) std::copy(targets, targets + BT, targets_.begin());
    has_targets_ = has_logits_ = false;
    B_ = B;
    T_ = Tn;
    carve(B, Tn);

    const int L = c.n_layer, C = c.n_embd, NH = c.n_head, Vp = c.padded_vocab;
    const int N = int(BT);
    const ParamViews<const T> p(params_.data(), layout_);
    const Activations<T>& a = acts_;
    const StageTimer timer(profile_);
    const bool in_bf16 = precision() == Precision::bf16;
    auto attend = [&](auto* atty, T* lse, const auto* qkv) { // in T, or kept in bf16
        if constexpr (std::is_same_v<decltype(atty), T*>)
            if (!in_bf16)
                return attention_forward(atty, lse, a.attn, attn_slots_, qkv, B, Tn, C, NH);
        if constexpr (std::is_same_v<T, float>)
            attention_forward_bf16(atty, lse, a.attn, attn_slots_, qkv, B, Tn, C, NH);
    };

    TIMED(kPointwise, encoder_forward(a.encoded, tokens_.data(), p.wte, p.wpe, B, Tn, C));
    for (int l = 0; l < L; ++l) block_forward(p.layer(l), a.layer(l), N, C, mm_, attend, timer);
    TIMED(kNorm, layernorm_forward(a.lnf, a.lnf_mean, a.lnf_rstd, a.layer(L - 1).residual3, p.lnf_w,
                                   p.lnf_b, N, C));
    if (targets) return classify(N, training, loss_divisor);
    kept_ = 0;
    if (!cap_training_) { // a model reserved for training has no room for all logits
        TIMED(kMatmul,
              mm_.forward(a.logits, a.lnf, p.wte, static_cast<const T*>(nullptr), N, C, Vp));
        has_logits_ = true;
    }
    return 0.0;
}

// The tied LM head and the loss on lnf's N rows, R at a time (all N at once on a model
// reserved for inference, into its (B,T,Vp) logits, which then hold the probabilities):
//   logits (R,Vp) = lnf rows (R,C) @ wte^T, then each row's softmax, loss, prediction;
//   training, in the same chunk: dlogits (R,Vp) = dloss * (probs - onehot) in place,
//   dlnf rows (R,C) = dlogits @ wte (into d.dbt_c, for backward), dwte += dlogits^T @ lnf.
// Returns the mean loss over kept targets.
template <class T> double GPT2<T>::classify(int N, bool training, int loss_divisor) {
    const Config& c = config();
    const int C = c.n_embd, V = c.vocab, Vp = c.padded_vocab;
    const ParamViews<const T> p(params_.data(), layout_);
    const Activations<T>& a = acts_;
    const StageTimer timer(profile_);
    const int* targets = targets_.data();
    // Backward differentiates the sum of kept rows' losses / divisor (the mean over kept
    // targets unless the caller chose the divisor): each kept row has weight 1/divisor.
    int kept = 0;
    for (int n = 0; n < N; ++n) kept += targets[n] >= 0;
    const T dloss = kept ? T(1) / T(loss_divisor > 0 ? loss_divisor : kept) : T(0);
    T* dlnf = a.backward.dbt_c;
    T* dwte = training ? ParamViews<T>(grads_.data(), layout_).wte : nullptr;
    if (training) TIMED(kPointwise, fill_zero(dlnf, size_t(N) * C));
    const int R = cap_training_ ? classifier_rows_ : N;
    // bf16 training: dlogits are written in bf16 to a.dlogits_bf16, whose rows from p0 on
    // wait for the weight gradient, added when two chunks are there and at the end.
    const bool grad_bf16 = training && a.dlogits_bf16;
    int p0 = 0, pending_kept = 0;
    for (int r0 = 0; r0 < N; r0 += R) {
        const int rows = std::min(R, N - r0);
        T* logits = cap_training_ ? a.logits : a.logits + size_t(r0) * Vp;
        const T* lnf = a.lnf + size_t(r0) * C;
        TIMED(kMatmul,
              mm_.forward(logits, lnf, p.wte, static_cast<const T*>(nullptr), rows, C, Vp));
        int chunk_kept = 0;
        if (!grad_bf16) {
            TIMED(kLoss,
                  chunk_kept = crossentropy_fused(logits, a.losses + r0, predictions_.data() + r0,
                                                  targets + r0, training, dloss, rows, V, Vp));
            if (training && chunk_kept) // else dlogits are 0
                TIMED(kMatmul, mm_.backward(dlnf + size_t(r0) * C, dwte, static_cast<T*>(nullptr),
                                            logits, lnf, p.wte, rows, C, Vp));
            continue;
        }
        if constexpr (std::is_same_v<T, float>) {
            bf16* dlogits = a.dlogits_bf16 + size_t(r0 - p0) * Vp;
            TIMED(kLoss, chunk_kept = crossentropy_fused(logits, dlogits, a.losses + r0,
                                                         predictions_.data() + r0, targets + r0,
                                                         dloss, rows, V, Vp));
            if (chunk_kept)
                TIMED(kMatmul,
                      mm_.backward_input(dlnf + size_t(r0) * C, dlogits, p.wte, rows, C, Vp));
            pending_kept += chunk_kept;
            const int pending = r0 + rows - p0;
            if (pending == 2 * R || r0 + rows == N) {
                if (pending_kept) // else dlogits are 0
                    TIMED(kMatmul, mm_.backward_weight(dwte, a.dlogits_bf16, a.lnf + size_t(p0) * C,
                                                       pending, C, Vp));
                p0 = r0 + rows;
                pending_kept = 0;
            }
        }
    }
    kept_ = kept;
    has_targets_ = true;
    has_logits_ = !cap_training_;
    awaits_backward_ = training;
    double sum = 0;
    for (int n = 0; n < N; ++n) sum += a.losses[n];
    return kept ? sum / kept : 0.0;
}

template <class T> const T* GPT2<T>::logits() const {
    if (!has_logits_)
        throw std::logic_error(cap_training_ ? "logits(): a model reserved for training keeps "
                                               "no (B,T,Vp) logits"
                                             : "logits() before a forward()");
    return acts_.logits;
}

template <class T> const int* GPT2<T>::predictions() const {
    if (!has_targets_) throw std::logic_error("predictions() needs a forward() with targets");
    return predictions_.data();
}

template <class T> void GPT2<T>::backward() {
    if (!awaits_backward_)
        throw std::logic_error("backward() needs a forward(..., Pass::training) since the last "
                               "backward() or zero_grad()");
    const Config& c = config();
    const int L = c.n_layer, C = c.n_embd, NH = c.n_head;
    const int B = B_, Tn = T_, N = B * Tn;
    const size_t BT = size_t(N);
    const ParamViews<const T> p(params_.data(), layout_);
    const ParamViews<T> g(grads_.data(), layout_);
    const Activations<T>& a = acts_;
    const BackwardScratch<T>& d = a.backward;
    const StageTimer timer(profile_);
    const bool in_bf16 = precision() == Precision::bf16;
    auto attend_backward = [&](T* dqkv, const T* datty, const auto* qkv, const auto* atty,
                               const T* lse) { // qkv and atty in T, or kept in bf16
        if constexpr (std::is_same_v<decltype(qkv), const T*>)
            if (!in_bf16)
                return attention_backward(dqkv, a.attn, attn_slots_, datty, qkv, atty, lse, B, Tn,
                                          C, NH);
        if constexpr (std::is_same_v<T, float>)
            attention_backward_bf16(dqkv, a.attn, attn_slots_, datty, qkv, atty, lse, B, Tn, C, NH);
    };

    // The forward's classifier left d loss/d lnf in d.dbt_c and added its part of dwte.
    TIMED(kPointwise, fill_zero(d.dresidual, BT * C));
    TIMED(kNorm,
          layernorm_backward(d.dresidual, g.lnf_w, g.lnf_b, d.dbt_c, a.layer(L - 1).residual3,
                             p.lnf_w, a.lnf_mean, a.lnf_rstd, N, C));
    for (int l = L - 1; l >= 0; --l) {
        block_backward(g.layer(l), p.layer(l), a.layer(l), d, N, C, mm_, recompute_,
                       attend_backward, timer);
        if (backward_hook_) backward_hook_(l);
    }
    TIMED(kPointwise, encoder_backward(g.wte, g.wpe, d.dresidual, tokens_.data(), B, Tn, C));
    if (backward_hook_) backward_hook_(-1);
    awaits_backward_ = false;
}

template <class T> void GPT2<T>::start_generation(int max_positions) {
    const Config& c = config();
    if (max_positions < 1 || max_positions > c.max_seq)
        throw std::invalid_argument("generation needs 1.." + std::to_string(c.max_seq) +
                                    " positions, not " + std::to_string(max_positions));
    kv_positions_ = max_positions;
    size_t total = 0;
    assign_step_activations(step_acts_, c, max_positions, counter<T>(total));
    step_memory_.assign(total, T(0));
    assign_step_activations(step_acts_, c, max_positions, carver(step_memory_.data()));
    prepare_matmuls(1, false, false); // a step's activations are all in T
}

// The forward pass of one position, B = T = 1, with attention over the cache.
template <class T> const T* GPT2<T>::step(int token, int pos) {
    const Config& c = config();
    if (pos < 0 || pos >= kv_positions_)
        throw std::invalid_argument("position " + std::to_string(pos) + " is outside the " +
                                    std::to_string(kv_positions_) +
                                    " that start_generation made room for");
    if (token < 0 || token >= c.vocab)
        throw std::invalid_argument("token id " + std::to_string(token) +
                                    " is outside the vocabulary");
    const int C = c.n_embd, NH = c.n_head;
    const ParamViews<const T> p(params_.data(), layout_);
    const StepActivations<T>& s = step_acts_;
    const StageTimer untimed; // generation stays out of the training profile

    encoder_forward(s.x, &token, p.wte, p.wpe + size_t(pos) * C, 1, 1, C); // wpe row pos
    for (int l = 0; l < c.n_layer; ++l) {
        T* kv = s.layer_kv(l);
        // A step's buffers are all in T (StepActivations::block), never kept in bf16.
        auto attend = [&](auto* atty, T*, const auto* qkv) {
            if constexpr (std::is_same_v<decltype(qkv), const T*>) {
                std::copy(qkv + C, qkv + 3 * C, kv + size_t(pos) * 2 * C); // this position's k | v
                attention_step(atty, s.scores, qkv, kv, pos + 1, C, NH);
            }
        };
        block_forward(p.layer(l), s.block(), 1, C, mm_, attend, untimed);
    }
    layernorm_forward(s.ln, s.mean, s.rstd, s.x, p.lnf_w, p.lnf_b, 1, C);
    mm_.forward(s.logits, s.ln, p.wte, static_cast<const T*>(nullptr), 1, C, c.padded_vocab);
    return s.logits;
}

template class GPT2<float>;
template class GPT2<double>;
template void GPT2<float>::set_params<float>(const float*, size_t);
template void GPT2<float>::set_params<double>(const double*, size_t);
template void GPT2<double>::set_params<float>(const float*, size_t);
template void GPT2<double>::set_params<double>(const double*, size_t);

} // namespace model
