#include "data/tokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>
#include <fstream>
#include <limits>
#include <sstream>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/file.h"

namespace data {

namespace {

// GPT-2's pattern with \s spelled out as Unicode White_Space (PCRE2's \s would miss
// U+0085): tab..CR, NEL and the separators \p{Z}.
#define WS "\\t\\n\\x{0B}\\f\\r\\x{85}\\p{Z}"
constexpr const char* kPattern = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^" WS
                                 "\\p{L}\\p{N}]+|[" WS "]+(?![^" WS "])|[" WS "]+";
#undef WS

// The cache only grows with distinct pieces; past this many it starts afresh.
constexpr size_t kMaxCacheEntries = 1 << 20;

// GPT-2's byte <-> unicode map: printable bytes stand for themselves, the other 68 are
// shifted to code points 256.. so that every token is a printable string.
std::vector<uint32_t> byte_to_codepoint() {
    std::vector<uint32_t> map(256);
    uint32_t next = 256;
    for (uint32_t b = 0; b < 256; ++b) {
        const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
        map[b] = printable ? b : next++;
    }
    return map;
}

// Decodes one code point of valid UTF-8 at s[i], advancing i.
uint32_t next_codepoint(std::string_view s, size_t& i) {
    const auto c = static_cast<unsigned char>(s[i]);
    const int n = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
    uint32_t cp = n == 1 ? c : c & (0x7F >> n);
    for (int k = 1; k < n; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
    i += n;
    return cp;
}

// A token string of encoder.json / vocab.bpe back to the bytes it stands for.
std::string unmap_bytes(std::string_view mapped, const std::vector<int>& codepoint_to_byte,
                        const std::string& file) {
    std::string bytes;
    for (size_t i = 0; i < mapped.size();) {
        const uint32_t cp = next_codepoint(mapped, i);
        if (cp >= codepoint_to_byte.size() || codepoint_to_byte[cp] < 0)
            throw base::FileError(file, "token '" + std::string(mapped) +
                                            "' is not in GPT-2's byte encoding");
        bytes += char(codepoint_to_byte[cp]);
    }
    return bytes;
}

uint64_t pair_key(int left, int right) {
    return uint64_t(uint32_t(left)) << 32 | uint32_t(right);
}

} // namespace

struct Tokenizer::Regex {
    pcre2_code* code = nullptr;
    pcre2_match_data* match = nullptr;
    bool jit = false;
    Regex() {
        int error = 0;
        PCRE2_SIZE offset = 0;
        code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(kPattern), PCRE2_ZERO_TERMINATED,
                             PCRE2_UTF | PCRE2_UCP, &error, &offset, nullptr);
        if (!code) throw std::logic_error("GPT-2 pattern does not compile");
        jit = pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;
        match = pcre2_match_data_create_from_pattern(code, nullptr);
    }
    ~Regex() {
        pcre2_match_data_free(match);
        pcre2_code_free(code);
    }
    // Finds the next piece at or after offset; returns false at the end.
    bool next(std::string_view s, size_t offset, size_t& begin, size_t& end) {
        const auto subject = reinterpret_cast<PCRE2_SPTR>(s.data());
        const int rc =
            jit ? pcre2_jit_match(code, subject, s.size(), offset, 0, match, nullptr)
                : pcre2_match(code, subject, s.size(), offset, PCRE2_NO_UTF_CHECK, match, nullptr);
        if (rc < 0) return false;
        const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(match);
        begin = ov[0];
        end = ov[1];
        return true;
    }
};

Tokenizer::Tokenizer(const std::string& dir) : regex_(std::make_unique<Regex>()) {
    const auto cp2b = [] {
        std::vector<int> inverse(512, -1);
        const auto map = byte_to_codepoint();
        for (int b = 0; b < 256; ++b) inverse[map[b]] = b;
        return inverse;
    }();

    const std::string encoder_path = dir + "/encoder.json";
    nlohmann::json encoder;
    try {
        encoder = nlohmann::json::parse(base::read_file(encoder_path));
    } catch (const nlohmann::json::exception& e) {
        throw base::FileError(encoder_path, std::string("not valid JSON (") + e.what() + ")");
    }
    if (!encoder.is_object() || encoder.empty())
        throw base::FileError(encoder_path, "expected an object of token -> id");
    tokens_.resize(encoder.size());
    std::unordered_map<std::string, int> id_of;
    std::vector<std::string> key_of(encoder.size()); // to name both tokens of a repeated id
    for (const auto& [key, value] : encoder.items()) {
        if (!value.is_number_integer() || value.get<int64_t>() < 0 ||
            value.get<int64_t>() >= int64_t(encoder.size()))
            throw base::FileError(encoder_path, "id of '" + key + "' is not in 0.." +
                                                    std::to_string(encoder.size() - 1));
        const int id = value.get<int>();
        // N tokens with ids in 0..N-1 and none repeated: every id has its token.
        if (!key_of[id].empty())
            throw base::FileError(encoder_path, "id " + std::to_string(id) + " is given to both '" +
                                                    key_of[id] + "' and '" + key + "'");
        key_of[id] = key;
        tokens_[id] = key == kEndOfTextString ? key : unmap_bytes(key, cp2b, encoder_path);
        if (!id_of.emplace(tokens_[id], id).second)
            throw base::FileError(encoder_path, "two ids for token '" + key + "'");
    }
    if (vocab_size() <= kEndOfText || tokens_[kEndOfText] != kEndOfTextString)
        throw base::FileError(encoder_path, "<|endoftext|> is not id 50256");
    byte_token_.resize(256);
    for (int b = 0; b < 256; ++b) {
        const auto it = id_of.find(std::string(1, char(b)));
        if (it == id_of.end())
            throw base::FileError(encoder_path, "no token for byte " + std::to_string(b));
        byte_token_[b] = it->second;
    }

    const std::string merges_path = dir + "/vocab.bpe";
    std::istringstream merges(base::read_file(merges_path));
    std::string line;
    int line_no = 0;
    while (std::getline(merges, line)) {
        ++line_no;
        if (line.empty() || line.starts_with("#version")) continue;
        const size_t space = line.find(' ');
        if (space == std::string::npos || line.find(' ', space + 1) != std::string::npos)
            throw base::FileError(merges_path, "line " + std::to_string(line_no) +
                                                   " is not a pair 'left right'");
        const std::string left =
            unmap_bytes(std::string_view(line).substr(0, space), cp2b, merges_path);
        const std::string right =
            unmap_bytes(std::string_view(line).substr(space + 1), cp2b, merges_path);
        const auto l = id_of.find(left), r = id_of.find(right), m = id_of.find(left + right);
        if (l == id_of.end() || r == id_of.end() || m == id_of.end())
            throw base::FileError(merges_path,
                                  "line " + std::to_string(line_no) +
                                      " merges tokens that encoder.json does not have");
        merge_rank_.emplace(pair_key(l->second, r->second), int(merge_result_.size()));
        merge_result_.push_back(m->second);
    }
    if (merge_result_.empty()) throw base::FileError(merges_path, "no merges");
    // Every token beyond the 256 bytes and <|endoftext|> is made by a merge (GPT-2 has
    // 50000 merges for 50257 tokens); tokens no merge makes mean lost merge lines.
    std::vector<bool> made(tokens_.size(), false);
    for (int b : byte_token_) made[size_t(b)] = true;
    made[kEndOfText] = true;
    for (int id : merge_result_) made[size_t(id)] = true;
    if (const auto unmade = std::count(made.begin(), made.end(), false); unmade > 0)
        throw base::FileError(merges_path, "truncated or incomplete: " + std::to_string(unmade) +
                                               " tokens of encoder.json are made by no merge (" +
                                               std::to_string(merge_result_.size()) + " merges)");
}

Tokenizer::~Tokenizer() = default;
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;

// BPE as GPT-2 does it: merge the lowest-ranked adjacent pair, all its non-overlapping
// occurrences from the left, until no adjacent pair has a rank.
void Tokenizer::bpe(std::string_view piece, std::vector<int>& out) {
    std::string key(piece);
    if (const auto hit = cache_.find(key); hit != cache_.end()) {
        out.insert(out.end(), hit->second.begin(), hit->second.end());
        return;
    }
    std::vector<int> ids;
    ids.reserve(piece.size());
    for (char c : piece) ids.push_back(byte_token_[static_cast<unsigned char>(c)]);
    while (ids.size() > 1) {
        int best = std::numeric_limits<int>::max();
        size_t at = 0;
        for (size_t i = 0; i + 1 < ids.size(); ++i)
            if (const auto it = merge_rank_.find(pair_key(ids[i], ids[i + 1]));
                it != merge_rank_.end() && it->second < best)
                best = it->second, at = i;
        if (best == std::numeric_limits<int>::max()) break;
        const int left = ids[at], right = ids[at + 1], merged = merge_result_[best];
        size_t w = at;
        for (size_t i = at; i < ids.size();) {
            if (i + 1 < ids.size() && ids[i] == left && ids[i + 1] == right) {
                ids[w++] = merged;
                i += 2;
            } else {
                ids[w++] = ids[i++];
            }
        }
        ids.resize(w);
    }
    out.insert(out.end(), ids.begin(), ids.end());
    if (cache_.size() >= kMaxCacheEntries) cache_.clear();
    cache_.emplace(std::move(key), std::move(ids));
}

void Tokenizer::encode_ordinary(std::string_view text, std::vector<int>& out) {
    size_t offset = 0, begin = 0, end = 0;
    while (offset < text.size() && regex_->next(text, offset, begin, end)) {
        if (begin != offset) throw std::logic_error("GPT-2 pattern skipped text");
        bpe(text.substr(begin, end - begin), out);
        offset = end;
    }
}

void Tokenizer::encode(std::string_view text, std::vector<int>& out, bool allow_special) {
    const std::string valid = sanitize_utf8(text);
    std::string_view rest = valid;
    while (allow_special) {
        const size_t at = rest.find(kEndOfTextString);
        if (at == std::string_view::npos) break;
        encode_ordinary(rest.substr(0, at), out);
        out.push_back(kEndOfText);
        rest.remove_prefix(at + kEndOfTextString.size());
    }
    encode_ordinary(rest, out);
}

std::vector<int> Tokenizer::encode(std::string_view text, bool allow_special) {
    std::vector<int> ids;
    encode(text, ids, allow_special);
    return ids;
}

const std::string& Tokenizer::token_bytes(int id) const {
    if (id < 0 || id >= vocab_size())
        throw std::out_of_range("token id " + std::to_string(id) +
                                " is outside the vocabulary 0.." +
                                std::to_string(vocab_size() - 1));
    return tokens_[id];
}

std::string Tokenizer::decode(std::span<const int> ids) const {
    std::string bytes;
    for (int id : ids) bytes += token_bytes(id);
    return bytes;
}

std::string sanitize_utf8(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    size_t i = 0;
    while (i < s.size()) {
        const auto c = static_cast<unsigned char>(s[i]);
        if (c < 0x80) {
            out += char(c);
            ++i;
            continue;
        }
        // Length and the allowed range of the second byte (Unicode Table 3-7).
        int n = 0;
        unsigned char lo = 0x80, hi = 0xBF;
        if (c >= 0xC2 && c <= 0xDF)
            n = 2;
        else if (c == 0xE0)
            n = 3, lo = 0xA0;
        else if (c >= 0xE1 && c <= 0xEC)
            n = 3;
        else if (c == 0xED)
            n = 3, hi = 0x9F;
        else if (c >= 0xEE && c <= 0xEF)
            n = 3;
        else if (c == 0xF0)
            n = 4, lo = 0x90;
        else if (c >= 0xF1 && c <= 0xF3)
            n = 4;
        else if (c == 0xF4)
            n = 4, hi = 0x8F;
        // Take continuation bytes while they are valid: a complete sequence is copied,
        // an incomplete one (the maximal subpart) becomes one U+FFFD.
        int k = 1;
        while (n && k < n && i + k < s.size()) {
            const auto b = static_cast<unsigned char>(s[i + k]);
            if (b < (k == 1 ? lo : 0x80) || b > (k == 1 ? hi : 0xBF)) break;
            ++k;
        }
        if (n && k == n)
            out.append(s.substr(i, n));
        else
            out += "\xEF\xBF\xBD";
        i += k;
    }
    return out;
}

size_t complete_utf8_prefix(std::string_view text) {
    for (size_t back = 1; back <= std::min<size_t>(3, text.size()); ++back) {
        const auto c = static_cast<unsigned char>(text[text.size() - back]);
        if ((c & 0xC0) == 0x80) continue; // a continuation byte: look further back
        const size_t need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
        return need > back ? text.size() - back : text.size();
    }
    return text.size();
}

} // namespace data
