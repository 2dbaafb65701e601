// The Children's Book Test (Hill et al. 2015; CBT-CN and CBT-NE in the GPT-2 paper):
// pick the word that fills XXXXX in a query sentence, from 10 candidates, after 20
// sentences of context.
//
// File format (cbtest_*_test_2500ex.txt): per example, lines "1 sentence" .. "20 sentence",
// then "21 query\tanswer\t\tcand1|cand2|...|cand10", then a blank line. The question line
// is the one with tabs, whatever its number; context lines must count 1, 2, ... but may be
// fewer than 20 (or none). The blank line is optional; CRLF line ends are tolerated.
//
// Scoring, as the GPT-2 paper describes it ("compute the probability of each choice and
// the rest of the sentence conditioned on this choice"): for each candidate, the query
// with XXXXX replaced by it is detokenized and encoded as " " + query (no space without
// context); its score is the sum of log p over all of its tokens, given
// x = <|endoftext|>, encode(detokenize(the context sentences joined by spaces)). The
// highest score wins, ties to the earlier candidate. All candidates of an example see the
// same context: when x + the longest query exceed the model's max_seq, x loses tokens
// from the left (<|endoftext|> first).
#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <vector>

#include "data/tokenizer.h"
#include "eval/detokenize.h"
#include "model/gpt2.h"

namespace eval {

struct CbtExample {
    std::string context; // the context sentences joined by single spaces, as in the file
    std::string query;   // holds XXXXX
    std::string answer;  // one of the candidates
    std::vector<std::string> candidates;
};

struct CbtOptions {
    Detokenizer detokenizer = Detokenizer::cbt;
    int batch = 0; // candidates per forward pass (0: all of an example's)
    int eot = data::Tokenizer::kEndOfText;
};

struct CbtResult {
    struct Item {
        size_t chosen = 0; // index into the example's candidates
        bool correct = false;
        std::vector<double> scores; // log-probability of each filled query (nats)
    };
    std::vector<Item> items;
    size_t examples = 0, correct = 0;
    double accuracy() const { return examples ? double(correct) / examples : 0; }
};

// Reads up to max_examples (0 = all) examples. Throws std::runtime_error as
// "FILE:LINE: what is wrong" on bad numbering, a question without XXXXX, fewer than 4
// tab-separated fields, no candidates, an answer that is not a candidate, or context
// without a question; "FILE: ..." if it cannot be read or holds no example.
std::vector<CbtExample> read_cbt(const std::string& path, size_t max_examples = 0);

// query with every XXXXX replaced by word.
std::string fill_cbt_query(const std::string& query, const std::string& word);

CbtResult evaluate_cbt(model::GPT2<float>& model, data::Tokenizer& tokenizer,
                       const std::vector<CbtExample>& examples, const CbtOptions& options = {},
                       const std::function<void(size_t, size_t)>& progress = {});

} // namespace eval
