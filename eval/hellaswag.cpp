#include "eval/hellaswag.h"

#include <algorithm>
#include <charconv>
#include <fstream>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "eval/detokenize.h"

namespace eval {

namespace {

constexpr size_t kEndings = 4;
constexpr const char* kSpace = " \t\n\r\v\f";

// Length of the UTF-8 sequence that starts with byte b (1 for a stray byte).
size_t sequence_length(unsigned char b) {
    if (b >= 0xF0 && b < 0xF8) return 4;
    if (b >= 0xE0) return b < 0xF0 ? 3 : 1;
    if (b >= 0xC0) return 2;
    return 1;
}

// Python's lower() and title() of one character, for ASCII and Latin-1 letters.
std::string lower_char(std::string_view c) {
    if (c.size() == 1 && c[0] >= 'A' && c[0] <= 'Z') return std::string(1, char(c[0] + 32));
    const auto b = static_cast<unsigned char>(c.size() == 2 ? c[1] : 0);
    if (c.size() == 2 && c[0] == '\xC3' && b >= 0x80 && b <= 0x9E && b != 0x97) // À..Þ but ×
        return {c[0], char(b + 0x20)};
    return std::string(c);
}

std::string title_char(std::string_view c) {
    if (c.size() == 1 && c[0] >= 'a' && c[0] <= 'z') return std::string(1, char(c[0] - 32));
    if (c.size() != 2) return std::string(c);
    const auto b = static_cast<unsigned char>(c[1]);
    if (c[0] == '\xC3') {
        if (b >= 0xA0 && b <= 0xBE && b != 0xB7) return {c[0], char(b - 0x20)}; // à..þ but ÷
        if (b == 0x9F) return "Ss";                                             // ß
        if (b == 0xBF) return "\xC5\xB8";                                       // ÿ -> Ÿ
    }
    if (c == "\xC2\xB5") return "\xCE\x9C"; // µ -> Greek capital mu
    return std::string(c);
}

// re.sub(r"\[.*?\]", "", s): each "[" up to the next "]", unless a line break comes first.
std::string remove_brackets(std::string_view s) {
    std::string out;
    for (size_t i = 0; i < s.size();) {
        if (s[i] == '[') {
            const size_t end = s.find_first_of("]\n", i + 1);
            if (end != std::string_view::npos && s[end] == ']') {
                i = end + 1;
                continue;
            }
        }
        out += s[i++];
    }
    return out;
}

const nlohmann::json& field(const nlohmann::json& doc, const char* name, const auto& fail) {
    const auto it = doc.find(name);
    if (it == doc.end()) fail(std::string("no field '") + name + "'");
    return *it;
}

std::string string_field(const nlohmann::json& doc, const char* name, const auto& fail) {
    const nlohmann::json& v = field(doc, name, fail);
    if (!v.is_string()) fail(std::string("field '") + name + "' is not a string");
    return v.get<std::string>();
}

int read_label(const nlohmann::json& doc, const auto& fail) {
    const nlohmann::json& v = field(doc, "label", fail);
    long long label = -1;
    if (v.is_number_integer()) {
        label = v.get<long long>();
    } else if (v.is_string()) {
        const auto& s = v.get_ref<const std::string&>();
        const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), label);
        if (s.empty() || ec != std::errc() || end != s.data() + s.size())
            fail("label '" + s + "' is not a number");
    } else {
        fail("label is not a number");
    }
    if (label < 0 || label >= static_cast<long long>(kEndings))
        fail("label " + std::to_string(label) + " is out of range 0..3");
    return int(label);
}

} // namespace

const char* hellaswag_variant_name(HellaswagVariant v) {
    return v == HellaswagVariant::harness ? "harness" : "llmc";
}

size_t utf8_length(std::string_view text) {
    size_t n = 0;
    for (size_t i = 0; i < text.size(); ++n) {
        const size_t len = sequence_length(static_cast<unsigned char>(text[i]));
        size_t j = 1; // continuation bytes that are there
        while (j < len && i + j < text.size() &&
               (static_cast<unsigned char>(text[i + j]) >> 6) == 2)
            ++j;
        i += j == len ? len : 1;
    }
    return n;
}

std::string python_capitalize(std::string_view text) {
    std::string out;
    for (size_t i = 0; i < text.size();) {
        const size_t len =
            std::min(sequence_length(static_cast<unsigned char>(text[i])), text.size() - i);
        const std::string_view c = text.substr(i, len);
        out += i == 0 ? title_char(c) : lower_char(c);
        i += len;
    }
    return out;
}

std::string hellaswag_preprocess(std::string_view text) {
    const size_t first = text.find_first_not_of(kSpace);
    text = first == std::string_view::npos
               ? std::string_view()
               : text.substr(first, text.find_last_not_of(kSpace) + 1 - first);
    return replace_all(remove_brackets(replace_all(text, " [title]", ". ")), "  ", " ");
}

EncodedPair encode_pair(data::Tokenizer& tokenizer, std::string context, std::string continuation) {
    const size_t keep = context.find_last_not_of(kSpace) + 1; // 0 when all whitespace
    continuation.insert(0, context, keep);
    context.resize(keep);
    EncodedPair p;
    if (context.empty()) {
        p.context = {data::Tokenizer::kEndOfText};
        p.continuation = tokenizer.encode(continuation);
        return p;
    }
    p.context = tokenizer.encode(context);
    const auto whole = tokenizer.encode(context + continuation);
    // BPE may merge across the boundary; the harness splits the whole at |context| anyway.
    p.continuation.assign(whole.begin() + long(std::min(p.context.size(), whole.size())),
                          whole.end());
    return p;
}

std::vector<HellaswagExample> read_hellaswag(const std::string& path, data::Tokenizer& tokenizer,
                                             HellaswagVariant variant, size_t max_examples) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw base::FileError(path, "cannot open");
    std::vector<HellaswagExample> examples;
    std::string line;
    size_t line_no = 0;
    const auto fail = [&](const std::string& what) { throw base::FileError(path, what, line_no); };
    while (std::getline(in, line)) {
        ++line_no;
        if (line.find_first_not_of(kSpace) == std::string::npos) continue;
        nlohmann::json doc;
        try {
            doc = nlohmann::json::parse(line);
        } catch (const nlohmann::json::parse_error& e) {
            // e.what() is "[json.exception.parse_error.101] parse error at line 1, column
            // 5: ...": the line is ours to give, the column and the rest are kept.
            const std::string what = e.what();
            const size_t column = what.find("column");
            fail("not JSON (" + what.substr(column == std::string::npos ? 0 : column) + ")");
        }
        if (!doc.is_object()) fail("not a JSON object");

        HellaswagExample ex;
        ex.line = line_no;
        const auto& endings = field(doc, "endings", fail);
        if (!endings.is_array()) fail("field 'endings' is not a list");
        if (endings.size() != kEndings)
            fail("has " + std::to_string(endings.size()) + " endings, expected 4");
        for (const auto& e : endings) {
            if (!e.is_string()) fail("an ending is not a string");
            ex.endings.push_back(e.get<std::string>());
            if (ex.endings.back().empty())
                fail("ending " + std::to_string(ex.endings.size() - 1) + " is empty");
        }
        ex.label = read_label(doc, fail);

        if (variant == HellaswagVariant::harness) {
            const std::string label = string_field(doc, "activity_label", fail);
            const std::string ctx_a = string_field(doc, "ctx_a", fail);
            const std::string ctx_b = string_field(doc, "ctx_b", fail);
            ex.context =
                hellaswag_preprocess(label + ": " + ctx_a + " " + python_capitalize(ctx_b));
            for (auto& e : ex.endings) {
                e = hellaswag_preprocess(e);
                auto pair = encode_pair(tokenizer, ex.context, " " + e);
                ex.context_ids = std::move(pair.context);
                ex.continuation_ids.push_back(std::move(pair.continuation));
                ex.lengths.push_back(double(utf8_length(e)));
            }
        } else {
            ex.context = string_field(doc, "ctx", fail);
            ex.context_ids = tokenizer.encode(ex.context);
            if (ex.context_ids.empty()) ex.context_ids = {data::Tokenizer::kEndOfText};
            for (const auto& e : ex.endings) {
                ex.continuation_ids.push_back(tokenizer.encode(" " + e));
                ex.lengths.push_back(double(ex.continuation_ids.back().size()));
            }
        }
        examples.push_back(std::move(ex));
        if (max_examples && examples.size() == max_examples) break;
    }
    if (examples.empty()) throw base::FileError(path, "no examples");
    return examples;
}

HellaswagResult evaluate_hellaswag(model::GPT2<float>& model,
                                   const std::vector<HellaswagExample>& examples,
                                   const std::function<void(size_t, size_t)>& progress) {
    const int max_seq = model.config().max_seq;
    // Row of ending i: the last max_seq + 1 tokens of context + continuation, minus the
    // last; its last |continuation| positions predict the continuation.
    const auto row_length = [&](const HellaswagExample& ex, size_t i) {
        return std::min(ex.context_ids.size() + ex.continuation_ids[i].size() - 1, size_t(max_seq));
    };
    int B = 1, T = 1;
    for (const auto& ex : examples) {
        B = std::max(B, int(ex.continuation_ids.size()));
        for (size_t i = 0; i < ex.continuation_ids.size(); ++i) {
            if (ex.continuation_ids[i].size() > size_t(max_seq))
                throw std::runtime_error(
                    "HellaSwag example on line " + std::to_string(ex.line) + ": ending " +
                    std::to_string(i) + "'s " + std::to_string(ex.continuation_ids[i].size()) +
                    " tokens do not fit the model's " + std::to_string(max_seq) + " positions");
            T = std::max(T, int(row_length(ex, i)));
        }
    }
    if (model.reserved_batch() < B || model.reserved_seq() < T) model.reserve(B, T, false);

    HellaswagResult r;
    std::vector<int> whole, inputs, targets;
    for (size_t e = 0; e < examples.size(); ++e) {
        const auto& ex = examples[e];
        const size_t n = ex.continuation_ids.size();
        size_t len = 0;
        for (size_t i = 0; i < n; ++i) len = std::max(len, row_length(ex, i));
        // Rows padded at the end with <|endoftext|>, which causal attention keeps out of
        // the scored positions; targets -1 there and over the context.
        inputs.assign(n * len, data::Tokenizer::kEndOfText);
        targets.assign(n * len, -1);
        for (size_t i = 0; i < n; ++i) {
            const auto& cont = ex.continuation_ids[i];
            whole = ex.context_ids;
            whole.insert(whole.end(), cont.begin(), cont.end());
            const size_t rl = row_length(ex, i), start = whole.size() - 1 - rl;
            std::copy_n(whole.begin() + long(start), rl, inputs.begin() + long(i * len));
            std::copy(cont.begin(), cont.end(), targets.begin() + long(i * len + rl - cont.size()));
        }
        model.forward(inputs.data(), targets.data(), int(n), int(len));

        HellaswagResult::Item item;
        for (size_t i = 0; i < n; ++i) {
            const size_t k = ex.continuation_ids[i].size();
            const float* loss = model.losses() + i * len + row_length(ex, i) - k;
            double ll = 0;
            for (size_t j = 0; j < k; ++j) ll -= loss[j];
            item.loglik.push_back(ll);
            item.normalized.push_back(ll / ex.lengths[i]);
        }
        const auto argmax = [](const std::vector<double>& v) {
            return size_t(std::max_element(v.begin(), v.end()) - v.begin()); // first of ties
        };
        item.pred = argmax(item.loglik);
        item.pred_norm = argmax(item.normalized);
        item.correct = item.pred == size_t(ex.label);
        item.correct_norm = item.pred_norm == size_t(ex.label);
        r.correct += item.correct;
        r.correct_norm += item.correct_norm;
        ++r.examples;
        r.items.push_back(std::move(item));
        if (progress) progress(e + 1, examples.size());
    }
    return r;
}

} // namespace eval
