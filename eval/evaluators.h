// Evaluators that run on a model's current weights, chosen by spec strings, as
// `gpt2 train --eval` uses them: "ppl:wikitext2", "ppl:ptb", "ppl:FILE" (lm-eval
// protocol), "lambada", "lambada:FILE", "hellaswag", "hellaswag:FILE". Named data sets
// are found under a datasets folder that the caller gives (scripts/get_data.sh's layout),
// never the working directory.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "data/tokenizer.h"
#include "model/gpt2.h"

namespace eval {

struct EvaluatorSpec {
    enum class Kind { perplexity, lambada, hellaswag };
    Kind kind = Kind::perplexity;
    std::string name; // in metric names: "wikitext2", "ptb", a file's stem, "lambada",
                      // "hellaswag"
    std::string path; // the data file, resolved
};

// Parses a comma-separated list of specs; named sets resolve to
//   wikitext2 -> DATASETS/wikitext2/wiki.test.raw, ptb -> DATASETS/ptb/ptb.test.txt,
//   lambada -> DATASETS/lambada/lambada_test.jsonl,
//   hellaswag -> DATASETS/hellaswag/hellaswag_val.jsonl (scored as the harness does).
// Throws base::SettingError("evals", ...) for a spec it does not know.
std::vector<EvaluatorSpec> parse_evaluator_specs(const std::string& list,
                                                 const std::string& datasets_dir);

// How much of each data set one evaluation reads, so that it stays short during training.
struct EvaluatorLimits {
    size_t max_tokens = 16384; // perplexity: tokens scored (0 = all)
    size_t max_examples = 500; // LAMBADA passages, HellaSwag examples (0 = all)
    int max_seq = 0;           // the model's positions, that every target must fit (0 = unchecked)
};

struct Metric {
    std::string name; // "ppl_token", "ppl_word", "acc", "ppl", "acc_norm"
    double value = 0;
};

// One evaluator's result: its metrics and a one-line summary for people.
struct Evaluation {
    std::string name;
    std::vector<Metric> metrics;
    std::string summary; // e.g. "ppl per token 41.2031 over 16384 tokens"
};

class Evaluator {
public:
    virtual ~Evaluator() = default;
    virtual Evaluation run(model::GPT2<float>& model) = 0;
};

// Reads each spec's data now (so that a missing, empty or bad file, or a LAMBADA target
// longer than limits.max_seq, fails before training).
// The tokenizer must outlive the evaluators.
std::vector<std::unique_ptr<Evaluator>> make_evaluators(const std::vector<EvaluatorSpec>& specs,
                                                        data::Tokenizer& tokenizer,
                                                        const EvaluatorLimits& limits);

} // namespace eval
