#include "eval/sample.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <stdexcept>

namespace eval {

int pick_token(const float* logits, int V, const SampleOptions& o, double u,
               std::vector<std::pair<float, int>>& scratch) {
    if (o.temperature <= 0) return int(std::max_element(logits, logits + V) - logits);
    scratch.resize(V);
    for (int v = 0; v < V; ++v) scratch[v] = {logits[v], v};
    // Candidates in descending logit order, cut to top-k.
    int k = o.top_k > 0 ? std::min(o.top_k, V) : V;
    auto desc = [](const auto& a, const auto& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); };
    std::partial_sort(scratch.begin(), scratch.begin() + k, scratch.end(), desc);
    const double mx = scratch[0].first;
    std::vector<double> p(k);
    double sum = 0;
    for (int i = 0; i < k; ++i) sum += p[i] = std::exp((scratch[i].first - mx) / o.temperature);
    // Nucleus: the smallest prefix whose probability reaches top_p.
    if (o.top_p < 1.0) {
        double acc = 0;
        for (int i = 0; i < k; ++i)
            if ((acc += p[i] / sum) >= o.top_p) {
                k = i + 1;
                break;
            }
        sum = 0;
        for (int i = 0; i < k; ++i) sum += p[i];
    }
    double target = u * sum;
    for (int i = 0; i < k; ++i)
        if ((target -= p[i]) < 0) return scratch[i].second;
    return scratch[k - 1].second;
}

std::vector<int> generate(model::GPT2<float>& model, const std::vector<int>& prompt,
                          const SampleOptions& o, const std::function<void(int)>& on_token) {
    if (prompt.empty()) throw std::invalid_argument("generation needs a non-empty prompt");
    const model::Config& c = model.config();
    if (model.reserved_seq() == 0)
        model.reserve(1, std::min<int>(c.max_seq, int(prompt.size()) + o.max_tokens), false);
    const int window_max = std::min(c.max_seq, model.reserved_seq());
    std::mt19937_64 rng(o.seed);
    std::vector<int> context = prompt, out;
    std::vector<std::pair<float, int>> scratch;
    for (int i = 0; i < o.max_tokens; ++i) {
        const int n = std::min<int>(int(context.size()), window_max);
        const int* window = context.data() + context.size() - n;
        model.forward(window, nullptr, 1, n);
        const float* last = model.logits() + size_t(n - 1) * c.padded_vocab;
        const double u = double(rng() >> 11) * 0x1.0p-53;
        const int token = pick_token(last, c.vocab, o, u, scratch);
        context.push_back(token);
        out.push_back(token);
        if (on_token) on_token(token);
        if (token == o.stop_token) break;
    }
    return out;
}

} // namespace eval
