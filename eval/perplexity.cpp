#include "eval/perplexity.h"

#include <algorithm>
#include <stdexcept>
#include <string>

namespace eval {

namespace {

struct Window {
    size_t begin, end; // input x[begin, end)
    size_t first;      // first scored token index j (t_j sits at x[j + 1])
};

std::vector<Window> make_windows(size_t n, size_t C, size_t S) {
    std::vector<Window> windows;
    size_t prev = 0;
    for (size_t k = 0; prev < n; ++k) {
        const size_t e = std::min(C + k * S, n);
        windows.push_back({e > C ? e - C : 0, e, prev});
        prev = e;
    }
    return windows;
}

} // namespace

std::vector<double> token_nll(model::GPT2<float>& model, const std::vector<int>& tokens,
                              const WindowOptions& o,
                              const std::function<void(size_t, size_t)>& on_window) {
    const int max_seq = model.config().max_seq;
    if (o.context < 1 || o.context > max_seq)
        throw std::invalid_argument("--context must be in 1.." + std::to_string(max_seq));
    if (o.stride < 1 || o.stride > o.context)
        throw std::invalid_argument("--stride must be in 1..context (" + std::to_string(o.context) + ")");
    if (o.batch < 1) throw std::invalid_argument("--batch must be positive");
    const size_t n = tokens.size();
    std::vector<double> nll(n, 0.0);
    if (n == 0) return nll;

    // x[0] = <|endoftext|>, x[j + 1] = t_j; input position p of a window predicts x[begin + p + 1].
    std::vector<int> x(n + 1);
    if (o.eot < 0 || o.eot >= model.config().vocab)
        throw std::invalid_argument("end-of-text id " + std::to_string(o.eot) + " is outside the vocabulary");
    x[0] = o.eot;
    std::copy(tokens.begin(), tokens.end(), x.begin() + 1);
    const auto windows = make_windows(n, size_t(o.context), size_t(o.stride));

    const int T = int(std::min<size_t>(n, size_t(o.context)));
    if (model.reserved_batch() < o.batch || model.reserved_seq() < T) model.reserve(o.batch, T, false);
    std::vector<int> inputs(size_t(o.batch) * T), targets(inputs.size());
    // Windows of equal length run together; all but the first few have length C.
    for (size_t w = 0; w < windows.size();) {
        const int len = int(windows[w].end - windows[w].begin);
        int b = 0;
        for (; b < o.batch && w + b < windows.size() &&
               int(windows[w + b].end - windows[w + b].begin) == len;
             ++b) {
            const Window& win = windows[w + b];
            for (int p = 0; p < len; ++p) {
                const size_t j = win.begin + p; // predicts t_j
                inputs[size_t(b) * len + p] = x[win.begin + p];
                targets[size_t(b) * len + p] = j >= win.first ? x[j + 1] : -1;
            }
        }
        model.forward(inputs.data(), targets.data(), b, len);
        const float* losses = model.losses();
        for (int i = 0; i < b; ++i) {
            const Window& win = windows[w + i];
            for (size_t j = win.first; j < win.end; ++j)
                nll[j] = losses[size_t(i) * len + (j - win.begin)];
        }
        w += b;
        if (on_window) on_window(windows[w - 1].end, n);
    }
    return nll;
}

} // namespace eval
