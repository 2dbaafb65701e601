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
#include <optional>
#include <string>
#include <vector>

#include "data/tokenizer.h"
#include "eval/detokenize.h"
#include "model/gpt2.h"

namespace eval {

struct WindowOptions {
    int context = 1024;                    // C, at most the model's max_seq
    int stride = 1024;                     // S
    int batch = 4;                         // windows per forward pass
    int eot = data::Tokenizer::kEndOfText; // x[0], the token every text is predicted after
};

// Negative log-likelihood (nats) of each token of `tokens`, predicted after an
// <|endoftext|>. on_window(done, total) reports progress in tokens.
std::vector<double> token_nll(model::GPT2<float>& model, const std::vector<int>& tokens,
                              const WindowOptions& options,
                              const std::function<void(size_t, size_t)>& on_window = {});

// A text file's perplexity under one of the protocols users compare against:
//   lm_eval   wikitext pages as documents (other files: one document); disjoint windows
//             (stride = context); words = len(re.split(r"\s+", page)) per original page
//   megatron  the whole file; stride 32; words = len(text.strip().split(" ")) - 1 on the
//             original text, as Megatron-LM's adjusted perplexity divides by
//   hf        the whole file; stride 512; words = len(text.split())
// Bytes are those of the original text.
enum class Protocol { lm_eval, megatron, hf };
const char* protocol_name(Protocol protocol); // "lm-eval", "megatron", "hf"

struct TextOptions {
    Protocol protocol = Protocol::lm_eval;
    std::optional<Detokenizer> detokenizer; // none given: by file name (wiki*, ptb*)
    int context = 0, stride = 0, batch = 4; // 0: the model's maximum, the protocol's stride
                                            // (cut to the context; a stride given is not)
    size_t max_tokens = 0;                  // score only a prefix (0 = all)
};

struct TextPerplexity {
    Protocol protocol = Protocol::lm_eval;
    Detokenizer detokenizer = Detokenizer::none;
    size_t documents = 0, tokens = 0, words = 0, bytes = 0;
    int context = 0, stride = 0;
    double nll = 0;   // nats, summed over the tokens
    bool cut = false; // max_tokens left text unscored: words and bytes do not apply
    double ppl_token() const;
    double ppl_word() const;
    double bits_per_byte() const;
    double byte_perplexity() const; // exp(nll / bytes)
};

// Throws base::FileError(file_name) for an empty text, base::SettingError for a
// context or stride out of range (a stride given must be at most the context).
TextPerplexity text_perplexity(model::GPT2<float>& model, data::Tokenizer& tokenizer,
                               const std::string& text, const std::string& file_name,
                               const TextOptions& options,
                               const std::function<void(size_t, size_t)>& progress = {});

} // namespace eval
