// Text generation from a model: temperature, top-k and top-p sampling, reproducible
// from a seed (temperature 0 is greedy).
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "model/gpt2.h"

namespace eval {

struct SampleOptions {
    int max_tokens = 64;
    double temperature = 1.0; // 0 = greedy
    int top_k = 0;            // 0 = all
    double top_p = 1.0;       // nucleus; 1 = all
    uint64_t seed = 1337;
    int stop_token = -1; // stop after generating this id (e.g. <|endoftext|>); -1 = never
};

// One vocabulary entry while picking: its logit, id and unnormalised probability.
struct Candidate {
    float logit;
    int token;
    double p;
};

// Picks the next token from logits (V values) as the options say; u is uniform in [0,1).
// scratch is reused across calls, so that picking allocates nothing after the first.
int pick_token(const float* logits, int V, const SampleOptions& o, double u,
               std::vector<Candidate>& scratch);

// Extends prompt (non-empty) by up to max_tokens tokens with the model's key/value
// cache, calling on_token for each as it comes; returns the new tokens. A prompt longer
// than the context keeps its end; generation stops when the context is full.
std::vector<int> generate(model::GPT2<float>& model, const std::vector<int>& prompt,
                          const SampleOptions& options,
                          const std::function<void(int)>& on_token = {});

} // namespace eval
