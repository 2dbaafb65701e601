// LAMBADA scoring on a model whose probabilities are known pair by pair.
#include <algorithm>
#include <cmath>
#include <fstream>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "base/error.h"
#include "data/tokenizer.h"
#include "eval/lambada.h"
#include "eval/perplexity.h"
#include "helpers.h"
#include "model/gpt2.h"

using namespace model;

namespace {

GPT2<float> bigram_model(uint64_t seed) {
    return testing::bigram_model(50257, 64, seed);
}

} // namespace

TEST_CASE("LAMBADA accuracy and perplexity equal those computed token pair by token pair") {
    testing::Workdir w;
    {
        std::ofstream f(w / "lambada.jsonl");
        f << R"({"text": "the cat sat on the mat and looked at the dog"})"
          << "\n"
          << R"({"text": "she opened the door and saw her friend Quetzalcoatlus"})"
          << "\n"
          << R"({"text": "in the end , the answer was the"})"
          << "\n";
    }
    data::Tokenizer tok(TOKENIZER_DIR);
    auto examples = eval::read_lambada(w / "lambada.jsonl", tok, eval::LambadaTarget::word);
    REQUIRE(examples.size() == 3);
    CHECK(examples[1].context == "she opened the door and saw her friend");
    CHECK(examples[1].target == " Quetzalcoatlus");
    CHECK(examples[1].target_ids.size() > 1); // several target tokens

    GPT2<float> m = bigram_model(21);
    // A fourth example that greedy decoding gets right by construction: each target
    // token is the model's argmax after the previous one.
    eval::LambadaExample greedy;
    greedy.context_ids = {464, 3797};
    for (int prev = 3797; greedy.target_ids.size() < 3;) {
        m.forward(&prev, nullptr, 1, 1);
        const float* logits = m.logits();
        prev = int(std::max_element(logits, logits + 50257) - logits);
        greedy.target_ids.push_back(prev);
    }
    examples.push_back(greedy);
    const auto r = eval::evaluate_lambada(m, examples);
    CHECK(r.items.back().correct);

    GPT2<float> ref = bigram_model(21);
    size_t correct = 0;
    double nll_sum = 0;
    for (const auto& ex : examples) {
        bool ok = true;
        double nll = 0;
        int prev = ex.context_ids.back();
        for (int target : ex.target_ids) {
            nll += ref.forward(&prev, &target, 1, 1);
            const float* p = ref.logits();
            ok = ok && int(std::max_element(p, p + 50257) - p) == target;
            prev = target;
        }
        correct += ok;
        nll_sum += nll;
    }
    CHECK(r.examples == 4);
    CHECK(r.correct == correct);
    CHECK(r.correct >= 1);
    CHECK(r.target_tokens == examples[0].target_ids.size() + examples[1].target_ids.size() +
                                 examples[2].target_ids.size() + 3);
    CHECK(r.ppl() == doctest::Approx(std::exp(nll_sum / 4)).epsilon(1e-5));
}

TEST_CASE("LAMBADA's last-token variant and bad files") {
    testing::Workdir w;
    data::Tokenizer tok(TOKENIZER_DIR);
    { std::ofstream(w / "plain.txt") << "a passage in plain text with its last word\n"; }
    const auto ex = eval::read_lambada(w / "plain.txt", tok, eval::LambadaTarget::token);
    REQUIRE(ex.size() == 1);
    CHECK(ex[0].target_ids.size() == 1);
    CHECK(ex[0].target == " word");
    { std::ofstream(w / "bad.jsonl") << "{\"txt\": 1}\n"; }
    CHECK_THROWS_WITH_AS(eval::read_lambada(w / "bad.jsonl", tok, eval::LambadaTarget::word),
                         doctest::Contains("bad.jsonl: line 1"), std::runtime_error);

    // A file is JSON Lines or plain text throughout: a line of the other kind is an error,
    // never scored as a passage.
    { std::ofstream(w / "mixed.jsonl") << "{\"text\": \"a b c\"}\n[1, 2]\n"; }
    CHECK_THROWS_WITH_AS(
        eval::read_lambada(w / "mixed.jsonl", tok, eval::LambadaTarget::word),
        doctest::Contains("mixed.jsonl: line 2 is not a JSON object in JSON Lines"),
        std::runtime_error);
    { std::ofstream(w / "plain.jsonl") << "plain text line here\n"; }
    CHECK_THROWS_WITH_AS(
        eval::read_lambada(w / "plain.jsonl", tok, eval::LambadaTarget::word),
        doctest::Contains("plain.jsonl: line 1 is not a JSON object in JSON Lines"),
        std::runtime_error);
    { std::ofstream(w / "mixed.txt") << "a b c\n{\"text\": \"a b c\"}\n"; }
    CHECK_THROWS_WITH_AS(eval::read_lambada(w / "mixed.txt", tok, eval::LambadaTarget::word),
                         doctest::Contains("mixed.txt: line 2 is a JSON object in plain text"),
                         std::runtime_error);
}

TEST_CASE(
    "text perplexity: token NLL, word and byte normalisations from known pair probabilities") {
    data::Tokenizer tok(TOKENIZER_DIR);
    GPT2<float> m = bigram_model(4);
    const std::string text = "the quick brown fox jumps over the lazy dog\nand runs away";
    eval::TextOptions o;
    o.protocol = eval::Protocol::hf;
    o.detokenizer = eval::Detokenizer::none;
    o.context = 8;
    const auto r = eval::text_perplexity(m, tok, text, "plain.txt", o);
    const auto ids = tok.encode(text);
    GPT2<float> ref = bigram_model(4);
    double nll = 0;
    for (size_t j = 0; j < ids.size(); ++j) {
        int prev = j == 0 ? 50256 : ids[j - 1], next = ids[j];
        nll += ref.forward(&prev, &next, 1, 1);
    }
    CHECK(r.tokens == ids.size());
    CHECK(r.words == 12);
    CHECK(r.bytes == text.size());
    CHECK(r.nll == doctest::Approx(nll).epsilon(1e-5));
    CHECK(r.ppl_word() == doctest::Approx(std::exp(nll / 12)).epsilon(1e-5));
    CHECK(r.bits_per_byte() == doctest::Approx(nll / text.size() / std::log(2.0)).epsilon(1e-5));
    o.protocol =
        eval::Protocol::lm_eval; // one document: words = len(re.split(r"\s+", text)) = 12 as well
    CHECK(eval::text_perplexity(m, tok, text, "plain.txt", o).words == 12);
}

TEST_CASE("LAMBADA lines are encoded as lm-evaluation-harness's _encode_pair for lambada_openai") {
    data::Tokenizer tok(TOKENIZER_DIR);
    auto ids = [&](const std::string& text) { return tok.encode(text); };
    const std::vector<int> eot = {data::Tokenizer::kEndOfText};
    SUBCASE("an ordinary line: context and ' ' + last word, encoded as the harness does") {
        const auto ex = eval::encode_lambada_word("the cat sat", tok);
        CHECK(ex.context == "the cat");
        CHECK(ex.target == " sat");
        CHECK(ex.context_ids == ids("the cat"));
        CHECK(ex.target_ids == ids(" sat"));
    }
    SUBCASE("a run of whitespace before the last word: the context's trailing part moves") {
        const auto ex = eval::encode_lambada_word("the cat \t sat", tok);
        // rsplit(" ", 1) gives "the cat \t" and "sat"; the harness moves " \t" over.
        CHECK(ex.context == "the cat");
        CHECK(ex.target == " \t sat");
        const auto whole = ids("the cat \t sat");
        CHECK(ex.context_ids == ids("the cat"));
        CHECK(ex.target_ids ==
              std::vector<int>(whole.begin() + long(ex.context_ids.size()), whole.end()));
    }
    SUBCASE("one word: an empty context, scored after <|endoftext|>") {
        const auto ex = eval::encode_lambada_word("hello", tok);
        CHECK(ex.context.empty());
        CHECK(ex.target == " hello");
        CHECK(ex.context_ids == eot);
        CHECK(ex.target_ids == ids(" hello"));
    }
    SUBCASE("a text that starts with its only space: an empty context as well") {
        const auto ex = eval::encode_lambada_word(" hello", tok);
        CHECK(ex.context.empty());
        CHECK(ex.target == " hello");
        CHECK(ex.context_ids == eot);
        CHECK(ex.target_ids == ids(" hello"));
    }
    SUBCASE("a context of whitespace only moves whole into the target") {
        const auto ex = eval::encode_lambada_word("  hello", tok);
        CHECK(ex.context.empty());
        CHECK(ex.target == "  hello");
        CHECK(ex.context_ids == eot);
        CHECK(ex.target_ids == ids("  hello"));
    }
}

TEST_CASE("LAMBADA files: one-word lines are scored (no out-of-bounds write), CRLF leaves no \\r") {
    testing::Workdir w;
    data::Tokenizer tok(TOKENIZER_DIR);
    { std::ofstream(w / "crlf.txt", std::ios::binary) << "hello\r\nthe cat sat\r\n\r\n one\r\n"; }
    const auto ex = eval::read_lambada(w / "crlf.txt", tok, eval::LambadaTarget::word);
    REQUIRE(ex.size() == 3);
    CHECK(ex[0].target == " hello");
    CHECK(ex[1].target == " sat");
    CHECK(ex[2].target == " one");
    for (const auto& e : ex) CHECK(e.target.find('\r') == std::string::npos);
    CHECK(ex[0].context_ids == std::vector<int>{data::Tokenizer::kEndOfText});

    // Scored like any other: the first target token after <|endoftext|>.
    GPT2<float> m = bigram_model(3);
    const auto r = eval::evaluate_lambada(m, ex);
    REQUIRE(r.examples == 3);
    GPT2<float> ref = bigram_model(3);
    double nll = 0;
    int prev = data::Tokenizer::kEndOfText;
    for (int target : ex[0].target_ids) {
        nll += ref.forward(&prev, &target, 1, 1);
        prev = target;
    }
    CHECK(r.items[0].nll == doctest::Approx(nll).epsilon(1e-5));

    // The last-token variant scores a one-token passage after <|endoftext|> too.
    { std::ofstream(w / "one.txt") << "hello\n"; }
    const auto tokens = eval::read_lambada(w / "one.txt", tok, eval::LambadaTarget::token);
    REQUIRE(tokens.size() == 1);
    CHECK(tokens[0].context_ids == std::vector<int>{data::Tokenizer::kEndOfText});
    CHECK(eval::evaluate_lambada(m, tokens).examples == 1);

    {
        std::ofstream(w / "empty.jsonl") << R"({"text": ""})"
                                         << "\n";
    }
    CHECK_THROWS_WITH_AS(eval::read_lambada(w / "empty.jsonl", tok, eval::LambadaTarget::word),
                         doctest::Contains("empty.jsonl: line 1 is an empty passage"),
                         base::FileError);
}
