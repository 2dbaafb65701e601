// Sliding-window scoring: every token scored once, from the right predecessor.
#include <cmath>
#include <stdexcept>
#include <vector>

#include <doctest/doctest.h>

#include "base/error.h"
#include "data/tokenizer.h"
#include "eval/perplexity.h"
#include "helpers.h"
#include "model/gpt2.h"

using namespace model;

namespace {

GPT2<float> bigram_model() {
    return testing::bigram_model(16, 16, 3);
}

// -log p(next | prev) computed one pair at a time.
double pair_nll(GPT2<float>& m, int prev, int next) {
    return m.forward(&prev, &next, 1, 1);
}

} // namespace

TEST_CASE("windowed scoring scores every token once, each after its predecessor") {
    GPT2<float> m = bigram_model();
    std::vector<int> tokens(37);
    for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = int((i * 7 + 3) % 15);
    const int eot = 15;
    std::vector<double> expected;
    for (size_t j = 0; j < tokens.size(); ++j)
        expected.push_back(pair_nll(m, j == 0 ? eot : tokens[j - 1], tokens[j]));

    for (const auto& entry : {std::pair{16, 16}, {16, 1}, {16, 5}, {8, 3}, {1, 1}, {16, 15}}) {
        const auto& C = std::get<0>(entry);
        const auto& S = std::get<1>(entry);
        for (int batch : {1, 3}) {
            INFO("context ", C, " stride ", S, " batch ", batch);
            GPT2<float> fresh = bigram_model();
            const auto nll = eval::token_nll(fresh, tokens, {C, S, batch, eot});
            REQUIRE(nll.size() == tokens.size());
            for (size_t j = 0; j < tokens.size(); ++j)
                CHECK(nll[j] == doctest::Approx(expected[j]).epsilon(1e-5));
        }
    }
}

TEST_CASE(
    "a longer context never changes the number of scored tokens, and helps a context-aware model") {
    GPT2<float> m(make_config(2, 2, 16, 32, 64));
    m.init_weights(5);
    std::vector<int> tokens(150);
    for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = int((i * i + 3 * i) % 31);
    const auto disjoint = eval::token_nll(m, tokens, {64, 64, 2, 31});
    const auto overlapping = eval::token_nll(m, tokens, {64, 8, 2, 31});
    REQUIRE(disjoint.size() == overlapping.size());
    // The first window is the same in both.
    for (size_t j = 0; j < 64; ++j)
        CHECK(disjoint[j] == doctest::Approx(overlapping[j]).epsilon(1e-5));
    for (double v : overlapping) CHECK(v > 0);
}

TEST_CASE("window options are validated") {
    GPT2<float> m = bigram_model();
    const std::vector<int> tokens = {1, 2, 3};
    CHECK_THROWS_AS(eval::token_nll(m, tokens, {17, 1, 1, 15}), std::invalid_argument);
    CHECK_THROWS_AS(eval::token_nll(m, tokens, {8, 9, 1, 15}), std::invalid_argument);
    CHECK_THROWS_AS(eval::token_nll(m, tokens, {8, 0, 1, 15}), std::invalid_argument);
    CHECK_THROWS_AS(eval::token_nll(m, tokens, {8, 8, 1, 16}), std::invalid_argument);
    CHECK(eval::token_nll(m, {}, {8, 8, 1, 15}).empty());
}

TEST_CASE("text perplexity refuses an empty text and a stride longer than the context") {
    data::Tokenizer tok(TOKENIZER_DIR);
    GPT2<float> m = bigram_model();
    eval::TextOptions o;
    CHECK_THROWS_WITH_AS(eval::text_perplexity(m, tok, "", "empty.txt", o),
                         "empty.txt: empty: there is no text to score", base::FileError);
    o.context = 8;
    o.stride = 9;
    CHECK_THROWS_WITH_AS(eval::text_perplexity(m, tok, "some text", "t.txt", o),
                         "stride: must be at most the context (8), got 9", base::SettingError);
    o.stride = -1;
    CHECK_THROWS_AS(eval::text_perplexity(m, tok, "some text", "t.txt", o), base::SettingError);
    o.stride = 0;
    o.context = -1;
    CHECK_THROWS_AS(eval::text_perplexity(m, tok, "some text", "t.txt", o), base::SettingError);
}
