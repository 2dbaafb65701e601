#include "eval/evaluators.h"

#include <cstdio>
#include <filesystem>
#include <sstream>

#include "base/error.h"
#include "base/file.h"
#include "eval/hellaswag.h"
#include "eval/lambada.h"
#include "eval/perplexity.h"

namespace eval {

namespace fs = std::filesystem;

namespace {

std::string under(const std::string& dir, const char* path) {
    return (fs::path(dir) / path).string();
}

EvaluatorSpec parse_spec(const std::string& item, const std::string& datasets_dir) {
    const size_t colon = item.find(':');
    const std::string kind = item.substr(0, colon);
    const std::string arg = colon == std::string::npos ? "" : item.substr(colon + 1);
    EvaluatorSpec s;
    if (kind == "ppl") {
        s.kind = EvaluatorSpec::Kind::perplexity;
        if (arg == "wikitext2")
            s.path = under(datasets_dir, "wikitext2/wiki.test.raw");
        else if (arg == "ptb")
            s.path = under(datasets_dir, "ptb/ptb.test.txt");
        else if (arg.empty())
            throw base::SettingError("evals", "ppl needs a data set or file (ppl:wikitext2)");
        else
            s.path = arg;
        s.name = s.path == arg ? fs::path(arg).stem().string() : arg;
    } else if (kind == "lambada") {
        s.kind = EvaluatorSpec::Kind::lambada;
        s.name = "lambada";
        s.path = arg.empty() ? under(datasets_dir, "lambada/lambada_test.jsonl") : arg;
    } else if (kind == "hellaswag") {
        s.kind = EvaluatorSpec::Kind::hellaswag;
        s.name = "hellaswag";
        s.path = arg.empty() ? under(datasets_dir, "hellaswag/hellaswag_val.jsonl") : arg;
    } else {
        throw base::SettingError("evals",
                                 "unknown evaluator '" + item +
                                     "' (ppl:NAME|FILE, lambada[:FILE], hellaswag[:FILE])");
    }
    return s;
}

std::string format(const char* fmt, auto... args) {
    char buf[256];
    std::snprintf(buf, sizeof buf, fmt, args...);
    return buf;
}

// Perplexity of the file's text under the lm-eval protocol, on its first max_tokens.
class PerplexityEvaluator final : public Evaluator {
public:
    PerplexityEvaluator(const EvaluatorSpec& spec, data::Tokenizer& tokenizer,
                        const EvaluatorLimits& limits)
        : spec_(spec), tokenizer_(tokenizer), text_(base::read_file(spec.path)) {
        if (text_.empty()) throw base::FileError(spec.path, "empty: there is no text to score");
        options_.max_tokens = limits.max_tokens;
    }

    Evaluation run(model::GPT2<float>& model) override {
        const auto r = text_perplexity(model, tokenizer_, text_,
                                       fs::path(spec_.path).filename().string(), options_);
        Evaluation e{spec_.name, {{"ppl_token", r.ppl_token()}}, ""};
        if (!r.cut) e.metrics.push_back({"ppl_word", r.ppl_word()});
        e.summary = format("ppl per token %.4f over %zu tokens", r.ppl_token(), r.tokens);
        return e;
    }

private:
    EvaluatorSpec spec_;
    data::Tokenizer& tokenizer_;
    std::string text_;
    TextOptions options_;
};

// LAMBADA accuracy and perplexity on the file's first max_examples passages.
class LambadaEvaluator final : public Evaluator {
public:
    LambadaEvaluator(const EvaluatorSpec& spec, data::Tokenizer& tokenizer,
                     const EvaluatorLimits& limits)
        : spec_(spec),
          examples_(read_lambada(spec.path, tokenizer, LambadaTarget::word, limits.max_examples)) {
        for (size_t i = 0; i < examples_.size(); ++i)
            if (limits.max_seq > 0 && examples_[i].target_ids.size() > size_t(limits.max_seq))
                throw base::FileError(spec.path,
                                      "passage " + std::to_string(i + 1) + ": its target's " +
                                          std::to_string(examples_[i].target_ids.size()) +
                                          " tokens do not fit the model's " +
                                          std::to_string(limits.max_seq) + " positions");
    }

    Evaluation run(model::GPT2<float>& model) override {
        const auto r = evaluate_lambada(model, examples_);
        return {spec_.name,
                {{"acc", r.accuracy()}, {"ppl", r.ppl()}},
                format("accuracy %.2f%% ppl %.4f over %zu examples", 100 * r.accuracy(), r.ppl(),
                       r.examples)};
    }

private:
    EvaluatorSpec spec_;
    std::vector<LambadaExample> examples_;
};

// HellaSwag acc and acc_norm (lm-evaluation-harness's scoring) on the file's first
// max_examples examples.
class HellaswagEvaluator final : public Evaluator {
public:
    HellaswagEvaluator(const EvaluatorSpec& spec, data::Tokenizer& tokenizer,
                       const EvaluatorLimits& limits)
        : spec_(spec), examples_(read_hellaswag(spec.path, tokenizer, HellaswagVariant::harness,
                                                limits.max_examples)) {}

    Evaluation run(model::GPT2<float>& model) override {
        const auto r = evaluate_hellaswag(model, examples_);
        return {
            spec_.name,
            {{"acc", r.acc()}, {"acc_norm", r.acc_norm()}},
            format("acc %.4f acc_norm %.4f over %zu examples", r.acc(), r.acc_norm(), r.examples)};
    }

private:
    EvaluatorSpec spec_;
    std::vector<HellaswagExample> examples_;
};

} // namespace

std::vector<EvaluatorSpec> parse_evaluator_specs(const std::string& list,
                                                 const std::string& datasets_dir) {
    std::vector<EvaluatorSpec> specs;
    std::stringstream items(list);
    for (std::string item; std::getline(items, item, ',');)
        if (!item.empty()) specs.push_back(parse_spec(item, datasets_dir));
    return specs;
}

std::vector<std::unique_ptr<Evaluator>> make_evaluators(const std::vector<EvaluatorSpec>& specs,
                                                        data::Tokenizer& tokenizer,
                                                        const EvaluatorLimits& limits) {
    std::vector<std::unique_ptr<Evaluator>> out;
    for (const EvaluatorSpec& s : specs) {
        if (s.kind == EvaluatorSpec::Kind::perplexity)
            out.push_back(std::make_unique<PerplexityEvaluator>(s, tokenizer, limits));
        else if (s.kind == EvaluatorSpec::Kind::lambada)
            out.push_back(std::make_unique<LambadaEvaluator>(s, tokenizer, limits));
        else
            out.push_back(std::make_unique<HellaswagEvaluator>(s, tokenizer, limits));
    }
    return out;
}

} // namespace eval
