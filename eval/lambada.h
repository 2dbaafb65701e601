// LAMBADA: predict the last word of a passage (lm-evaluation-harness's lambada_openai).
//
// Each passage is split at its last space and encoded as the harness's _encode_pair
// does (encode_lambada_word). An example is correct when greedy
// decoding reproduces every target token (the argmax at each target position, with
// the true target tokens fed back), and its NLL is the sum over the target tokens.
// Perplexity = exp(mean NLL per example), as lm-evaluation-harness aggregates it.
// With Target::token the target is the passage's last BPE token instead.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "data/tokenizer.h"
#include "model/gpt2.h"

namespace eval {

struct LambadaExample {
    std::string context, target; // target includes its leading whitespace
    std::vector<int> context_ids, target_ids;
};

// A passage as lm-evaluation-harness's lambada_openai scores it: context = the text
// before its last space (text.rsplit(" ", 1)), target = " " + the last word; a text
// with no space is all last word. Then as its _encode_pair: whitespace at the end of
// the context moves to the front of the target, and the target's tokens are those of
// encode(context + target) after the first len(encode(context)). An empty context
// (a text that has no space, starts with its only space, or whose context is all
// whitespace) becomes <|endoftext|>, and the target is encoded alone.
LambadaExample encode_lambada_word(const std::string& text, data::Tokenizer& tokenizer);

struct LambadaResult {
    struct Item {
        bool correct;
        double nll;
        std::vector<int> predicted; // greedy token at each target position
    };
    std::vector<Item> items;
    size_t examples = 0, correct = 0, target_tokens = 0;
    double nll_sum = 0;
    double accuracy() const { return examples ? double(correct) / examples : 0; }
    double ppl() const;
};

enum class LambadaTarget { word, token };

// Reads OpenAI's lambada_test.jsonl ({"text": ...} per line) or a plain-text file (one
// passage per line; CRLF line ends are read as LF, blank lines skipped). With
// LambadaTarget::token a one-token passage is scored after <|endoftext|>. Throws
// base::FileError naming the file and line on bad input.
std::vector<LambadaExample> read_lambada(const std::string& path, data::Tokenizer& tokenizer,
                                         LambadaTarget target, size_t max_examples = 0);

LambadaResult evaluate_lambada(model::GPT2<float>& model,
                               const std::vector<LambadaExample>& examples,
                               const std::function<void(size_t, size_t)>& progress = {});

} // namespace eval
