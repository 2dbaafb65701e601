// GPT-2's byte-level BPE tokenizer, from OpenAI's encoder.json and vocab.bpe.
//
// Encoding follows GPT-2 exactly: the text is split by GPT-2's pattern
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// (\s being Unicode's White_Space, as in tiktoken and Python's regex module), and each
// piece's bytes are merged by BPE, lowest-ranked pair first, every non-overlapping
// occurrence left to right. Invalid UTF-8 is first replaced by U+FFFD per maximal
// subpart, as Python's bytes.decode("utf-8", errors="replace") does.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace data {

class Tokenizer {
public:
    static constexpr int kEndOfText = 50256;
    static constexpr std::string_view kEndOfTextString = "<|endoftext|>";

    // Loads DIR/encoder.json and DIR/vocab.bpe; throws std::runtime_error naming the
    // file on anything missing or malformed.
    explicit Tokenizer(const std::string& dir);
    ~Tokenizer();
    Tokenizer(Tokenizer&&) noexcept;
    Tokenizer& operator=(Tokenizer&&) noexcept;

    // Appends the ids of text to out. With allow_special, "<|endoftext|>" in the text
    // becomes kEndOfText; without, it is ordinary text. Not thread-safe (it caches).
    void encode(std::string_view text, std::vector<int>& out, bool allow_special = false);
    std::vector<int> encode(std::string_view text, bool allow_special = false);

    // The bytes of the ids, concatenated (exactly what was encoded). Throws
    // std::out_of_range for an id outside the vocabulary.
    std::string decode(std::span<const int> ids) const;
    const std::string& token_bytes(int id) const;
    int vocab_size() const { return int(tokens_.size()); }

private:
    void encode_ordinary(std::string_view valid_utf8, std::vector<int>& out);
    void bpe(std::string_view piece, std::vector<int>& out);

    struct Regex; // PCRE2 pattern and match data
    std::unique_ptr<Regex> regex_;
    std::vector<std::string> tokens_;                         // id -> bytes
    std::vector<int> byte_token_;                             // byte -> id of its one-byte token
    std::unordered_map<uint64_t, int> merge_rank_;            // (left id, right id) -> rank
    std::vector<int> merge_result_;                           // rank -> merged id
    std::unordered_map<std::string, std::vector<int>> cache_; // piece -> ids
};

// The length of text's longest prefix that does not end inside a UTF-8 character, so
// that a stream of token bytes can be printed whole characters at a time.
size_t complete_utf8_prefix(std::string_view text);

// text with every ill-formed UTF-8 subsequence replaced by U+FFFD (maximal subpart
// practice, as Python decodes with errors="replace").
std::string sanitize_utf8(std::string_view text);

} // namespace data
