#include "eval/perplexity.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "base/error.h"
#include "eval/detokenize.h"

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
        throw base::SettingError("context", "must be in 1.." + std::to_string(max_seq) +
                                                " (the model's positions), got " +
                                                std::to_string(o.context));
    if (o.stride < 1 || o.stride > o.context)
        throw base::SettingError("stride", "must be in 1..context (" + std::to_string(o.context) +
                                               "), got " + std::to_string(o.stride));
    if (o.batch < 1) throw base::SettingError("batch", "must be positive");
    const size_t n = tokens.size();
    std::vector<double> nll(n, 0.0);
    if (n == 0) return nll;

    // x[0] = <|endoftext|>, x[j + 1] = t_j; input position p of a window predicts x[begin + p + 1].
    std::vector<int> x(n + 1);
    if (o.eot < 0 || o.eot >= model.config().vocab)
        throw base::SettingError("eot", "end-of-text id " + std::to_string(o.eot) +
                                            " is outside the vocabulary");
    x[0] = o.eot;
    std::copy(tokens.begin(), tokens.end(), x.begin() + 1);
    const auto windows = make_windows(n, size_t(o.context), size_t(o.stride));

    const int T = int(std::min<size_t>(n, size_t(o.context)));
    if (model.reserved_batch() < o.batch || model.reserved_seq() < T)
        model.reserve(o.batch, T, false);
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

double TextPerplexity::ppl_token() const {
    return std::exp(nll / double(std::max<size_t>(tokens, 1)));
}
double TextPerplexity::ppl_word() const {
    return std::exp(nll / double(std::max<size_t>(words, 1)));
}
double TextPerplexity::byte_perplexity() const {
    return std::exp(nll / double(std::max<size_t>(bytes, 1)));
}
double TextPerplexity::bits_per_byte() const {
    return nll / double(std::max<size_t>(bytes, 1)) / std::log(2.0);
}

const char* protocol_name(Protocol protocol) {
    switch (protocol) {
    case Protocol::lm_eval:
        return "lm-eval";
    case Protocol::megatron:
        return "megatron";
    case Protocol::hf:
        return "hf";
    }
    return "?";
}

TextPerplexity text_perplexity(model::GPT2<float>& model, data::Tokenizer& tokenizer,
                               const std::string& raw, const std::string& name,
                               const TextOptions& o,
                               const std::function<void(size_t, size_t)>& progress) {
    Detokenizer detok = Detokenizer::none;
    if (o.detokenizer)
        detok = *o.detokenizer;
    else if (name.find("wiki") != std::string::npos)
        detok = Detokenizer::wikitext;
    else if (name.find("ptb") != std::string::npos)
        detok = Detokenizer::ptb;
    TextPerplexity r;
    r.protocol = o.protocol;
    r.detokenizer = detok;

    std::vector<std::string> docs;
    if (o.protocol == Protocol::lm_eval && detok == Detokenizer::wikitext)
        docs = split_wikitext_articles(raw);
    else
        docs = {raw};
    for (const auto& d : docs) {
        r.bytes += d.size();
        switch (o.protocol) {
        case Protocol::lm_eval:
            r.words += count_words_lm_eval(d);
            break;
        case Protocol::hf:
            r.words += count_words(d);
            break;
        case Protocol::megatron:
            r.words += count_words_megatron(d);
            break; // docs = {raw}
        }
    }

    if (raw.empty()) throw base::FileError(name, "empty: there is no text to score");
    if (o.context < 0)
        throw base::SettingError("context", "must be at least 1, got " + std::to_string(o.context));
    if (o.stride < 0)
        throw base::SettingError("stride", "must be at least 1, got " + std::to_string(o.stride));
    WindowOptions wo;
    wo.context = o.context > 0 ? o.context : model.config().max_seq;
    if (o.stride > wo.context)
        throw base::SettingError("stride", "must be at most the context (" +
                                               std::to_string(wo.context) + "), got " +
                                               std::to_string(o.stride));
    const int protocol_stride = o.protocol == Protocol::lm_eval    ? wo.context
                                : o.protocol == Protocol::megatron ? 32
                                                                   : 512;
    wo.stride = o.stride > 0 ? o.stride : protocol_stride;
    wo.stride = std::min(wo.stride, wo.context);
    wo.batch = o.batch;
    r.context = wo.context;
    r.stride = wo.stride;
    std::vector<std::vector<int>> doc_tokens;
    for (const auto& d : docs) {
        if (r.cut) break;
        doc_tokens.push_back(tokenizer.encode(detokenize(d, detok)));
        if (o.max_tokens && r.tokens + doc_tokens.back().size() >= o.max_tokens) {
            r.cut = r.tokens + doc_tokens.back().size() > o.max_tokens ||
                    doc_tokens.size() < docs.size();
            doc_tokens.back().resize(o.max_tokens - r.tokens);
        }
        r.tokens += doc_tokens.back().size();
    }
    r.documents = doc_tokens.size();
    size_t done = 0;
    for (const auto& ids : doc_tokens) {
        for (double v : token_nll(model, ids, wo, [&](size_t d, size_t) {
                 if (progress) progress(done + d, r.tokens);
             }))
            r.nll += v;
        done += ids.size();
    }
    return r;
}

} // namespace eval
