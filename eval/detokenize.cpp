#include "eval/detokenize.h"

#include <algorithm>
#include <iterator>
#include <stdexcept>
#include <utility>

namespace eval {
namespace {

// Byte length of the whitespace code point starting at s[i] (Python's isspace), else 0.
size_t space_len(std::string_view s, size_t i) {
    auto b = [&](size_t k) { return i + k < s.size() ? (unsigned char)s[i + k] : 0u; };
    unsigned c = b(0);
    if (c == ' ' || (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x1f)) return 1;
    if (c == 0xc2 && (b(1) == 0x85 || b(1) == 0xa0)) return 2; // U+0085, U+00A0
    if (c == 0xe1 && b(1) == 0x9a && b(2) == 0x80) return 3;   // U+1680
    if (c == 0xe2 && b(1) == 0x80) {                           // U+2000-200A, 2028, 2029, 202F
        unsigned d = b(2);
        return (d >= 0x80 && d <= 0x8a) || d == 0xa8 || d == 0xa9 || d == 0xaf ? 3 : 0;
    }
    if (c == 0xe2 && b(1) == 0x81 && b(2) == 0x9f) return 3; // U+205F
    if (c == 0xe3 && b(1) == 0x80 && b(2) == 0x80) return 3; // U+3000
    return 0;
}

// Byte length of the (non-space) code point at s[i]; invalid bytes count as one.
size_t char_len(std::string_view s, size_t i) {
    unsigned c = (unsigned char)s[i];
    size_t n = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 1;
    return i + n <= s.size() ? n : 1;
}

} // namespace

// Python's str.strip().
std::string_view strip(std::string_view s) {
    size_t i = 0;
    while (i < s.size() && space_len(s, i)) i += space_len(s, i);
    size_t begin = i, end = i;
    while (i < s.size()) {
        if (size_t n = space_len(s, i)) {
            i += n;
            continue;
        }
        i += char_len(s, i);
        end = i;
    }
    return s.substr(begin, end - begin);
}

// Python's str.replace(from, to).
std::string replace_all(std::string_view s, std::string_view from, std::string_view to) {
    std::string out;
    out.reserve(s.size());
    size_t i = 0;
    for (size_t j; (j = s.find(from, i)) != std::string_view::npos; i = j + from.size())
        out.append(s, i, j - i).append(to);
    return out.append(s, i);
}

namespace {

// re.sub(r"O\s*([^C]*?)\s*C", r"O\1C"): each opener pairs with the next closer.
std::string strip_inside(std::string_view s, char open, char close) {
    std::string out;
    out.reserve(s.size());
    size_t i = 0;
    for (size_t o; (o = s.find(open, i)) != std::string_view::npos;) {
        size_t c = s.find(close, o + 1);
        if (c == std::string_view::npos) break;
        out.append(s, i, o - i)
            .append(1, open)
            .append(strip(s.substr(o + 1, c - o - 1)))
            .append(1, close);
        i = c + 1;
    }
    return out.append(s, i);
}

// re.sub(r"/' [0-9]/", r"/'[0-9]/"): the pattern's slashes are literal, so it rewrites
// "/' 7/" into the text "/'[0-9]/". Faithful to the reference, typo and all.
std::string slash_quote_digit(std::string_view s) {
    std::string out;
    size_t i = 0;
    for (size_t j; (j = s.find("/' ", i)) != std::string_view::npos;) {
        if (j + 4 < s.size() && s[j + 3] >= '0' && s[j + 3] <= '9' && s[j + 4] == '/') {
            out.append(s, i, j - i).append("/'[0-9]/");
            i = j + 5;
        } else {
            out.append(s, i, j + 1 - i);
            i = j + 1;
        }
    }
    return out.append(s, i);
}

using Rule = std::pair<std::string_view, std::string_view>;

std::string apply(std::string s, std::initializer_list<Rule> rules) {
    for (auto [from, to] : rules) s = replace_all(s, from, to);
    return s;
}

std::string wikitext(std::string_view text) {
    std::string s = replace_all(text, "s '", "s'");
    s = slash_quote_digit(s);
    s = apply(std::move(s), {{" @-@ ", "-"},
                             {" @,@ ", ","},
                             {" @.@ ", "."},
                             {" : ", ": "},
                             {" ; ", "; "},
                             {" . ", ". "},
                             {" ! ", "! "},
                             {" ? ", "? "},
                             {" , ", ", "}});
    using Pair = std::pair<char, char>;
    for (auto [open, close] :
         {Pair{'(', ')'}, Pair{'[', ']'}, Pair{'{', '}'}, Pair{'"', '"'}, Pair{'\'', '\''}})
        s = strip_inside(s, open, close);
    return apply(std::move(s), {{"= = = =", "===="},
                                {"= = =", "==="},
                                {"= =", "=="},
                                {" \u00b0 ", "\u00b0"},
                                {" \n", "\n"},
                                {"\n ", "\n"},
                                {" N ", " 1 "},
                                {" 's", "'s"}});
}

std::string ptb(std::string_view text) {
    return apply(std::string(text), {{" '", "'"},
                                     {" \n", "\n"},
                                     {"\n ", "\n"},
                                     {" n't", "n't"},
                                     {" N ", "1 "},
                                     {"$ 1", "$1"},
                                     {"# 1", "#1"}});
}

// Tokens split at ' ', rejoined by the cbt rules in detokenize.h.
std::string cbt(std::string_view text) {
    static constexpr std::string_view kAttachLeft[] = {
        ",", ".", ";", ":", "!", "?", "'", "n't", "'s", "'re", "'ve", "'ll", "'d", "'m"};
    std::string out;
    out.reserve(text.size());
    bool glue = true; // no space before the next token: at the start, after an opening quote
    for (size_t i = 0; i < text.size();) {
        size_t j = std::min(text.find(' ', i), text.size());
        std::string_view token = text.substr(i, j - i);
        i = j + 1;
        if (token.empty()) continue;
        const bool closing = token == "''";
        if (!glue && !closing &&
            std::find(std::begin(kAttachLeft), std::end(kAttachLeft), token) ==
                std::end(kAttachLeft))
            out += ' ';
        glue = token == "``" || token == "`";
        out += token == "``" || closing ? "\"" : token == "`" ? "'" : token;
    }
    return out;
}

} // namespace

Detokenizer parse_detokenizer(const std::string& name) {
    if (name == "none") return Detokenizer::none;
    if (name == "wikitext") return Detokenizer::wikitext;
    if (name == "ptb") return Detokenizer::ptb;
    if (name == "cbt") return Detokenizer::cbt;
    throw std::invalid_argument("unknown detokenizer '" + name +
                                "' (expected none, wikitext, ptb or cbt)");
}

const char* detokenizer_name(Detokenizer which) {
    switch (which) {
    case Detokenizer::wikitext:
        return "wikitext";
    case Detokenizer::ptb:
        return "ptb";
    case Detokenizer::cbt:
        return "cbt";
    case Detokenizer::none:
        break;
    }
    return "none";
}

std::string detokenize(std::string_view text, Detokenizer which) {
    switch (which) {
    case Detokenizer::wikitext:
        return wikitext(text);
    case Detokenizer::ptb:
        return ptb(text);
    case Detokenizer::cbt:
        return cbt(text);
    case Detokenizer::none:
        break;
    }
    return std::string(text);
}

size_t count_words(std::string_view text) {
    size_t words = 0;
    bool in_word = false;
    for (size_t i = 0; i < text.size();) {
        size_t n = space_len(text, i);
        if (!n && !in_word) ++words;
        in_word = !n;
        i += n ? n : char_len(text, i);
    }
    return words;
}

size_t count_words_lm_eval(std::string_view text) {
    size_t runs = 0;
    bool in_space = false;
    for (size_t i = 0; i < text.size();) {
        size_t n = space_len(text, i);
        if (n && !in_space) ++runs;
        in_space = n;
        i += n ? n : char_len(text, i);
    }
    return runs + 1;
}

size_t count_words_megatron(std::string_view text) {
    const std::string_view t = strip(text);
    return size_t(std::count(t.begin(), t.end(), ' '));
}

std::vector<std::string> split_wikitext_articles(std::string_view raw) {
    std::vector<std::string> pages;
    std::string page;  // lines so far, each followed by '\n'
    bool empty = true; // no line yet (Python's ret == [])
    auto flush = [&](bool keep_blank) {
        if (!empty) page.pop_back(); // "\n".join: no separator after the last line
        if (keep_blank || !strip(page).empty()) pages.push_back(page);
        page.clear();
        empty = true;
    };
    for (size_t i = 0;;) {
        size_t j = raw.find('\n', i);
        std::string_view line = raw.substr(i, j == std::string_view::npos ? raw.npos : j - i);
        std::string r = replace_all(replace_all(line, "= = =", "==="), "= =", "==");
        std::string_view title = strip(r);
        if (title.starts_with("= ") && title.ends_with(" =")) flush(false);
        page.append(line).push_back('\n');
        empty = false;
        if (j == std::string_view::npos) break;
        i = j + 1;
    }
    flush(true);
    return pages;
}

} // namespace eval
