// Prompt/completion examples from JSON Lines: one line is {"text": "..."} or
// {"prompt": "...", "completion": "..."} (other fields ignored). An example's tokens
// carry the classes a shard's mask stores (data/shard.h), and are laid out in shards
// either packed one after another or one example per row of R tokens.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "data/tokenizer.h"

namespace data {

// One line's example: a text, or a prompt and its completion.
struct ExampleLine {
    bool is_text = true;
    std::string text, prompt, completion;
};

// Parses one non-blank line. Throws base::FileError(path, problem, line_number) if it is
// not JSON, not an object, has neither or both formats, a field that is not a string, or
// an empty text or completion (an empty prompt is fine).
ExampleLine parse_example(std::string_view line, const std::string& path, size_t line_number);

// Token ids with their classes (kNotTarget, kPromptToken, kScoredToken), one each.
struct Example {
    std::vector<int> tokens;
    std::vector<uint8_t> classes;
    size_t size() const { return tokens.size(); }
    void clear() { tokens.clear(), classes.clear(); }
    void append(int token, uint8_t cls) { tokens.push_back(token), classes.push_back(cls); }
};

// Sets out to the example's tokens: a text's, then <|endoftext|>, all kScoredToken; or
// the prompt's (kPromptToken), the completion's and <|endoftext|> (kScoredToken). Prompt
// and completion are encoded separately, as given.
void encode_example(Tokenizer& tok, const ExampleLine& line, bool allow_special, Example& out);

// What an example longer than a row holds (T = R-1 tokens) becomes: continuation rows,
// or nothing.
enum class LongExamples { split, drop };

struct RowsAdded {
    size_t rows = 0, padding = 0; // padding: the <|endoftext|> that fill the last row
    bool split = false, dropped = false;
};

// Appends ex to out as rows of R = row_tokens tokens: <|endoftext|> (kNotTarget), up to
// R-1 of the example's tokens, and <|endoftext|> padding (kNotTarget) to fill the row. An
// example of more than R-1 tokens is dropped, or split into continuation rows whose first
// token repeats the previous row's last (kNotTarget, as a row's first token is never a
// target), so that every example token is a target exactly once.
RowsAdded append_rows(const Example& ex, int row_tokens, LongExamples long_examples, Example& out);

} // namespace data
