// GPT-2's layers, each a forward/backward pair of free functions, templated on the
// scalar type (float for training, double for gradient checks).
//
// Conventions, as in llm.c:
// - outputs come first; N = B*T rows; a shape (B,T,C) is row-major, C fastest.
// - backward functions ACCUMULATE (+=) into every gradient they write, so the caller
//   zeroes a buffer once and several paths (or micro-batches) can add into it.
//   The exceptions, which assign, are softmax_crossentropy_backward and
//   gelu_backward_in_place.
// - No function allocates; scratch space is passed in.
#pragma once

#include <cstddef>

#include "model/bf16.h"

namespace model {

// Token + position embedding.
// out (B,T,C) = wte[tokens[b,t]] + wpe[t];  tokens (B,T), wte (Vp,C), wpe (maxT,C)
template <class T>
void encoder_forward(T* out, const int* tokens, const T* wte, const T* wpe, int B, int Tn, int C);
// dwte (Vp,C), dwpe (maxT,C) += from dout (B,T,C)
template <class T>
void encoder_backward(T* dwte, T* dwpe, const T* dout, const int* tokens, int B, int Tn, int C);

// LayerNorm over the last axis, eps 1e-5, biased variance.
// out (N,C), mean (N), rstd (N) = 1/sqrt(var + eps); inp (N,C), weight (C), bias (C).
// Out = T, or bf16 for float (out rounded once, as a bf16 product's input).
template <class T, class Out>
void layernorm_forward(Out* out, T* mean, T* rstd, const T* inp, const T* weight, const T* bias,
                       int N, int C);
// dinp (N,C), dweight (C), dbias (C) += from dout (N,C) and the forward's mean, rstd
template <class T>
void layernorm_backward(T* dinp, T* dweight, T* dbias, const T* dout, const T* inp, const T* weight,
                        const T* mean, const T* rstd, int N, int C);
// The forward's out (N,C) again, from inp and the mean and rstd it kept: bit for bit
// what layernorm_forward wrote.
template <class T, class Out>
void layernorm_recompute(Out* out, const T* inp, const T* weight, const T* bias, const T* mean,
                         const T* rstd, int N, int C);

// Linear layer. out (N,OC) = inp (N,C) @ weight^T + bias;  weight (OC,C), bias (OC) or null
template <class T>
void matmul_forward(T* out, const T* inp, const T* weight, const T* bias, int N, int C, int OC);
// dinp (N,C), dweight (OC,C), dbias (OC) (skipped if null) += from dout (N,OC)
template <class T>
void matmul_backward(T* dinp, T* dweight, T* dbias, const T* dout, const T* inp, const T* weight,
                     int N, int C, int OC);

// dbias (OC) += the column sums of dout (N,OC), in a fixed order whatever the threads.
template <class T> void bias_backward(T* dbias, const T* dout, int N, int OC);

// Causal multi-head self-attention on packed q,k,v, in blocks (FlashAttention-2): no
// (T,T) matrix is stored, in either direction.
// qkv (B,T,3C) holds q | k | v, each split into NH heads of hs = C/NH channels.
// out (B,T,C): softmax(q k^T / sqrt(hs)) v over the causal prefix, heads side by side;
// lse (B,NH,T): each query's log-sum-exp of its scores q.k / sqrt(hs) (natural log),
// kept for backward. scratch holds n_slots slots of attention_scratch_size<T>(T, hs)
// elements, one per thread (n_slots >= 1 threads are used).
template <class T>
void attention_forward(T* out, T* lse, T* scratch, int n_slots, const T* qkv, int B, int Tn, int C,
                       int NH);
// dqkv (B,T,3C) += from dout (B,T,C), recomputing the probabilities from qkv and the
// forward's lse (B,NH,T) and out (B,T,C); scratch as for the forward.
template <class T>
void attention_backward(T* dqkv, T* scratch, int n_slots, const T* dout, const T* qkv, const T* out,
                        const T* lse, int B, int Tn, int C, int NH);
// Elements of scratch one thread needs for T positions and heads of hs channels, in
// either direction: blocks, and the dq and D of one head (T = 1024, hs = 64: 420 KB).
template <class T> size_t attention_scratch_size(int Tn, int hs);

// The same attention with bfloat16 products (model precision bf16): q, k, v, the
// probabilities, dout and dS are rounded to bfloat16 per block and multiplied with
// AVX512_BF16 dot products that accumulate in float; softmax, lse and all outputs stay
// float. Same shapes and scratch (attention_scratch_size<float>); needs cpu_has_bf16().
void attention_forward_bf16(float* out, float* lse, float* scratch, int n_slots, const float* qkv,
                            int B, int Tn, int C, int NH);
void attention_backward_bf16(float* dqkv, float* scratch, int n_slots, const float* dout,
                             const float* qkv, const float* out, const float* lse, int B, int Tn,
                             int C, int NH);
// The same with qkv and out kept in bf16, as a bf16 model keeps them: what the float
// versions compute on inputs already rounded to bf16, with out rounded once (nearest
// even) as it is written.
void attention_forward_bf16(bf16* out, float* lse, float* scratch, int n_slots, const bf16* qkv,
                            int B, int Tn, int C, int NH);
void attention_backward_bf16(float* dqkv, float* scratch, int n_slots, const float* dout,
                             const bf16* qkv, const bf16* out, const float* lse, int B, int Tn,
                             int C, int NH);

// One query position against cached keys and values, for generation (no backward).
// out (C) = softmax(q k^T / sqrt(hs)) v per head over positions 0..n-1;
// q (C); kv (n, 2C) holds each position's k | v; scores scratch (n).
template <class T>
void attention_step(T* out, T* scores, const T* q, const T* kv, int n, int C, int NH);

// GELU, tanh approximation (as GPT-2):
// out = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)));  out, inp (n).
// Out = T, or bf16 for float (out rounded once, as a bf16 product's input).
template <class T, class Out> void gelu_forward(Out* out, const T* inp, size_t n);
// dinp (n) += gelu'(inp) * dout
template <class T> void gelu_backward(T* dinp, const T* inp, const T* dout, size_t n);
// d (n) = gelu'(inp) * d: the gradient of GELU's output becomes that of its input, in
// place (ASSIGNS; the same numbers as gelu_backward into zeroes, without a second buffer).
template <class T> void gelu_backward_in_place(T* d, const T* inp, size_t n);
// The same on an input kept in bf16 (bf16 precision), in float arithmetic.
void gelu_forward(bf16* out, const bf16* inp, size_t n);
void gelu_backward(float* dinp, const bf16* inp, const float* dout, size_t n);
void gelu_backward_in_place(float* d, const bf16* inp, size_t n);

// Residual add. out (n) = a + b
template <class T> void residual_forward(T* out, const T* a, const T* b, size_t n);
// da, db (n) += dout
template <class T> void residual_backward(T* da, T* db, const T* dout, size_t n);

// Softmax over the first V of Vp logits and cross-entropy against targets.
// logits (N,Vp) -> probs (N,Vp) (may alias logits; columns V..Vp-1 become 0);
// losses (N) = -log probs[target], or 0 where target == -1 (ignored).
// targets (N) in [-1, V). Returns the number of targets that are not ignored.
template <class T>
int softmax_crossentropy_forward(T* probs, T* losses, const T* logits, const int* targets, int N,
                                 int V, int Vp);
// dlogits (N,Vp) = dloss * (probs - onehot(target)) for each kept row, 0 for ignored rows
// and for the padded columns. ASSIGNS (dlogits may alias probs). With dloss = 1/kept this
// is the gradient of the mean loss over kept targets.
template <class T>
void softmax_crossentropy_backward(T* dlogits, const T* probs, const int* targets, T dloss, int N,
                                   int V, int Vp);

// The fused classifier's work on N rows, in place: logits (N,Vp) become the probabilities
// of softmax_crossentropy_forward, or with `grad` the dlogits of
// softmax_crossentropy_backward (the same numbers); losses (N) as there, and
// predictions (N) = each row's argmax over the V logits (the first of ties). Returns the
// number of targets that are not ignored.
template <class T>
int crossentropy_fused(T* logits, T* losses, int* predictions, const int* targets, bool grad,
                       T dloss, int N, int V, int Vp);
// The same with grad, the dlogits written to dlogits (N,Vp) in bf16 (each the float value
// rounded once) rather than in place; logits are left as scratch.
int crossentropy_fused(float* logits, bf16* dlogits, float* losses, int* predictions,
                       const int* targets, float dloss, int N, int V, int Vp);

} // namespace model
