#include "eval/cbt.h"

#include <algorithm>
#include <fstream>
#include <stdexcept>

#include "base/error.h"

namespace eval {

namespace {

std::string_view trim(std::string_view s) {
    const size_t b = s.find_first_not_of(" \t");
    if (b == std::string_view::npos) return {};
    return s.substr(b, s.find_last_not_of(" \t") + 1 - b);
}

std::vector<std::string_view> split(std::string_view s, char sep) {
    std::vector<std::string_view> parts;
    for (size_t i = 0;;) {
        const size_t j = s.find(sep, i);
        parts.push_back(s.substr(i, j == std::string_view::npos ? s.npos : j - i));
        if (j == std::string_view::npos) return parts;
        i = j + 1;
    }
}

// The question line's text after its number: query, answer, an empty field, candidates.
CbtExample parse_question(std::string_view text, const auto& fail) {
    const auto fields = split(text, '\t');
    if (fields.size() < 4)
        fail("question line has " + std::to_string(fields.size()) +
             " tab-separated fields, expected 4 (query, answer, empty, candidates)");
    CbtExample ex;
    ex.query = std::string(trim(fields[0]));
    ex.answer = std::string(trim(fields[1]));
    if (ex.query.find("XXXXX") == std::string::npos) fail("query has no XXXXX");
    if (ex.answer.empty()) fail("no answer");
    if (trim(fields[3]).empty()) fail("no candidates");
    for (std::string_view c : split(fields[3], '|')) {
        // An empty one would shift every later candidate's position: refused, not dropped.
        if (trim(c).empty())
            fail("candidate " + std::to_string(ex.candidates.size() + 1) + " is empty");
        ex.candidates.emplace_back(trim(c));
    }
    if (std::find(ex.candidates.begin(), ex.candidates.end(), ex.answer) == ex.candidates.end())
        fail("answer '" + ex.answer + "' is not among the candidates");
    return ex;
}

// One example's tokens: x (the context, cut to fit) and the filled queries.
struct Encoded {
    std::vector<int> prefix;
    std::vector<std::vector<int>> queries;
};

Encoded encode(const CbtExample& ex, size_t index, data::Tokenizer& tokenizer, const CbtOptions& o,
               int max_seq) {
    Encoded e;
    const std::string context = detokenize(ex.context, o.detokenizer);
    e.prefix.push_back(o.eot);
    tokenizer.encode(context, e.prefix);
    size_t longest = 0;
    for (const auto& c : ex.candidates) {
        const std::string query = detokenize(fill_cbt_query(ex.query, c), o.detokenizer);
        e.queries.push_back(tokenizer.encode(context.empty() ? query : " " + query));
        longest = std::max(longest, e.queries.back().size());
    }
    // Inputs are x + query[:-1]: x may keep max_seq + 1 - longest tokens.
    if (longest > size_t(max_seq))
        throw std::runtime_error("CBT example " + std::to_string(index + 1) + ": a query of " +
                                 std::to_string(longest) + " tokens does not fit the model's " +
                                 std::to_string(max_seq) + " positions");
    const size_t keep = size_t(max_seq) + 1 - longest;
    if (e.prefix.size() > keep) e.prefix.erase(e.prefix.begin(), e.prefix.end() - long(keep));
    return e;
}

} // namespace

std::vector<CbtExample> read_cbt(const std::string& path, size_t max_examples) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw base::FileError(path, "cannot open");
    std::vector<CbtExample> examples;
    std::vector<std::string> context;
    std::string line;
    size_t line_no = 0;
    const auto fail = [&](const std::string& what) { throw base::FileError(path, what, line_no); };
    while (std::getline(in, line)) {
        ++line_no;
        if (!line.empty() && line.back() == '\r') line.pop_back();
        if (trim(line).empty()) {
            if (!context.empty()) fail("example ends without a question line");
            continue;
        }
        const size_t digits = line.find_first_not_of("0123456789");
        if (digits == 0 || digits == std::string::npos || line[digits] != ' ')
            fail("expected a numbered line (\"N text\")");
        const std::string_view text = std::string_view(line).substr(digits + 1);
        if (text.find('\t') == std::string_view::npos) {
            if (const std::string expected = std::to_string(context.size() + 1);
                line.compare(0, digits, expected) != 0)
                fail("line numbered " + line.substr(0, digits) + ", expected " + expected);
            context.emplace_back(trim(text));
            continue;
        }
        CbtExample ex = parse_question(text, fail);
        for (const auto& s : context) ex.context += (ex.context.empty() ? "" : " ") + s;
        context.clear();
        examples.push_back(std::move(ex));
        if (max_examples && examples.size() == max_examples) return examples;
    }
    if (!context.empty()) fail("context without a question line at the end of the file");
    if (examples.empty()) throw base::FileError(path, "no examples");
    return examples;
}

std::string fill_cbt_query(const std::string& query, const std::string& word) {
    return replace_all(query, "XXXXX", word);
}

CbtResult evaluate_cbt(model::GPT2<float>& model, data::Tokenizer& tokenizer,
                       const std::vector<CbtExample>& examples, const CbtOptions& o,
                       const std::function<void(size_t, size_t)>& progress) {
    const model::Config& c = model.config();
    if (o.eot < 0 || o.eot >= c.vocab)
        throw base::SettingError("eot", "end-of-text id " + std::to_string(o.eot) +
                                            " is outside the model's vocabulary");
    if (o.batch < 0)
        throw base::SettingError("batch", "must be positive (or 0 for all candidates)");
    std::vector<Encoded> encoded;
    int B = 1, T = 1;
    for (size_t e = 0; e < examples.size(); ++e) {
        encoded.push_back(encode(examples[e], e, tokenizer, o, c.max_seq));
        const int n = int(examples[e].candidates.size());
        B = std::max(B, o.batch ? std::min(o.batch, n) : n);
        for (const auto& q : encoded.back().queries)
            T = std::max(T, int(encoded.back().prefix.size() + q.size() - 1));
    }
    if (model.reserved_batch() < B || model.reserved_seq() < T) model.reserve(B, T, false);

    CbtResult r;
    std::vector<int> inputs, targets;
    for (size_t e = 0; e < examples.size(); ++e) {
        const auto& [prefix, queries] = encoded[e];
        CbtResult::Item item;
        // Candidates [first, first + n) in one pass; each row is x + query[:-1], padded at
        // the end (causal attention keeps padding out of the scored positions).
        for (size_t first = 0; first < queries.size(); first += size_t(B)) {
            const size_t n = std::min(queries.size() - first, size_t(B));
            size_t len = 0;
            for (size_t b = 0; b < n; ++b)
                len = std::max(len, prefix.size() + queries[first + b].size() - 1);
            inputs.assign(n * len, o.eot);
            targets.assign(n * len, -1);
            for (size_t b = 0; b < n; ++b) {
                const auto& q = queries[first + b];
                int* in = inputs.data() + b * len;
                std::copy(prefix.begin(), prefix.end(), in);
                std::copy(q.begin(), q.end() - 1, in + prefix.size());
                // Position prefix.size() - 1 + i predicts q[i].
                std::copy(q.begin(), q.end(), targets.begin() + long(b * len + prefix.size() - 1));
            }
            model.forward(inputs.data(), targets.data(), int(n), int(len));
            for (size_t b = 0; b < n; ++b) {
                const float* loss = model.losses() + b * len + prefix.size() - 1;
                double score = 0;
                for (size_t i = 0; i < queries[first + b].size(); ++i) score -= loss[i];
                item.scores.push_back(score);
            }
        }
        item.chosen = size_t(std::max_element(item.scores.begin(), item.scores.end()) -
                             item.scores.begin()); // the first of equal maxima
        item.correct = examples[e].candidates[item.chosen] == examples[e].answer;
        r.correct += item.correct;
        ++r.examples;
        r.items.push_back(std::move(item));
        if (progress) progress(e + 1, examples.size());
    }
    return r;
}

} // namespace eval
