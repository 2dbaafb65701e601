#include "eval/lambada.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <optional>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "base/error.h"

namespace eval {

double LambadaResult::ppl() const {
    return examples ? std::exp(nll_sum / examples) : 0;
}

LambadaExample encode_lambada_word(const std::string& text, data::Tokenizer& tokenizer) {
    // lambada_openai: context = text.rsplit(" ", 1)[0], target = " " + the last word; a
    // text without a space is all last word.
    const size_t space = text.rfind(' ');
    LambadaExample ex;
    ex.context = space == std::string::npos ? "" : text.substr(0, space);
    ex.target = " " + (space == std::string::npos ? text : text.substr(space + 1));
    if (ex.context.empty()) {
        // An empty context is scored after <|endoftext|>, the target encoded alone.
        ex.context_ids = {data::Tokenizer::kEndOfText};
        ex.target_ids = tokenizer.encode(ex.target);
        return ex;
    }
    // _encode_pair: the context's trailing whitespace moves into the target; the target's
    // tokens are those of the whole text after the context's.
    const size_t kept = ex.context.find_last_not_of(" \t\n\r\f\v");
    const size_t cut = kept == std::string::npos ? 0 : kept + 1;
    ex.target = ex.context.substr(cut) + ex.target;
    ex.context.resize(cut);
    if (ex.context.empty()) {
        ex.context_ids = {data::Tokenizer::kEndOfText};
        ex.target_ids = tokenizer.encode(ex.target);
        return ex;
    }
    const std::vector<int> whole = tokenizer.encode(ex.context + ex.target);
    ex.context_ids = tokenizer.encode(ex.context);
    if (whole.size() > ex.context_ids.size())
        ex.target_ids.assign(whole.begin() + long(ex.context_ids.size()), whole.end());
    return ex;
}

std::vector<LambadaExample> read_lambada(const std::string& path, data::Tokenizer& tokenizer,
                                         LambadaTarget target, size_t max_examples) {
    std::ifstream in(path);
    if (!in) throw base::FileError(path, "cannot open");
    std::vector<LambadaExample> examples;
    std::string line;
    // JSON Lines (a .jsonl file, or one whose first passage is a JSON object) or plain
    // text, one passage a line; a line of the other kind is an error, not a passage.
    std::optional<bool> json_lines;
    if (path.ends_with(".jsonl")) json_lines = true;
    for (size_t line_no = 1; std::getline(in, line); ++line_no) {
        if (!line.empty() && line.back() == '\r') line.pop_back(); // CRLF line ends
        if (line.empty()) continue;
        if (!json_lines) json_lines = line.front() == '{';
        if (*json_lines != (line.front() == '{'))
            throw base::FileError(path, "line " + std::to_string(line_no) +
                                            (*json_lines ? " is not a JSON object in JSON Lines"
                                                         : " is a JSON object in plain text"));
        std::string text = line;
        if (*json_lines) {
            try {
                text = nlohmann::json::parse(line).at("text").get<std::string>();
            } catch (const nlohmann::json::exception& e) {
                throw base::FileError(path, "line " + std::to_string(line_no) +
                                                " is not {\"text\": ...} (" + e.what() + ")");
            }
        }
        if (text.empty())
            throw base::FileError(path, "line " + std::to_string(line_no) + " is an empty passage");
        LambadaExample ex;
        if (target == LambadaTarget::word) {
            ex = encode_lambada_word(text, tokenizer);
            if (ex.target_ids.empty())
                throw base::FileError(path, "line " + std::to_string(line_no) +
                                                " has a last word with no tokens of its own");
        } else {
            auto ids = tokenizer.encode(text);
            ex.target_ids = {ids.back()};
            ids.pop_back();
            // A one-token passage is scored after <|endoftext|>.
            ex.context_ids = ids.empty() ? std::vector<int>{data::Tokenizer::kEndOfText} : ids;
            ex.context = tokenizer.decode(ids);
            ex.target = tokenizer.token_bytes(ex.target_ids[0]);
        }
        examples.push_back(std::move(ex));
        if (max_examples && examples.size() == max_examples) break;
    }
    if (examples.empty()) throw base::FileError(path, "no passages");
    return examples;
}

LambadaResult evaluate_lambada(model::GPT2<float>& model,
                               const std::vector<LambadaExample>& examples,
                               const std::function<void(size_t, size_t)>& progress) {
    const model::Config& c = model.config();
    size_t longest = 1;
    for (const auto& ex : examples)
        longest = std::max(longest, ex.context_ids.size() + ex.target_ids.size() - 1);
    const int T = int(std::min<size_t>(longest, size_t(c.max_seq)));
    if (model.reserved_seq() < T) model.reserve(1, T, false);

    LambadaResult r;
    std::vector<int> inputs, targets;
    for (size_t e = 0; e < examples.size(); ++e) {
        const auto& ex = examples[e];
        if (ex.context_ids.empty() || ex.target_ids.empty())
            throw std::invalid_argument("LAMBADA passage " + std::to_string(e + 1) +
                                        ": needs context and target tokens (an empty context "
                                        "is <|endoftext|>)");
        // Input: context + target[:-1], cut to the last T tokens; the last |target|
        // positions predict the target tokens.
        inputs = ex.context_ids;
        inputs.insert(inputs.end(), ex.target_ids.begin(), ex.target_ids.end() - 1);
        const size_t n_target = ex.target_ids.size();
        if (n_target > size_t(T))
            throw std::invalid_argument("LAMBADA passage " + std::to_string(e + 1) +
                                        ": its target's " + std::to_string(n_target) +
                                        " tokens do not fit the model's " + std::to_string(T) +
                                        " positions");
        if (inputs.size() > size_t(T)) inputs.erase(inputs.begin(), inputs.end() - T);
        const int len = int(inputs.size());
        targets.assign(size_t(len), -1);
        std::copy(ex.target_ids.begin(), ex.target_ids.end(), targets.end() - long(n_target));
        model.forward(inputs.data(), targets.data(), 1, len);

        LambadaResult::Item item{true, 0.0, {}};
        for (size_t i = 0; i < n_target; ++i) {
            const size_t pos = size_t(len) - n_target + i;
            const int best = model.predictions()[pos]; // the greedy prediction
            item.predicted.push_back(best);
            item.correct = item.correct && best == ex.target_ids[i];
            item.nll += model.losses()[pos];
        }
        r.correct += item.correct;
        r.nll_sum += item.nll;
        r.target_tokens += n_target;
        ++r.examples;
        r.items.push_back(std::move(item));
        if (progress) progress(e + 1, examples.size());
    }
    return r;
}

} // namespace eval
