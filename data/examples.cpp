#include "data/examples.h"

#include <algorithm>

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "data/shard.h"

namespace data {

namespace {

// nlohmann's message without its "[json.exception.parse_error.101] " tag.
std::string json_problem(const std::exception& e) {
    const std::string what = e.what();
    const size_t tag_end =
        what.starts_with("[json.exception") ? what.find("] ") : std::string::npos;
    return tag_end == std::string::npos ? what : what.substr(tag_end + 2);
}

} // namespace

ExampleLine parse_example(std::string_view line, const std::string& path, size_t line_number) {
    auto fail = [&](const std::string& problem) {
        throw base::FileError(path, problem, line_number);
    };
    nlohmann::json j;
    try {
        j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
        fail("not valid JSON: " + json_problem(e));
    }
    if (!j.is_object()) fail("not a JSON object");
    const bool text = j.contains("text"), prompt = j.contains("prompt"),
               completion = j.contains("completion");
    if (text && (prompt || completion))
        fail("has both \"text\" and \"prompt\"/\"completion\" (an example is one or the other)");
    if (!text && !prompt && !completion)
        fail("has neither \"text\" nor \"prompt\" and \"completion\"");
    if (!text && !completion) fail("has \"prompt\" but no \"completion\"");
    if (!text && !prompt) fail("has \"completion\" but no \"prompt\"");

    auto string_field = [&](const char* name, bool may_be_empty) {
        const auto& v = j.at(name);
        if (!v.is_string()) fail(std::string("\"") + name + "\" is not a string");
        std::string s = v.get<std::string>();
        if (s.empty() && !may_be_empty) fail(std::string("\"") + name + "\" is empty");
        return s;
    };
    ExampleLine ex;
    ex.is_text = text;
    if (text) {
        ex.text = string_field("text", false);
    } else {
        ex.prompt = string_field("prompt", true);
        ex.completion = string_field("completion", false);
    }
    return ex;
}

void encode_example(Tokenizer& tok, const ExampleLine& line, bool allow_special, Example& out) {
    out.clear();
    if (line.is_text) {
        tok.encode(line.text, out.tokens, allow_special);
    } else {
        tok.encode(line.prompt, out.tokens, allow_special);
        out.classes.assign(out.tokens.size(), kPromptToken);
        tok.encode(line.completion, out.tokens, allow_special);
    }
    out.tokens.push_back(Tokenizer::kEndOfText);
    out.classes.resize(out.tokens.size(), kScoredToken);
}

RowsAdded append_rows(const Example& ex, int row_tokens, LongExamples long_examples, Example& out) {
    const size_t R = size_t(row_tokens), T = R - 1, n = ex.size();
    RowsAdded added;
    if (n > T && long_examples == LongExamples::drop) {
        added.dropped = true;
        return added;
    }
    added.split = n > T;
    for (size_t at = 0; at < n;) {
        out.append(at == 0 ? Tokenizer::kEndOfText : ex.tokens[at - 1], kNotTarget);
        const size_t take = std::min(T, n - at);
        out.tokens.insert(out.tokens.end(), ex.tokens.begin() + ptrdiff_t(at),
                          ex.tokens.begin() + ptrdiff_t(at + take));
        out.classes.insert(out.classes.end(), ex.classes.begin() + ptrdiff_t(at),
                           ex.classes.begin() + ptrdiff_t(at + take));
        at += take;
        for (size_t i = take; i < T; ++i) out.append(Tokenizer::kEndOfText, kNotTarget);
        added.padding += T - take;
        ++added.rows;
    }
    return added;
}

} // namespace data
