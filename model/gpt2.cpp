#include "model/gpt2.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numbers>
#include <random>
#include <stdexcept>
#include <string>

#include <omp.h>

#include "model/blas.h"
#include "model/layers.h"

namespace model {

const char* stage_name(Stage stage) {
    static constexpr const char* kNames[kNumStages] = {"matmul", "attention", "layernorm",
                                                       "pointwise", "loss"};
    return kNames[stage];
}

// Runs one layer call, adding its wall time to profile_[stage].
#define TIMED(stage, call)                                                                         \
    do {                                                                                           \
        const auto timed_start_ = std::chrono::steady_clock::now();                                \
        call;                                                                                      \
        profile_[stage] +=                                                                         \
            std::chrono::duration<double>(std::chrono::steady_clock::now() - timed_start_)         \
                .count();                                                                          \
    } while (0)

template <class T>
GPT2<T>::GPT2(const Config& config) : layout_(config), params_(layout_.total(), T(0)) {}

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
}

template <class T> void GPT2<T>::allocate_grads() {
    if (grads_.empty()) grads_.assign(params_.size(), T(0));
}

template <class T> void GPT2<T>::zero_grad() {
    allocate_grads();
    std::fill(grads_.begin(), grads_.end(), T(0));
}

template <class T> void GPT2<T>::reserve(int max_batch, int max_seq, bool for_training) {
    if (max_batch <= 0 || max_seq <= 0 || max_seq > config().max_seq)
        throw std::invalid_argument(
            "batch " + std::to_string(max_batch) + " x sequence " + std::to_string(max_seq) +
            " is not possible (sequence must be 1.." + std::to_string(config().max_seq) + ")");
    attn_slots_ = for_training ? omp_get_max_threads() : 0;
    size_t total = 0;
    Activations<T> sizing{};
    assign_activations(sizing, config(), max_batch, max_seq, for_training, attn_slots_,
                       [&](size_t n) -> T* {
                           total += n;
                           return nullptr;
                       });
    act_memory_.assign(total, T(0));
    act_memory_.shrink_to_fit();
    tokens_.assign(size_t(max_batch) * max_seq, 0);
    targets_.assign(size_t(max_batch) * max_seq, -1);
    cap_batch_ = max_batch;
    cap_seq_ = max_seq;
    cap_training_ = for_training;
    if (for_training) allocate_grads();
}

// Points the activation fields into act_memory_ for this (B, T); no allocation.
template <class T> void GPT2<T>::carve(int B, int Tn) {
    T* next = act_memory_.data();
    assign_activations(acts_, config(), B, Tn, cap_training_, attn_slots_, [&](size_t n) {
        T* p = n ? next : nullptr;
        next += n;
        return p;
    });
}

template <class T> double GPT2<T>::forward(const int* tokens, const int* targets, int B, int Tn) {
    const Config& c = config();
    if (cap_batch_ == 0) reserve(B, Tn, !grads_.empty());
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
    has_targets_ = targets != nullptr;
    B_ = B;
    T_ = Tn;
    carve(B, Tn);

    const int L = c.n_layer, C = c.n_embd, NH = c.n_head, V = c.vocab, Vp = c.padded_vocab;
    const int N = int(BT);
    const ParamViews<const T> p(params_.data(), layout_);
    const Activations<T>& a = acts_;

    TIMED(kPointwise, encoder_forward(a.encoded, tokens_.data(), p.wte, p.wpe, B, Tn, C));
    for (int l = 0; l < L; ++l) {
        const LayerParams<const T> pl = p.layer(l);
        const LayerActivations<T> al = a.layer(l);
        TIMED(kNorm, layernorm_forward(al.ln1, al.ln1_mean, al.ln1_rstd, al.residual, pl.ln1_w,
                                       pl.ln1_b, N, C));
        TIMED(kMatmul, matmul_forward(al.qkv, al.ln1, pl.qkv_w, pl.qkv_b, N, C, 3 * C));
        TIMED(kAttention, attention_forward(al.atty, al.att, al.qkv, B, Tn, C, NH));
        TIMED(kMatmul, matmul_forward(al.proj, al.atty, pl.attproj_w, pl.attproj_b, N, C, C));
        TIMED(kPointwise, residual_forward(al.residual2, al.residual, al.proj, BT * C));
        TIMED(kNorm, layernorm_forward(al.ln2, al.ln2_mean, al.ln2_rstd, al.residual2, pl.ln2_w,
                                       pl.ln2_b, N, C));
        TIMED(kMatmul, matmul_forward(al.fch, al.ln2, pl.fc_w, pl.fc_b, N, C, 4 * C));
        TIMED(kPointwise, gelu_forward(al.fch_gelu, al.fch, BT * 4 * C));
        TIMED(kMatmul, matmul_forward(al.proj, al.fch_gelu, pl.fcproj_w, pl.fcproj_b, N, 4 * C, C));
        TIMED(kPointwise, residual_forward(al.residual3, al.residual2, al.proj, BT * C));
    }
    TIMED(kNorm, layernorm_forward(a.lnf, a.lnf_mean, a.lnf_rstd, a.layer(L - 1).residual3, p.lnf_w,
                                   p.lnf_b, N, C));
    TIMED(kMatmul,
          matmul_forward(a.logits, a.lnf, p.wte, static_cast<const T*>(nullptr), N, C, Vp));
    if (!targets) {
        kept_ = 0;
        return 0.0;
    }
    TIMED(kLoss, kept_ = softmax_crossentropy_forward(a.logits, a.losses, a.logits, targets_.data(),
                                                      N, V, Vp));
    double sum = 0;
    for (size_t i = 0; i < BT; ++i) sum += a.losses[i];
    return kept_ ? sum / kept_ : 0.0;
}

template <class T> void GPT2<T>::backward() {
    if (!has_targets_) throw std::logic_error("backward() needs a forward() with targets");
    if (!cap_training_ || grads_.empty())
        throw std::logic_error("backward() needs reserve(..., for_training = true)");
    const Config& c = config();
    const int L = c.n_layer, C = c.n_embd, NH = c.n_head, V = c.vocab, Vp = c.padded_vocab;
    const int B = B_, Tn = T_, N = B * Tn;
    const size_t BT = size_t(N);
    const ParamViews<const T> p(params_.data(), layout_);
    const ParamViews<T> g(grads_.data(), layout_);
    const Activations<T>& a = acts_;
    const BackwardScratch<T>& d = a.backward;
    auto zero = [](T* x, size_t n) { std::fill(x, x + n, T(0)); };

    // The loss is the mean over kept targets: each kept row's loss has weight 1/kept.
    const T dloss = kept_ ? T(1) / T(kept_) : T(0);
    TIMED(kLoss,
          softmax_crossentropy_backward(a.logits, a.logits, targets_.data(), dloss, N, V, Vp));
    TIMED(kPointwise, zero(d.dbt_c, BT * C));
    TIMED(kMatmul, matmul_backward(d.dbt_c, g.wte, static_cast<T*>(nullptr), a.logits, a.lnf, p.wte,
                                   N, C, Vp));
    TIMED(kPointwise, zero(d.dresidual, BT * C));
    TIMED(kNorm,
          layernorm_backward(d.dresidual, g.lnf_w, g.lnf_b, d.dbt_c, a.layer(L - 1).residual3,
                             p.lnf_w, a.lnf_mean, a.lnf_rstd, N, C));

    // dresidual holds the gradient of the residual stream. Going back through a block,
    // residual3 = residual2 + mlp(...) and residual2 = residual + attn(...): the skip
    // path passes dresidual through unchanged, so each branch's backward just adds its
    // input gradient (from the LayerNorm) into dresidual.
    for (int l = L - 1; l >= 0; --l) {
        const LayerParams<const T> pl = p.layer(l);
        const LayerParams<T> gl = g.layer(l);
        const LayerActivations<T> al = a.layer(l);

        // MLP branch: residual3 = residual2 + fcproj(gelu(fc(ln2(residual2)))).
        TIMED(kPointwise, zero(d.dfch_gelu, BT * 4 * C));
        TIMED(kMatmul, matmul_backward(d.dfch_gelu, gl.fcproj_w, gl.fcproj_b, d.dresidual,
                                       al.fch_gelu, pl.fcproj_w, N, 4 * C, C));
        TIMED(kPointwise, zero(d.dfch, BT * 4 * C));
        TIMED(kPointwise, gelu_backward(d.dfch, al.fch, d.dfch_gelu, BT * 4 * C));
        TIMED(kPointwise, zero(d.dbt_c, BT * C));
        TIMED(kMatmul,
              matmul_backward(d.dbt_c, gl.fc_w, gl.fc_b, d.dfch, al.ln2, pl.fc_w, N, C, 4 * C));
        TIMED(kNorm, layernorm_backward(d.dresidual, gl.ln2_w, gl.ln2_b, d.dbt_c, al.residual2,
                                        pl.ln2_w, al.ln2_mean, al.ln2_rstd, N, C));

        // Attention branch: residual2 = residual + attproj(attention(qkv(ln1(residual)))).
        TIMED(kPointwise, zero(d.dbt_c, BT * C));
        TIMED(kMatmul, matmul_backward(d.dbt_c, gl.attproj_w, gl.attproj_b, d.dresidual, al.atty,
                                       pl.attproj_w, N, C, C));
        TIMED(kPointwise, zero(d.dqkv, BT * 3 * C));
        TIMED(kAttention, attention_backward(d.dqkv, d.datt, attn_slots_, d.dbt_c, al.qkv, al.att,
                                             B, Tn, C, NH));
        TIMED(kPointwise, zero(d.dbt_c, BT * C));
        TIMED(kMatmul,
              matmul_backward(d.dbt_c, gl.qkv_w, gl.qkv_b, d.dqkv, al.ln1, pl.qkv_w, N, C, 3 * C));
        TIMED(kNorm, layernorm_backward(d.dresidual, gl.ln1_w, gl.ln1_b, d.dbt_c, al.residual,
                                        pl.ln1_w, al.ln1_mean, al.ln1_rstd, N, C));
        if (backward_hook_) backward_hook_(l);
    }
    TIMED(kPointwise, encoder_backward(g.wte, g.wpe, d.dresidual, tokens_.data(), B, Tn, C));
    if (backward_hook_) backward_hook_(-1);
    has_targets_ = false; // the probabilities have become gradients
}

template <class T> void GPT2<T>::start_generation(int max_positions) {
    const Config& c = config();
    if (max_positions < 1 || max_positions > c.max_seq)
        throw std::invalid_argument("generation needs 1.." + std::to_string(c.max_seq) +
                                    " positions, not " + std::to_string(max_positions));
    kv_positions_ = max_positions;
    kv_cache_.assign(size_t(c.n_layer) * max_positions * 2 * c.n_embd, T(0));
    // x, ln, qkv (3C), atty, proj, fch (4C), fch_gelu (4C), mean|rstd, logits (Vp), scores
    step_memory_.assign(size_t(15) * c.n_embd + 2 + c.padded_vocab + max_positions, T(0));
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
    const int C = c.n_embd;
    const ParamViews<const T> p(params_.data(), layout_);
    T* x = step_memory_.data();
    T* ln = x + C;
    T* qkv = ln + C;
    T* atty = qkv + 3 * C;
    T* proj = atty + C;
    T* fch = proj + C;
    T* fch_gelu = fch + 4 * C;
    T* stats = fch_gelu + 4 * C; // mean, rstd
    T* logits = stats + 2;
    T* scores = logits + c.padded_vocab;

    encoder_forward(x, &token, p.wte, p.wpe + size_t(pos) * C, 1, 1, C);
    for (int l = 0; l < c.n_layer; ++l) {
        const LayerParams<const T> pl = p.layer(l);
        T* kv = kv_cache_.data() + size_t(l) * kv_positions_ * 2 * C;
        layernorm_forward(ln, stats, stats + 1, x, pl.ln1_w, pl.ln1_b, 1, C);
        matmul_forward(qkv, ln, pl.qkv_w, pl.qkv_b, 1, C, 3 * C);
        std::copy(qkv + C, qkv + 3 * C, kv + size_t(pos) * 2 * C); // this position's k | v
        attention_step(atty, scores, qkv, kv, pos + 1, C, c.n_head);
        matmul_forward(proj, atty, pl.attproj_w, pl.attproj_b, 1, C, C);
        residual_forward(x, x, proj, size_t(C));
        layernorm_forward(ln, stats, stats + 1, x, pl.ln2_w, pl.ln2_b, 1, C);
        matmul_forward(fch, ln, pl.fc_w, pl.fc_b, 1, C, 4 * C);
        gelu_forward(fch_gelu, fch, size_t(4) * C);
        matmul_forward(proj, fch_gelu, pl.fcproj_w, pl.fcproj_b, 1, 4 * C, C);
        residual_forward(x, x, proj, size_t(C));
    }
    layernorm_forward(ln, stats, stats + 1, x, p.lnf_w, p.lnf_b, 1, C);
    matmul_forward(logits, ln, p.wte, static_cast<const T*>(nullptr), 1, C, c.padded_vocab);
    return logits;
}

template class GPT2<float>;
template class GPT2<double>;
template void GPT2<float>::set_params<float>(const float*, size_t);
template void GPT2<float>::set_params<double>(const double*, size_t);
template void GPT2<double>::set_params<float>(const float*, size_t);
template void GPT2<double>::set_params<double>(const double*, size_t);

} // namespace model
