#include "eval/sample.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <stdexcept>

namespace eval {

int pick_token(const float* logits, int V, const SampleOptions& o, double u,
               std::vector<Candidate>& scratch) {
    if (o.temperature <= 0) return int(std::max_element(logits, logits + V) - logits);
    scratch.resize(V);
    for (int v = 0; v < V; ++v) scratch[v] = {logits[v], v, 0.0};
    // Candidates in descending logit order, cut to top-k.
    int k = o.top_k > 0 ? std::min(o.top_k, V) : V;
    auto desc = [](const Candidate& a, const Candidate& b) {
        return a.logit > b.logit || (a.logit == b.logit && a.token < b.token);
    };
    std::partial_sort(scratch.begin(), scratch.begin() + k, scratch.end(), desc);
    const double mx = scratch[0].logit;
    double sum = 0;
    for (int i = 0; i < k; ++i)
        sum += scratch[i].p = std::exp((scratch[i].logit - mx) / o.temperature);
    // Nucleus: the smallest prefix whose probability reaches top_p.
    if (o.top_p < 1.0) {
        double acc = 0;
        for (int i = 0; i < k; ++i)
            if ((acc += scratch[i].p / sum) >= o.top_p) {
                k = i + 1;
                break;
            }
        sum = 0;
        for (int i = 0; i < k; ++i) sum += scratch[i].p;
    }
    double target = u * sum;
    for (int i = 0; i < k; ++i)
        if ((target -= scratch[i].p) < 0) return scratch[i].token;
    return scratch[k - 1].token;
}

std::vector<int> generate(model::GPT2<float>& model, const std::vector<int>& prompt,
                          const SampleOptions& o, const std::function<void(int)>& on_token) {
    if (prompt.empty()) throw std::invalid_argument("generation needs a non-empty prompt");
    const model::Config& c = model.config();
    // Positions are limited to the model's context: a long prompt keeps its end, and
    // generation stops when the context is full.
    const size_t keep = std::min(prompt.size(), size_t(c.max_seq));
    const int positions =
        int(std::min<size_t>(c.max_seq, keep + size_t(std::max(o.max_tokens, 0))));
    model.start_generation(positions);
    std::mt19937_64 rng(o.seed);
    std::vector<Candidate> scratch;
    std::vector<int> out;
    int pos = 0;
    const float* logits = nullptr;
    for (size_t i = prompt.size() - keep; i < prompt.size(); ++i)
        logits = model.step(prompt[i], pos++);
    while (int(out.size()) < o.max_tokens) {
        const double u = double(rng() >> 11) * 0x1.0p-53;
        const int token = pick_token(logits, c.vocab, o, u, scratch);
        out.push_back(token);
        if (on_token) on_token(token);
        if (token == o.stop_token || pos >= positions) break;
        logits = model.step(token, pos++);
    }
    return out;
}

} // namespace eval
