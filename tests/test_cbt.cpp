// The Children's Book Test: the file format, the cbt detokenizer, and scoring checked on a
// model whose probabilities are known pair by pair.
#include <algorithm>
#include <fstream>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include "data/tokenizer.h"
#include "eval/cbt.h"
#include "eval/detokenize.h"
#include "helpers.h"
#include "model/gpt2.h"
#include "model/io.h"

namespace {

// Two examples in CBTest's layout (fewer than 20 context lines); the second has CRLF ends.
const std::string kExample1 =
    "1 With almost everything else to make them happy , they wanted one thing : they had no "
    "children .\n"
    "2 This vexed the king even more than the queen , who was very clever and learned , and who "
    "had "
    "hated dolls when she was a child .\n"
    "3 `` I do n't believe in fairies , '' said the queen ; `` they 've never existed . ''\n"
    "4 The king 's face grew long , but he said nothing .\n"
    "21 `` Well , XXXXX , '' said the King , `` we 'll ask them all the same . ''\tqueen\t\t"
    "child|children|dolls|face|fairies|king|queen|thing|books|pictures\n"
    "\n";
const std::string kExample2 =
    "1 Prigio was the eldest son of the King of Pantouflia .\r\n"
    "2 His mother , the Queen , had read every book in the palace .\r\n"
    "3 ` Oh dear ! ' cried Prigio 's nurse .\r\n"
    "21 And XXXXX answered nothing at all .\tPrigio\t\t"
    "Pantouflia|Prigio|Queen|King|Grognio|Molinda|Alphonso|Enrico|Jaqueline|Rosalind\r\n"
    "\r\n";

std::string write(const testing::Workdir& w, const std::string& name, const std::string& text) {
    std::ofstream(w / name, std::ios::binary) << text;
    return w / name;
}

// Log-probabilities of each candidate's filled query, pair by pair on a bigram model: the
// first query token follows the context's last token (or <|endoftext|>).
std::vector<double> bigram_scores(model::GPT2<float>& ref, data::Tokenizer& tok,
                                  const eval::CbtExample& ex) {
    using eval::Detokenizer;
    const std::string context = eval::detokenize(ex.context, Detokenizer::cbt);
    const auto ctx = tok.encode(context);
    std::vector<double> scores;
    for (const auto& c : ex.candidates) {
        const std::string q = eval::detokenize(eval::fill_cbt_query(ex.query, c), Detokenizer::cbt);
        double score = 0;
        int prev = ctx.empty() ? data::Tokenizer::kEndOfText : ctx.back();
        for (int next : tok.encode(context.empty() ? q : " " + q)) {
            score -= ref.forward(&prev, &next, 1, 1);
            prev = next;
        }
        scores.push_back(score);
    }
    return scores;
}

} // namespace

TEST_CASE("read_cbt parses CBTest's numbered lines, tabs and candidates, with LF or CRLF") {
    testing::Workdir w;
    const auto examples = eval::read_cbt(write(w, "cbt.txt", kExample1 + kExample2));
    REQUIRE(examples.size() == 2);
    CHECK(examples[0].context.starts_with("With almost everything else"));
    CHECK(examples[0].context.ends_with("The king 's face grew long , but he said nothing ."));
    CHECK(examples[0].context.find(". This vexed") !=
          std::string::npos); // sentences joined by a space
    CHECK(examples[0].query ==
          "`` Well , XXXXX , '' said the King , `` we 'll ask them all the same . ''");
    CHECK(examples[0].answer == "queen");
    CHECK(examples[0].candidates.size() == 10);
    CHECK(examples[0].candidates.front() == "child");
    CHECK(examples[1].context ==
          "Prigio was the eldest son of the King of Pantouflia . His mother , the "
          "Queen , had read every book in the palace . ` Oh dear ! ' cried Prigio 's nurse .");
    CHECK(examples[1].answer == "Prigio");
    CHECK(examples[1].candidates.back() == "Rosalind"); // no '\r' left
    CHECK(eval::read_cbt(w / "cbt.txt", 1).size() == 1);
    // No blank line after a question, and a question without context.
    const auto tight =
        eval::read_cbt(write(w, "tight.txt", "1 a .\n2 XXXXX b\tb\t\ta|b\n1 XXXXX\tc\t\tc|d"));
    REQUIRE(tight.size() == 2);
    CHECK(tight[0].context == "a .");
    CHECK(tight[1].context.empty());
    CHECK(eval::fill_cbt_query("`` XXXXX , '' said XXXXX", "Tom") == "`` Tom , '' said Tom");
}

TEST_CASE("read_cbt names the file and line of what is wrong") {
    testing::Workdir w;
    struct Bad {
        std::string text, message;
    };
    for (const auto& entry : std::vector<Bad>{
             {"1 a .\n2 b .\n3 no placeholder\tb\t\ta|b\n", "bad.txt:3: query has no XXXXX"},
             {"1 a .\r\n2 XXXXX\tc\t\ta|b\r\n",
              "bad.txt:2: answer 'c' is not among the candidates"},
             {"1 a .\n2 XXXXX\ta\t\t\n", "bad.txt:2: no candidates"},
             {"1 a .\n2 XXXXX\ta\t\tb||a\n", "bad.txt:2: candidate 2 is empty"},
             {"1 a .\n2 XXXXX\ta\n", "bad.txt:2: question line has 2 tab-separated fields"},
             {"1 a .\n3 b .\n", "bad.txt:2: line numbered 3, expected 2"},
             {"1 a .\nb .\n", "bad.txt:2: expected a numbered line"},
             {"1 a .\n\n", "bad.txt:2: example ends without a question line"},
             {"1 a .\n2 b .\n", "bad.txt:2: context without a question line"},
             {"\n\n", "bad.txt: no examples"}}) {
        const auto& text = entry.text;
        const auto& message = entry.message;
        CAPTURE(text);
        CHECK_THROWS_WITH_AS(eval::read_cbt(write(w, "bad.txt", text)),
                             doctest::Contains(message.c_str()), std::runtime_error);
    }
}

TEST_CASE("the cbt detokenizer joins quotes, punctuation and clitics on CBT lines") {
    struct Case {
        std::string text, expected;
    };
    for (const auto& entry : std::vector<Case>{
             {"`` I do n't believe in fairies , '' said the queen ; `` they 've never existed . ''",
              "\"I don't believe in fairies,\" said the queen; \"they've never existed.\""},
             {"The king 's face grew long , but he said nothing .",
              "The king's face grew long, but he said nothing."},
             {"` Oh dear ! ' cried the boys ' mother : `` Who 's there ? ''",
              "'Oh dear!' cried the boys' mother: \"Who's there?\""},
             {"`` XXXXX , '' said he , `` I 'm sure you 'd know , and we 'll see , are n't we ? ''",
              "\"XXXXX,\" said he, \"I'm sure you'd know, and we'll see, aren't we?\""},
             {"They 're off -- away !", "They're off -- away!"},
             {"  two  spaces ,  and an edge  ''", "two spaces, and an edge\""},
             {"", ""}}) {
        const auto& text = entry.text;
        const auto& expected = entry.expected;
        CAPTURE(text);
        CHECK(eval::detokenize(text, eval::Detokenizer::cbt) == expected);
    }
    CHECK(eval::detokenize("`` Well , '' he said .", eval::Detokenizer::none) ==
          "`` Well , '' he said .");
}

TEST_CASE("CBT scores are each filled query's log-probability after the context") {
    testing::Workdir w;
    data::Tokenizer tok(TOKENIZER_DIR);
    auto examples = eval::read_cbt(write(w, "cbt.txt", kExample1 + kExample2));
    // No context: the query is predicted from <|endoftext|>. Equal candidates tie to the first.
    examples.push_back(
        {"", "XXXXX went up the hill .", "Jill", {"Jack", "Jill", "Jack", "Quetzalcoatlus"}});

    SUBCASE("against pair probabilities of a bigram model, whatever the window or batch") {
        model::GPT2<float> ref = testing::bigram_model(50257, 64, 11);
        for (int max_seq : {64, 24}) { // 24 cuts the context from the left
            for (int batch : {0, 3, 1}) {
                CAPTURE(max_seq);
                CAPTURE(batch);
                model::GPT2<float> m = testing::bigram_model(50257, max_seq, 11);
                eval::CbtOptions o;
                o.batch = batch;
                const auto r = eval::evaluate_cbt(m, tok, examples, o);
                REQUIRE(r.items.size() == examples.size());
                size_t correct = 0;
                for (size_t e = 0; e < examples.size(); ++e) {
                    const auto expected = bigram_scores(ref, tok, examples[e]);
                    const auto& got = r.items[e].scores;
                    REQUIRE(got.size() == expected.size());
                    for (size_t c = 0; c < got.size(); ++c)
                        CHECK(got[c] == doctest::Approx(expected[c]).epsilon(1e-5));
                    const size_t best = size_t(std::max_element(expected.begin(), expected.end()) -
                                               expected.begin());
                    CHECK(r.items[e].chosen == best);
                    CHECK(r.items[e].correct ==
                          (examples[e].candidates[best] == examples[e].answer));
                    correct += r.items[e].correct;
                }
                CHECK(r.items[2].scores[0] == r.items[2].scores[2]);
                CHECK(r.items[2].chosen != 2);
                CHECK(r.examples == examples.size());
                CHECK(r.correct == correct);
                CHECK(r.accuracy() == doctest::Approx(double(correct) / examples.size()));
            }
        }
    }
    SUBCASE("a query longer than the model's positions is an error") {
        model::GPT2<float> m = testing::bigram_model(50257, 8, 11);
        CHECK_THROWS_WITH_AS(eval::evaluate_cbt(m, tok, examples),
                             doctest::Contains("CBT example 1: a query of"), std::runtime_error);
    }
    SUBCASE("against one unpadded sequence per candidate on a full model") {
        model::GPT2<float> m(model::make_config(2, 2, 16, 50257, 128));
        m.init_weights(3);
        eval::CbtOptions o;
        o.detokenizer = eval::Detokenizer::none;
        const auto r = eval::evaluate_cbt(m, tok, examples, o);
        for (size_t e = 0; e < examples.size(); ++e) {
            const auto& ex = examples[e];
            std::vector<int> prefix = {data::Tokenizer::kEndOfText};
            tok.encode(ex.context, prefix);
            for (size_t c = 0; c < ex.candidates.size(); ++c) {
                const std::string q = eval::fill_cbt_query(ex.query, ex.candidates[c]);
                const auto q_ids = tok.encode(ex.context.empty() ? q : " " + q);
                std::vector<int> x = prefix;
                x.insert(x.end(), q_ids.begin(), q_ids.end());
                REQUIRE(x.size() <= 129);
                std::vector<int> targets(x.begin() + 1, x.end());
                std::fill(targets.begin(), targets.begin() + long(prefix.size() - 1), -1);
                const int n = int(x.size() - 1);
                const double mean = m.forward(x.data(), targets.data(), 1, n);
                CHECK(r.items[e].scores[c] ==
                      doctest::Approx(-mean * double(q_ids.size())).epsilon(1e-4));
            }
        }
    }
}

TEST_CASE("gpt2 eval cbt prints accuracy as JSON and writes one line per example") {
    testing::Workdir w;
    model::GPT2<float> m = testing::bigram_model(50257, 64, 7);
    model::write_llmc(w / "m.bin", m.config(), m.params());
    const std::string base =
        "eval cbt --model " + (w / "m.bin") + " --tokenizer " TOKENIZER_DIR " --data ";
    const testing::Run r = testing::run_gpt2(base + write(w, "cbt.txt", kExample1 + kExample2) +
                                             " --json --per-example " + (w / "items.jsonl"));
    INFO(r.out);
    REQUIRE(r.status == 0);
    const std::string j = r.out.substr(r.out.rfind('{'));
    for (const char* field : {"\"examples\":2", "\"correct\":", "\"accuracy\":", "\"seconds\":"})
        CHECK(j.find(field) != std::string::npos);
    const std::string items = testing::read_bytes(w / "items.jsonl");
    CHECK(testing::count_lines(items) == 2);
    CHECK(items.find("\"answer\":\"queen\"") != std::string::npos);
    CHECK(items.find("\"scores\":[") != std::string::npos);

    const testing::Run text =
        testing::run_gpt2(base + (w / "cbt.txt") + " --max-examples 1 --detokenizer none");
    CHECK(text.status == 0);
    CHECK(text.out.find("1 examples, detokenizer none | accuracy") != std::string::npos);

    const testing::Run bad =
        testing::run_gpt2(base + write(w, "bad.txt", "1 a .\n2 XXXXX\tc\t\ta|b\n"));
    CHECK(bad.status == 1);
    CHECK(testing::count_lines(bad.out) == 1);
    CHECK(bad.out.find("gpt2: error: " + (w / "bad.txt") +
                       ":2: answer 'c' is not among the candidates") != std::string::npos);
}
