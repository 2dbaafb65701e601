// The evaluator registry that `gpt2 train --eval` uses: specs, paths, and results equal
// to the evaluations they stand for.
#include <filesystem>
#include <fstream>

#include <doctest/doctest.h>

#include "base/error.h"
#include "data/tokenizer.h"
#include "eval/evaluators.h"
#include "eval/lambada.h"
#include "eval/perplexity.h"
#include "helpers.h"

using eval::EvaluatorSpec;
using testing::Workdir;

TEST_CASE("evaluator specs resolve named data sets under the datasets folder, files as given") {
    const auto specs = eval::parse_evaluator_specs(
        "ppl:wikitext2,ppl:ptb,,ppl:notes/my.txt,lambada,lambada:/x/l.jsonl", "/data");
    REQUIRE(specs.size() == 5);
    const std::tuple<EvaluatorSpec::Kind, const char*, const char*> expected[] = {
        {EvaluatorSpec::Kind::perplexity, "wikitext2", "/data/wikitext2/wiki.test.raw"},
        {EvaluatorSpec::Kind::perplexity, "ptb", "/data/ptb/ptb.test.txt"},
        {EvaluatorSpec::Kind::perplexity, "my", "notes/my.txt"},
        {EvaluatorSpec::Kind::lambada, "lambada", "/data/lambada/lambada_test.jsonl"},
        {EvaluatorSpec::Kind::lambada, "lambada", "/x/l.jsonl"},
    };
    for (size_t i = 0; i < specs.size(); ++i) {
        CAPTURE(i);
        CHECK(specs[i].kind == std::get<0>(expected[i]));
        CHECK(specs[i].name == std::get<1>(expected[i]));
        CHECK(specs[i].path == std::get<2>(expected[i]));
    }
    CHECK(eval::parse_evaluator_specs("", "/data").empty());
    for (const char* bad : {"ppl", "ppl:", "bleu", "lambada,rouge:x"}) {
        CAPTURE(bad);
        CHECK_THROWS_AS(eval::parse_evaluator_specs(bad, "/data"), base::SettingError);
    }
}

TEST_CASE("evaluators report what the evaluations they stand for compute, on capped data") {
    Workdir w;
    data::Tokenizer tok(TOKENIZER_DIR);
    {
        std::ofstream(w / "t.txt") << "The cat sat on the mat. The dog sat on the log.\n";
        std::ofstream l(w / "l.jsonl");
        l << R"({"text": "the cat sat on the mat"})" << '\n'
          << R"({"text": "a dog and a cat"})" << '\n'
          << R"({"text": "one two three"})" << '\n';
    }
    model::GPT2<float> m(model::make_config(2, 2, 16, 50257, 32));
    m.init_weights(11);
    const auto specs =
        eval::parse_evaluator_specs("ppl:" + (w / "t.txt") + ",lambada:" + (w / "l.jsonl"), "");
    const auto evaluators = eval::make_evaluators(specs, tok, {5, 2});
    REQUIRE(evaluators.size() == 2);

    const eval::Evaluation ppl = evaluators[0]->run(m);
    eval::TextOptions to;
    to.max_tokens = 5;
    const auto direct =
        eval::text_perplexity(m, tok, testing::read_bytes(w / "t.txt"), "t.txt", to);
    CHECK(ppl.name == "t");
    REQUIRE(ppl.metrics.size() == 1); // cut to 5 tokens: no per-word figure
    CHECK(ppl.metrics[0].name == "ppl_token");
    CHECK(ppl.metrics[0].value == direct.ppl_token());

    const eval::Evaluation lam = evaluators[1]->run(m);
    const auto examples = eval::read_lambada(w / "l.jsonl", tok, eval::LambadaTarget::word, 2);
    const auto r = eval::evaluate_lambada(m, examples);
    CHECK(lam.name == "lambada");
    REQUIRE(lam.metrics.size() == 2);
    CHECK(lam.metrics[0].name == "acc");
    CHECK(lam.metrics[0].value == r.accuracy());
    CHECK(lam.metrics[1].name == "ppl");
    CHECK(lam.metrics[1].value == r.ppl());
    CHECK(lam.summary.find("over 2 examples") != std::string::npos);

    CHECK_THROWS_AS(eval::make_evaluators(
                        eval::parse_evaluator_specs("ppl:" + (w / "missing.txt"), ""), tok, {}),
                    base::FileError);
}

TEST_CASE("evaluators fail when made, before training, for an empty file or a target too long") {
    Workdir w;
    data::Tokenizer tok(TOKENIZER_DIR);
    {
        std::ofstream(w / "empty.txt");
        std::ofstream(w / "long.txt") << "a passage whose last word is Quetzalcoatlus\n";
    }
    CHECK_THROWS_WITH_AS(
        eval::make_evaluators(eval::parse_evaluator_specs("ppl:" + (w / "empty.txt"), ""), tok, {}),
        doctest::Contains("empty.txt: empty: there is no text to score"), base::FileError);
    const auto lambada = eval::parse_evaluator_specs("lambada:" + (w / "long.txt"), "");
    CHECK(eval::make_evaluators(lambada, tok, {0, 0, 64}).size() == 1);
    CHECK_THROWS_WITH_AS(eval::make_evaluators(lambada, tok, {0, 0, 1}),
                         doctest::Contains("do not fit the model's 1 positions"), base::FileError);
}
