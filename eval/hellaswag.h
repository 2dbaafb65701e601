// HellaSwag (Zellers et al. 2019): choose the most plausible of four endings of a
// situation, on the official JSON Lines files (hellaswag_val.jsonl: one object per line
// with activity_label, ctx_a, ctx_b, ctx, endings (4 strings), label (0..3, a number or a
// string of digits as in the Hugging Face copy)).
//
// Two ways of scoring, as published figures use them:
//   harness  lm-evaluation-harness's `hellaswag` task. context = preprocess(activity_label
//            + ": " + ctx_a + " " + capitalize(ctx_b)), each ending = preprocess(ending),
//            scored as the continuation " " + ending. preprocess strips whitespace at both
//            ends, turns " [title]" into ". ", removes every "[...]" span (not across a
//            line break) and turns each double space into one, in that order; capitalize
//            is Python's str.capitalize (first character upper case, the rest lower case).
//            Tokens as the harness's _encode_pair: whitespace ending the context moves to
//            the front of the continuation, then continuation tokens =
//            encode(context + continuation) minus the first |encode(context)| tokens.
//            acc: highest sum of log-probabilities of the continuation tokens; acc_norm:
//            highest sum divided by the ending's length in Unicode characters (Python's
//            len of the preprocessed ending, without the leading space, as the harness's
//            completion_len).
//   llmc     llm.c's dev/data/hellaswag.py: context = ctx as it is, continuation tokens =
//            encode(" " + ending), no clean-up. acc: lowest sum of losses; acc_norm
//            (llm.c's reported figure): lowest mean loss per continuation token.
// Ties go to the earlier ending. A context too long for the model loses tokens from the
// left: each row keeps the last max_seq + 1 tokens of context + continuation, as the
// harness does.
#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "data/tokenizer.h"
#include "model/gpt2.h"

namespace eval {

enum class HellaswagVariant { harness, llmc };
const char* hellaswag_variant_name(HellaswagVariant v); // "harness", "llmc"

struct HellaswagExample {
    size_t line = 0; // 1-based line in the file
    int label = 0;   // index of the right ending
    std::string context;
    std::vector<std::string> endings; // as scored, without the leading space
    std::vector<int> context_ids;
    std::vector<std::vector<int>> continuation_ids; // one per ending
    std::vector<double> lengths; // acc_norm's divisor: characters (harness) or tokens (llmc)
};

struct HellaswagResult {
    struct Item {
        std::vector<double> loglik;     // sum of log p of each ending's tokens (nats)
        std::vector<double> normalized; // loglik / length
        size_t pred = 0, pred_norm = 0; // highest loglik, highest normalized
        bool correct = false, correct_norm = false;
    };
    std::vector<Item> items;
    size_t examples = 0, correct = 0, correct_norm = 0;
    double acc() const { return examples ? double(correct) / examples : 0; }
    double acc_norm() const { return examples ? double(correct_norm) / examples : 0; }
};

// The harness's text clean-up (see above). Whitespace is ASCII whitespace.
std::string hellaswag_preprocess(std::string_view text);
// Python's str.capitalize for ASCII and Latin-1 letters; other characters are kept.
std::string python_capitalize(std::string_view text);
// Unicode characters of UTF-8 text (Python's len); a stray byte counts as one.
size_t utf8_length(std::string_view text);

// The harness's _encode_pair; an empty context (after moving its whitespace) becomes
// <|endoftext|>, as the harness encodes an empty context.
struct EncodedPair {
    std::vector<int> context, continuation;
};
EncodedPair encode_pair(data::Tokenizer& tokenizer, std::string context, std::string continuation);

// Reads up to max_examples (0 = all) examples, skipping blank lines. Throws
// base::FileError(path, problem, line) for a line that is not a JSON object, lacks a field
// the variant uses (or has it of the wrong type), has other than 4 endings or an empty
// one, or a label outside 0..3; base::FileError(path, ...) if the file cannot be read or
// holds no example.
std::vector<HellaswagExample> read_hellaswag(const std::string& path, data::Tokenizer& tokenizer,
                                             HellaswagVariant variant, size_t max_examples = 0);

// Scores the examples, the four endings of an example in one forward pass. Throws
// std::runtime_error if an ending's tokens alone exceed the model's positions.
HellaswagResult evaluate_hellaswag(model::GPT2<float>& model,
                                   const std::vector<HellaswagExample>& examples,
                                   const std::function<void(size_t, size_t)>& progress = {});

} // namespace eval
