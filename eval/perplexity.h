// Perplexity of a text under a model, with the sliding windows GPT-2's evaluations use.
//
// With x = (<|endoftext|>, t_0, ..., t_{n-1}), context C and stride S (1 <= S <= C),
// window k ends at e_k = min(C + k*S, n); its input is x[max(0, e_k - C)] .. x[e_k - 1]
// and it scores t_{e_{k-1}} .. t_{e_k - 1} (e_{-1} = 0), each from the position that
// holds its predecessor. Every token is scored exactly once; tokens inside the
// overlap of two windows are context only. S = C gives lm-evaluation-harness's
// disjoint windows, a small S the overlapping evaluation of the GPT-2 reproductions.
#pragma once

#include <cstddef>
#include <functional>
#include <vector>

#include "model/gpt2.h"

namespace eval {

struct WindowOptions {
    int context = 1024; // C, at most the model's max_seq
    int stride = 1024;  // S
    int batch = 4;      // windows per forward pass
    int eot = 50256;    // x[0], the token every text is predicted after
};

// Negative log-likelihood (nats) of each token of `tokens`, predicted after an
// <|endoftext|>. on_window(done, total) reports progress in tokens.
std::vector<double> token_nll(model::GPT2<float>& model, const std::vector<int>& tokens,
                              const WindowOptions& options,
                              const std::function<void(size_t, size_t)>& on_window = {});

} // namespace eval
