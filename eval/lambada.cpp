#include "eval/lambada.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "base/error.h"

namespace eval {

double LambadaResult::ppl() const {
    return examples ? std::exp(nll_sum / examples) : 0;
}

std::vector<LambadaExample> read_lambada(const std::string& path, data::Tokenizer& tokenizer,
                                         LambadaTarget target, size_t max_examples) {
    std::ifstream in(path);
    if (!in) throw base::FileError(path, "cannot open");
    std::vector<LambadaExample> examples;
    std::string line;
    for (size_t line_no = 1; std::getline(in, line); ++line_no) {
        if (line.empty()) continue;
        std::string text = line;
        if (line.front() == '{') {
            try {
                text = nlohmann::json::parse(line).at("text").get<std::string>();
            } catch (const nlohmann::json::exception& e) {
                throw base::FileError(path, "line " + std::to_string(line_no) +
                                                " is not {\"text\": ...} (" + e.what() + ")");
            }
        }
        LambadaExample ex;
        if (target == LambadaTarget::word) {
            const size_t space = text.find_last_of(' ');
            if (space == std::string::npos || space + 1 == text.size())
                throw base::FileError(path, "line " + std::to_string(line_no) +
                                                " has no last word after a space");
            ex.context = text.substr(0, space);
            ex.target = text.substr(space);
            ex.context_ids = tokenizer.encode(ex.context);
            ex.target_ids = tokenizer.encode(ex.target);
        } else {
            auto ids = tokenizer.encode(text);
            if (ids.size() < 2)
                throw base::FileError(path, "line " + std::to_string(line_no) + " is too short");
            ex.target_ids = {ids.back()};
            ids.pop_back();
            ex.context_ids = std::move(ids);
            ex.context = tokenizer.decode(ex.context_ids);
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
