// Every buffer the forward pass writes and the backward pass reads, and the one place
// that knows where each layer's slice of them lies.
#pragma once

#include <algorithm>
#include <cstddef>

#include "model/bf16.h"
#include "model/config.h"
#include "model/layers.h"
#include "model/recompute.h"

namespace model {

// The buffers one transformer block reads and writes, for N = B*T rows.
template <class T> struct LayerActivations {
    T* residual;  // (N,C) block input: encoded for layer 0, else the last block's residual3
    T* ln1;       // (N,C)
    T* ln1_mean;  // (N)
    T* ln1_rstd;  // (N)
    T* qkv;       // (N,3C)
    T* atty;      // (N,C) attention output, kept for backward
    T* lse;       // (B,NH,T) attention log-sum-exp per query, kept for backward
    T* proj;      // (N,C) scratch shared by all layers: a branch's output before its add
    T* residual2; // (N,C) residual + attention branch
    T* ln2;       // (N,C)
    T* ln2_mean;  // (N)
    T* ln2_rstd;  // (N)
    T* fch;       // (N,4C)
    T* fch_gelu;  // (N,4C)
    T* residual3; // (N,C) block output: residual2 + MLP branch
    // In bf16 precision what the products and attention read is kept in bf16, rounded
    // once where it is written, in these instead, and ln1, qkv, atty, ln2, fch and
    // fch_gelu are null (float models only).
    bf16* ln1_bf16;      // (N,C)
    bf16* qkv_bf16;      // (N,3C)
    bf16* atty_bf16;     // (N,C)
    bf16* ln2_bf16;      // (N,C)
    bf16* fch_bf16;      // (N,4C)
    bf16* fch_gelu_bf16; // (N,4C)
};

// Gradients the backward pass passes between layers; each buffer is reused by every
// layer.
template <class T> struct BackwardScratch {
    T* dresidual; // (B,T,C) gradient of the residual stream
    T* dbt_c;     // (B,T,C) gradient of ln1/ln2/lnf outputs and of atty; from a training
                  // forward until its backward, the classifier's d loss/d lnf
    T* dfch;      // (B,T,4C) gradient of fch_gelu, then in place of fch; in the logits'
                  // memory, which the classifier is done with before backward
    T* dqkv;      // (B,T,3C) in dfch's memory: the attention branch's backward runs after
                  // the MLP branch's is done with it
};

// Carved from one allocation sized for at most (max_batch, max_seq) at reserve() time.
// Per-layer buffers stack L slices: ln1 is (L,B,T,C), lse is (L,B,NH,T), and so on;
// with Recompute (model/recompute.h), fch_gelu and ln1 = ln2 are one slice that all
// layers share. The bf16 buffers come from a second allocation of bf16.
template <class T> struct Activations {
    T* encoded;          // (B,T,C)
    T* ln1;              // (L,B,T,C)
    T* ln1_mean;         // (L,B,T)
    T* ln1_rstd;         // (L,B,T)
    T* qkv;              // (L,B,T,3C)
    T* atty;             // (L,B,T,C)
    T* lse;              // (L,B,NH,T)
    T* residual2;        // (L,B,T,C)
    T* ln2;              // (L,B,T,C)
    T* ln2_mean;         // (L,B,T)
    T* ln2_rstd;         // (L,B,T)
    T* fch;              // (L,B,T,4C)
    T* fch_gelu;         // (L,B,T,4C)
    T* residual3;        // (L,B,T,C)
    bf16* ln1_bf16;      // (L,B,T,C) in bf16 precision, instead of ln1, qkv, ..., fch_gelu
    bf16* qkv_bf16;      // (L,B,T,3C)
    bf16* atty_bf16;     // (L,B,T,C)
    bf16* ln2_bf16;      // (L,B,T,C)
    bf16* fch_bf16;      // (L,B,T,4C)
    bf16* fch_gelu_bf16; // (L,B,T,4C)
    T* lnf;              // (B,T,C)
    T* lnf_mean;         // (B,T)
    T* lnf_rstd;         // (B,T)
    T* logits;           // (rows,Vp): all B*T rows' logits, then probs after the loss; or, reserved
                         // for training, one chunk of rows of the fused classifier (and
                         // then at least (B,T,4C): backward.dfch)
    bf16* dlogits_bf16;  // (2 rows,Vp) in bf16 precision, reserved for training: two chunks'
                         // dlogits, for one weight-gradient product (else null)
    T* losses;           // (B,T)
    T* proj;             // (B,T,C) scratch: attention and MLP projections before the residual add
    T* attn;             // (slots, attention_scratch_size(T,hs)) attention's per-thread blocks
    BackwardScratch<T> backward; // null unless reserved for training
    // Elements in one layer's slice of a stacked buffer: (B,T), (B,T,C), (B,NH,T).
    size_t bt = 0, btc = 0, bht = 0;
    // Elements from one layer's ln1/ln2 and fch_gelu to the next's: 0 where shared.
    size_t ln_step = 0, gelu_step = 0;

    // Layer l's slice of every stacked buffer.
    LayerActivations<T> layer(int l) const {
        const size_t lbt = size_t(l) * bt, lbtc = size_t(l) * btc;
        auto at = [](auto* base, size_t offset) { return base ? base + offset : nullptr; };
        return {.residual = l == 0 ? encoded : residual3 + lbtc - btc,
                .ln1 = at(ln1, l * ln_step),
                .ln1_mean = ln1_mean + lbt,
                .ln1_rstd = ln1_rstd + lbt,
                .qkv = at(qkv, lbtc * 3),
                .atty = at(atty, lbtc),
                .lse = lse + size_t(l) * bht,
                .proj = proj,
                .residual2 = residual2 + lbtc,
                .ln2 = at(ln2, l * ln_step),
                .ln2_mean = ln2_mean + lbt,
                .ln2_rstd = ln2_rstd + lbt,
                .fch = at(fch, lbtc * 4),
                .fch_gelu = at(fch_gelu, l * gelu_step),
                .residual3 = residual3 + lbtc,
                .ln1_bf16 = at(ln1_bf16, l * ln_step),
                .qkv_bf16 = at(qkv_bf16, lbtc * 3),
                .atty_bf16 = at(atty_bf16, lbtc),
                .ln2_bf16 = at(ln2_bf16, l * ln_step),
                .fch_bf16 = at(fch_bf16, lbtc * 4),
                .fch_gelu_bf16 = at(fch_gelu_bf16, l * gelu_step)};
    }
};

// The one list of activation buffers and their sizes. take(n) hands out n elements of T
// (or, for sizing, just counts them), take_bf16(n) n of bf16; backward scratch is only
// taken for training, the attention's scratch (slots threads) always. logit_rows: the
// rows of the logits buffer (B*T, or a training model's chunk). bf16_kept: keep what the
// products and attention read in bf16 (bf16 precision).
template <class T, class Take, class TakeBf16>
void assign_activations(Activations<T>& a, const Config& c, size_t B, size_t Tn, bool training,
                        size_t slots, Recompute recompute, size_t logit_rows, bool bf16_kept,
                        Take&& take, TakeBf16&& take_bf16) {
    const size_t L = c.n_layer, C = c.n_embd, NH = c.n_head, BT = B * Tn;
    a.bt = BT;
    a.btc = BT * C;
    a.bht = B * NH * Tn;
    a.ln_step = recompute == Recompute::all ? 0 : a.btc;
    a.gelu_step = recompute == Recompute::off ? 4 * a.btc : 0;
    const size_t ln_size = a.ln_step ? L * a.btc : a.btc;
    const size_t gelu_size = a.gelu_step ? L * a.btc * 4 : a.btc * 4;
    auto take_kept = [&](size_t n, T*& f, bf16*& h) { // in T, or in bf16 if bf16_kept
        f = bf16_kept ? nullptr : take(n);
        h = bf16_kept ? take_bf16(n) : nullptr;
    };
    a.encoded = take(BT * C);
    take_kept(ln_size, a.ln1, a.ln1_bf16);
    a.ln1_mean = take(L * a.bt);
    a.ln1_rstd = take(L * a.bt);
    take_kept(L * a.btc * 3, a.qkv, a.qkv_bf16);
    take_kept(L * a.btc, a.atty, a.atty_bf16);
    a.lse = take(L * a.bht);
    a.residual2 = take(L * a.btc);
    if (a.ln_step) {
        take_kept(ln_size, a.ln2, a.ln2_bf16);
    } else { // one buffer for both
        a.ln2 = a.ln1;
        a.ln2_bf16 = a.ln1_bf16;
    }
    a.ln2_mean = take(L * a.bt);
    a.ln2_rstd = take(L * a.bt);
    take_kept(L * a.btc * 4, a.fch, a.fch_bf16);
    take_kept(gelu_size, a.fch_gelu, a.fch_gelu_bf16);
    a.residual3 = take(L * a.btc);
    a.lnf = take(BT * C);
    a.lnf_mean = take(BT);
    a.lnf_rstd = take(BT);
    // Training: the classifier's chunk of logits is done with before backward starts, so
    // dfch shares its memory.
    const size_t k = training ? 1 : 0;
    BackwardScratch<T>& d = a.backward;
    a.logits = take(std::max(logit_rows * size_t(c.padded_vocab), k * BT * 4 * C));
    d.dfch = training ? a.logits : nullptr;
    d.dqkv = d.dfch;
    a.dlogits_bf16 = training && bf16_kept
                         ? take_bf16(std::min(BT, 2 * logit_rows) * size_t(c.padded_vocab))
                         : nullptr;
    a.losses = take(BT);
    a.proj = take(BT * C);
    a.attn = take(slots * attention_scratch_size<T>(int(Tn), int(C / NH)));
    d.dresidual = take(k * BT * C);
    d.dbt_c = take(k * BT * C);
}

// Incremental decoding: one position's buffers (B = T = 1) and the key/value cache.
// Blocks run in place on x, so one LayerActivations serves every layer.
template <class T> struct StepActivations {
    T* kv;       // (L, positions, 2C) each layer's cached k | v per position
    T* x;        // (C) the residual stream
    T* ln;       // (C) ln1, ln2 and lnf output
    T* qkv;      // (3C)
    T* atty;     // (C)
    T* proj;     // (C)
    T* fch;      // (4C)
    T* fch_gelu; // (4C)
    T* mean;     // (1) LayerNorm statistics, not kept
    T* rstd;     // (1)
    T* logits;   // (Vp)
    T* scores;   // (positions) one head's attention weights, attention_step's scratch
    // Elements in one layer's cache, positions * 2C, set by assign_step_activations.
    size_t kv_layer = 0;

    // Layer l's cache (positions, 2C).
    T* layer_kv(int l) const { return kv + size_t(l) * kv_layer; }
    // What every block reads and writes: it works in place on x.
    LayerActivations<T> block() const {
        return {.residual = x,
                .ln1 = ln,
                .ln1_mean = mean,
                .ln1_rstd = rstd,
                .qkv = qkv,
                .atty = atty,
                .lse = nullptr, // a step keeps nothing for backward
                .proj = proj,
                .residual2 = x,
                .ln2 = ln,
                .ln2_mean = mean,
                .ln2_rstd = rstd,
                .fch = fch,
                .fch_gelu = fch_gelu,
                .residual3 = x,
                .ln1_bf16 = nullptr, // all in T: a step rounds in its products
                .qkv_bf16 = nullptr,
                .atty_bf16 = nullptr,
                .ln2_bf16 = nullptr,
                .fch_bf16 = nullptr,
                .fch_gelu_bf16 = nullptr};
    }
};

// The list of step buffers for up to `positions` positions; take() as above.
template <class T, class Take>
void assign_step_activations(StepActivations<T>& s, const Config& c, size_t positions,
                             Take&& take) {
    const size_t L = c.n_layer, C = c.n_embd;
    s.kv_layer = positions * 2 * C;
    s.kv = take(L * s.kv_layer);
    s.x = take(C);
    s.ln = take(C);
    s.qkv = take(3 * C);
    s.atty = take(C);
    s.proj = take(C);
    s.fch = take(4 * C);
    s.fch_gelu = take(4 * C);
    s.mean = take(1);
    s.rstd = take(1);
    s.logits = take(size_t(c.padded_vocab));
    s.scores = take(positions);
}

} // namespace model
