// Softmax + cross-entropy over the real vocabulary. Shapes in layers.h.
#include "model/layers.h"

#include "model/fastmath.h"

#include <algorithm>
#include <cmath>

namespace model {

namespace {

// out (V) = exp(x - mx) (out may alias x); returns their sum: one row's unnormalised
// softmax, the one expression of it for both versions of the loss below.
template <class T> T exp_shifted(T* out, const T* x, T mx, int V) {
    T sum = 0;
#pragma omp simd reduction(+ : sum)
    for (int v = 0; v < V; ++v) {
        out[v] = exp_fast(x[v] - mx);
        sum += out[v];
    }
    return sum;
}

} // namespace

// probs (N,Vp) from logits (N,Vp) (may alias), losses (N); targets (N) in [-1, V)
template <class T>
int softmax_crossentropy_forward(T* probs, T* losses, const T* logits, const int* targets, int N,
                                 int V, int Vp) {
    int kept = 0;
#pragma omp parallel for reduction(+ : kept)
    for (int n = 0; n < N; ++n) {
        const T* x = logits + size_t(n) * Vp;
        T* p = probs + size_t(n) * Vp;
        const T mx = *std::max_element(x, x + V);
        const int target = targets ? targets[n] : -1;
        // Read the target's logit before p (which may alias x) is overwritten.
        const T x_target = target >= 0 ? x[target] : T(0);
        const T sum = exp_shifted(p, x, mx, V);
        const T inv = T(1) / sum;
        for (int v = 0; v < V; ++v) p[v] *= inv;
        std::fill(p + V, p + Vp, T(0));
        // -log softmax from the logits, not log(p): exact even where p underflows.
        losses[n] = target >= 0 ? std::log(sum) - (x_target - mx) : T(0);
        kept += target >= 0;
    }
    return kept;
}

// dlogits (N,Vp) = dloss * (probs - onehot(target)), 0 for ignored rows and padding.
template <class T>
void softmax_crossentropy_backward(T* dlogits, const T* probs, const int* targets, T dloss, int N,
                                   int V, int Vp) {
#pragma omp parallel for
    for (int n = 0; n < N; ++n) {
        const T* p = probs + size_t(n) * Vp;
        T* d = dlogits + size_t(n) * Vp;
        const int target = targets[n];
        if (target < 0) {
            std::fill(d, d + Vp, T(0));
            continue;
        }
        for (int v = 0; v < V; ++v) d[v] = dloss * p[v];
        d[target] -= dloss;
        std::fill(d + V, d + Vp, T(0));
    }
}

namespace {

// The index of the first largest of x[0..V), as std::max_element (which compares one
// element at a time: 80% of the classifier's loss time): each of 16 lanes keeps its first
// largest, then the largest of those, the first on ties. NaNs are never larger, so a row
// with NaN gets some index and a NaN loss.
template <class T> int argmax(const T* x, int V) {
    constexpr int L = 16;
    if (V < 2 * L) return int(std::max_element(x, x + V) - x);
    T best[L];
    int at[L];
    for (int l = 0; l < L; ++l) {
        best[l] = x[l];
        at[l] = l;
    }
    int v = L;
    for (; v + L <= V; v += L) {
#pragma omp simd
        for (int l = 0; l < L; ++l) {
            const bool larger = x[v + l] > best[l];
            best[l] = larger ? x[v + l] : best[l];
            at[l] = larger ? v + l : at[l];
        }
    }
    int b = 0;
    for (int l = 1; l < L; ++l)
        if (best[l] > best[b] || (best[l] == best[b] && at[l] < at[b])) b = l;
    int first = at[b];
    for (T mx = best[b]; v < V; ++v) // the tail comes after every lane's index
        if (x[v] > mx) {
            mx = x[v];
            first = v;
        }
    return first;
}

// One row of the fused classifier: x (V logits, Vp in all) becomes its probabilities, or
// with grad (d not null) d gets dloss * (probs - onehot) as Out, x then being scratch (d may
// be x); the row's loss and prediction. Returns whether the target is kept. The arithmetic
// of softmax_crossentropy_forward and softmax_crossentropy_backward.
template <class T, class Out>
bool crossentropy_row(T* x, Out* d, T& loss, int& prediction, int target, T dloss, int V, int Vp) {
    const int best = argmax(x, V);
    const T mx = x[best];
    prediction = best;
    loss = T(0);
    if (target < 0 && d) {
        std::fill(d, d + Vp, store_as<Out>(T(0))); // an ignored row has no gradient
        return false;
    }
    const T x_target = target >= 0 ? x[target] : T(0);
    const T sum = exp_shifted(x, x, mx, V);
    const T inv = T(1) / sum;
    if (d) {
        for (int v = 0; v < V; ++v) {
            const T g = dloss * (x[v] * inv);
            d[v] = store_as<Out>(v == target ? g - dloss : g);
        }
        std::fill(d + V, d + Vp, store_as<Out>(T(0)));
    } else {
        for (int v = 0; v < V; ++v) x[v] *= inv;
        std::fill(x + V, x + Vp, T(0));
    }
    if (target >= 0) loss = std::log(sum) - (x_target - mx);
    return target >= 0;
}

} // namespace

// In place on logits (N,Vp): probs, or with grad dlogits = dloss * (probs - onehot);
// losses (N), predictions (N); targets (N) in [-1, V). Each row's arithmetic is that of
// softmax_crossentropy_forward and, with grad, softmax_crossentropy_backward.
template <class T>
int crossentropy_fused(T* logits, T* losses, int* predictions, const int* targets, bool grad,
                       T dloss, int N, int V, int Vp) {
    int kept = 0;
#pragma omp parallel for reduction(+ : kept)
    for (int n = 0; n < N; ++n) {
        T* x = logits + size_t(n) * Vp;
        kept += crossentropy_row(x, grad ? x : nullptr, losses[n], predictions[n], targets[n],
                                 dloss, V, Vp);
    }
    return kept;
}

// The same with the gradient written in bf16 to dlogits (N,Vp), each value the float
// version's rounded once; logits are left as scratch.
int crossentropy_fused(float* logits, bf16* dlogits, float* losses, int* predictions,
                       const int* targets, float dloss, int N, int V, int Vp) {
    int kept = 0;
#pragma omp parallel for reduction(+ : kept)
    for (int n = 0; n < N; ++n)
        kept += crossentropy_row(logits + size_t(n) * Vp, dlogits + size_t(n) * Vp, losses[n],
                                 predictions[n], targets[n], dloss, V, Vp);
    return kept;
}

#define INSTANTIATE(T)                                                                             \
    template int softmax_crossentropy_forward<T>(T*, T*, const T*, const int*, int, int, int);     \
    template void softmax_crossentropy_backward<T>(T*, const T*, const int*, T, int, int, int);    \
    template int crossentropy_fused<T>(T*, T*, int*, const int*, bool, T, int, int, int);
INSTANTIATE(float)
INSTANTIATE(double)

} // namespace model
