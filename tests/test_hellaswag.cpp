// HellaSwag: the harness's clean-up and query, its tokenisation of context and
// continuation, llm.c's variant, acc and acc_norm against per-ending log-likelihoods
// computed one unbatched sequence at a time, and bad input.
#include <algorithm>
#include <cmath>
#include <fstream>
#include <string>
#include <vector>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include "base/error.h"
#include "data/tokenizer.h"
#include "eval/evaluators.h"
#include "eval/hellaswag.h"
#include "helpers.h"
#include "model/gpt2.h"
#include "model/io.h"

namespace {

using json = nlohmann::json;
using eval::HellaswagVariant;

json doc(const std::string& activity, const std::string& ctx_a, const std::string& ctx_b,
         const std::vector<std::string>& endings, const json& label) {
    return {{"ind", 1},
            {"activity_label", activity},
            {"ctx_a", ctx_a},
            {"ctx_b", ctx_b},
            {"ctx", ctx_b.empty() ? ctx_a : ctx_a + " " + ctx_b},
            {"split", "val"},
            {"split_type", "indomain"},
            {"label", label},
            {"endings", endings},
            {"source_id", "test"}};
}

std::string long_context() {
    std::string s = "A man stands in a kitchen.";
    for (int i = 0; i < 30; ++i) s += " He keeps talking about the weather outside.";
    return s;
}

// Five examples in the official layout: an ActivityNet one; a WikiHow one with " [title]",
// [brackets], double spaces and a string label; ctx_b to capitalise; a context longer
// than the test models; one whose query ends in a space once its bracket is removed.
std::vector<json> docs() {
    return {
        doc("Washing dishes", "A woman stands at a sink full of plates.", "she",
            {"picks up a guitar and plays.", "throws the plates out of the window.",
             "rinses a plate under the tap.", "is sitting on a horse."},
            2),
        doc("Home and Garden",
            "[header] How to water a cactus [title] Check the soil first. [step] Push a "
            "finger  into the soil.",
            "",
            {"If it is dry, water it. [substeps] Use a can  with a long spout.",
             "Water it every hour [title] Cacti love water.", "Paint the pot  blue.",
             "Sing to it [step] loudly."},
            "1"),
        doc("Playing drums", "A band plays on a stage.", "the DRUMMER",
            {"hits the cymbals hard.", "eats a sandwich.", "drives a bus home.",
             "swims across the lake."},
            0),
        doc("Talking", long_context(), "he",
            {"stops and leaves the room.", "smiles at the camera.", "jumps into a pool.",
             "paints a fence."},
            1),
        doc("Cooking", "Someone is cooking. [step]", "",
            {"serves cr\xC3\xAApes on a plate.", "flies away.", "reads a book.", "stirs the pot."},
            "3")};
}

// The harness's query and cleaned endings of docs(), by hand.
const std::vector<std::string> kQueries = {
    "Washing dishes: A woman stands at a sink full of plates. She",
    "Home and Garden: How to water a cactus. Check the soil first. Push a finger into the soil.",
    "Playing drums: A band plays on a stage. The drummer", "Talking: " + long_context() + " He",
    "Cooking: Someone is cooking. "};
const std::vector<std::string> kHome = {"If it is dry, water it. Use a can with a long spout.",
                                        "Water it every hour. Cacti love water.",
                                        "Paint the pot blue.", "Sing to it loudly."};

std::string write_docs(const testing::Workdir& w, const std::string& name,
                       const std::vector<json>& ds) {
    std::ofstream out(w / name, std::ios::binary);
    for (const auto& d : ds) out << d.dump() << '\n';
    return w / name;
}

std::string write(const testing::Workdir& w, const std::string& name, const std::string& text) {
    std::ofstream(w / name, std::ios::binary) << text;
    return w / name;
}

// Sum of log p of `cont` after `ctx`, from one unbatched forward pass over the last
// max_seq + 1 tokens.
double loglik(model::GPT2<float>& m, std::vector<int> ctx, const std::vector<int>& cont) {
    ctx.insert(ctx.end(), cont.begin(), cont.end());
    const size_t keep = std::min(ctx.size(), size_t(m.config().max_seq) + 1);
    std::vector<int> x(ctx.end() - long(keep), ctx.end());
    std::vector<int> targets(x.begin() + 1, x.end());
    std::fill(targets.begin(), targets.end() - long(cont.size()), -1);
    x.pop_back();
    return -m.forward(x.data(), targets.data(), 1, int(x.size())) * double(cont.size());
}

size_t first_max(const std::vector<double>& v) {
    return size_t(std::max_element(v.begin(), v.end()) - v.begin());
}

} // namespace

TEST_CASE("hellaswag_preprocess and python_capitalize as the harness's Python") {
    struct Case {
        std::string in, out;
    };
    for (const auto& entry : std::vector<Case>{
             {"  Cut it [title] Then wait.  ", "Cut it. Then wait."},
             {"[header] How to x [step] Do y.", " How to x Do y."}, // stripped before,
             {"a [b] c [d", "a c [d"},                              // an unclosed bracket stays
             {"a [b\n] c", "a [b\n] c"},                            // . does not cross a line break
             {"a [[b]] c", "a ] c"},                                // non-greedy: "[[b]" goes
             {"one   three    four", "one  three  four"},           // one pass of "  " -> " "
             {"\t\n", ""}}) {
        const auto& in = entry.in;
        const auto& out = entry.out;
        CAPTURE(in);
        CHECK(eval::hellaswag_preprocess(in) == out);
    }
    CHECK(eval::python_capitalize("the DRUMMER") == "The drummer");
    CHECK(eval::python_capitalize("") == "");
    CHECK(eval::python_capitalize("\xC3\xA9T\xC3\x89") == "\xC3\x89t\xC3\xA9"); // éTÉ -> Été
    CHECK(eval::python_capitalize("\xC3\x9F") == "Ss");
    CHECK(eval::python_capitalize("1 A") == "1 a");
    CHECK(eval::utf8_length("cr\xC3\xAApes") == 6);
    CHECK(eval::utf8_length("\xE2\x82\xAC\xF0\x9F\x98\x80x") == 3);
}

TEST_CASE("encode_pair moves the context's trailing whitespace into the continuation") {
    data::Tokenizer tok(TOKENIZER_DIR);
    auto p = eval::encode_pair(tok, "Someone is cooking. ", " stirs the pot.");
    CHECK(p.context == tok.encode("Someone is cooking."));
    CHECK(tok.decode(p.continuation) == "  stirs the pot.");
    const auto whole = tok.encode("Someone is cooking.  stirs the pot.");
    CHECK(p.continuation == std::vector<int>(whole.begin() + long(p.context.size()), whole.end()));
    p = eval::encode_pair(tok, "", " a");
    CHECK(p.context == std::vector<int>{data::Tokenizer::kEndOfText});
    CHECK(p.continuation == tok.encode(" a"));
}

TEST_CASE("read_hellaswag builds the harness's query and endings, or llm.c's raw ones") {
    testing::Workdir w;
    data::Tokenizer tok(TOKENIZER_DIR);
    const std::string path = write_docs(w, "val.jsonl", docs());
    const auto ex = eval::read_hellaswag(path, tok, HellaswagVariant::harness);
    REQUIRE(ex.size() == 5);
    for (size_t e = 0; e < ex.size(); ++e) {
        CAPTURE(e);
        CHECK(ex[e].context == kQueries[e]);
        CHECK(ex[e].line == e + 1);
    }
    CHECK(ex[1].endings == kHome);
    CHECK(ex[0].endings == docs()[0]["endings"].get<std::vector<std::string>>());
    CHECK(std::vector<int>{ex[0].label, ex[1].label, ex[2].label, ex[3].label, ex[4].label} ==
          std::vector<int>{2, 1, 0, 1, 3});
    // acc_norm divides by characters of the cleaned ending, without the leading space.
    CHECK(ex[1].lengths == std::vector<double>{52, 38, 19, 18});
    CHECK(ex[4].lengths[0] == 25); // "serves crêpes on a plate." : ê is one character
    // Tokens: context and continuation split as the harness's _encode_pair.
    CHECK(ex[0].context_ids == tok.encode(kQueries[0]));
    CHECK(tok.decode(ex[0].continuation_ids[2]) == " rinses a plate under the tap.");
    CHECK(ex[4].context_ids == tok.encode("Cooking: Someone is cooking."));
    CHECK(tok.decode(ex[4].continuation_ids[3]) == "  stirs the pot.");

    const auto llmc = eval::read_hellaswag(path, tok, HellaswagVariant::llmc, 2);
    REQUIRE(llmc.size() == 2);
    CHECK(llmc[1].context == docs()[1]["ctx"].get<std::string>());
    CHECK(llmc[1].endings[0] == "If it is dry, water it. [substeps] Use a can  with a long spout.");
    CHECK(llmc[1].context_ids == tok.encode(llmc[1].context));
    CHECK(llmc[1].continuation_ids[0] == tok.encode(" " + llmc[1].endings[0]));
    CHECK(llmc[1].lengths[0] == double(llmc[1].continuation_ids[0].size()));
}

TEST_CASE("HellaSwag acc and acc_norm follow each ending's log-likelihood") {
    testing::Workdir w;
    data::Tokenizer tok(TOKENIZER_DIR);
    const std::string path = write_docs(w, "val.jsonl", docs());
    for (int max_seq : {128, 32}) { // the long context is cut from the left by both
        for (auto variant : {HellaswagVariant::harness, HellaswagVariant::llmc}) {
            CAPTURE(max_seq);
            CAPTURE(eval::hellaswag_variant_name(variant));
            model::GPT2<float> m(model::make_config(2, 2, 16, 50257, max_seq));
            m.init_weights(5);
            const auto ex = eval::read_hellaswag(path, tok, variant);
            CHECK(ex[3].context_ids.size() > size_t(max_seq));
            const auto r = eval::evaluate_hellaswag(m, ex);
            REQUIRE(r.items.size() == ex.size());
            size_t correct = 0, correct_norm = 0;
            for (size_t e = 0; e < ex.size(); ++e) {
                CAPTURE(e);
                const std::string ctx =
                    variant == HellaswagVariant::harness
                        ? (e == 4 ? "Cooking: Someone is cooking." : kQueries[e])
                        : docs()[e]["ctx"].get<std::string>();
                const auto ctx_ids = tok.encode(ctx);
                std::vector<double> ll, norm;
                for (size_t i = 0; i < 4; ++i) {
                    std::vector<int> cont;
                    double length;
                    if (variant == HellaswagVariant::harness) {
                        const std::string ending =
                            e == 1 ? kHome[i] : docs()[e]["endings"][i].get<std::string>();
                        const std::string space = e == 4 ? "  " : " ";
                        const auto whole = tok.encode(ctx + space + ending);
                        cont.assign(whole.begin() + long(ctx_ids.size()), whole.end());
                        length = double(eval::utf8_length(ending));
                    } else {
                        cont = tok.encode(" " + docs()[e]["endings"][i].get<std::string>());
                        length = double(cont.size());
                    }
                    ll.push_back(loglik(m, ctx_ids, cont));
                    norm.push_back(ll.back() / length);
                    CHECK(r.items[e].loglik[i] == doctest::Approx(ll.back()).epsilon(1e-5));
                    CHECK(r.items[e].normalized[i] == doctest::Approx(norm.back()).epsilon(1e-5));
                }
                const int label = ex[e].label;
                CHECK(r.items[e].pred == first_max(ll));
                CHECK(r.items[e].pred_norm == first_max(norm));
                CHECK(r.items[e].correct == (first_max(ll) == size_t(label)));
                CHECK(r.items[e].correct_norm == (first_max(norm) == size_t(label)));
                correct += first_max(ll) == size_t(label);
                correct_norm += first_max(norm) == size_t(label);
            }
            CHECK(r.examples == 5);
            CHECK(r.correct == correct);
            CHECK(r.correct_norm == correct_norm);
            CHECK(r.acc() == double(correct) / 5);
            CHECK(r.acc_norm() == double(correct_norm) / 5);
        }
    }
}

TEST_CASE("read_hellaswag names the file and line of bad input") {
    testing::Workdir w;
    data::Tokenizer tok(TOKENIZER_DIR);
    const std::string good = docs()[0].dump() + "\n";
    json no_ctx_b = docs()[0];
    no_ctx_b.erase("ctx_b");
    json three = docs()[0];
    three["endings"].erase(3);
    json label4 = docs()[0];
    label4["label"] = 4;
    json label_word = docs()[0];
    label_word["label"] = "two";
    json no_label = docs()[0];
    no_label.erase("label");
    json number_ctx = docs()[0];
    number_ctx["ctx_a"] = 3;
    json empty_ending = docs()[0];
    empty_ending["endings"][1] = "";
    struct Bad {
        std::string text, message;
    };
    for (const auto& entry :
         std::vector<Bad>{{good + "{\"ctx\": \n", "bad.jsonl:2: not JSON (column 9: syntax error"},
                          {good + "\n" + "[1, 2]\n", "bad.jsonl:3: not a JSON object"},
                          {no_ctx_b.dump() + "\n", "bad.jsonl:1: no field 'ctx_b'"},
                          {good + three.dump(), "bad.jsonl:2: has 3 endings, expected 4"},
                          {label4.dump(), "bad.jsonl:1: label 4 is out of range 0..3"},
                          {label_word.dump(), "bad.jsonl:1: label 'two' is not a number"},
                          {no_label.dump(), "bad.jsonl:1: no field 'label'"},
                          {number_ctx.dump(), "bad.jsonl:1: field 'ctx_a' is not a string"},
                          {empty_ending.dump(), "bad.jsonl:1: ending 1 is empty"},
                          {"\n \n", "bad.jsonl: no examples"}}) {
        const auto& text = entry.text;
        const auto& message = entry.message;
        CAPTURE(text);
        CHECK_THROWS_WITH_AS(
            eval::read_hellaswag(write(w, "bad.jsonl", text), tok, HellaswagVariant::harness),
            doctest::Contains(message.c_str()), base::FileError);
    }
    // llm.c's variant reads ctx, not ctx_a and ctx_b.
    CHECK(eval::read_hellaswag(write(w, "llmc.jsonl", no_ctx_b.dump()), tok, HellaswagVariant::llmc)
              .size() == 1);
    json no_ctx = docs()[0];
    no_ctx.erase("ctx");
    CHECK_THROWS_WITH_AS(
        eval::read_hellaswag(write(w, "llmc.jsonl", no_ctx.dump()), tok, HellaswagVariant::llmc),
        doctest::Contains("llmc.jsonl:1: no field 'ctx'"), base::FileError);
}

TEST_CASE("gpt2 eval hellaswag prints acc and acc_norm as JSON, one line per example") {
    testing::Workdir w;
    model::GPT2<float> m(model::make_config(2, 2, 16, 50257, 64));
    m.init_weights(9);
    model::write_llmc(w / "m.bin", m.config(), m.params());
    data::Tokenizer tok(TOKENIZER_DIR);
    const std::string path = write_docs(w, "val.jsonl", docs());
    const auto expected =
        eval::evaluate_hellaswag(m, eval::read_hellaswag(path, tok, HellaswagVariant::harness));
    const std::string base =
        "eval hellaswag --model " + (w / "m.bin") + " --tokenizer " TOKENIZER_DIR " ";

    const testing::Run r =
        testing::run_gpt2(base + path + " --json --per-example " + (w / "items.jsonl"));
    INFO(r.out);
    REQUIRE(r.status == 0);
    const json j = json::parse(r.out.substr(r.out.rfind('{')));
    CHECK(j["examples"] == 5);
    CHECK(j["variant"] == "harness");
    CHECK(j["correct"] == expected.correct);
    CHECK(j["correct_norm"] == expected.correct_norm);
    CHECK(j["acc"].get<double>() == doctest::Approx(expected.acc()));
    CHECK(j["acc_norm"].get<double>() == doctest::Approx(expected.acc_norm()));
    const std::string items = testing::read_bytes(w / "items.jsonl");
    CHECK(testing::count_lines(items) == 5);
    const json first = json::parse(items.substr(0, items.find('\n')));
    CHECK(first["label"] == 2);
    CHECK(first["pred"] == expected.items[0].pred);
    CHECK(first["loglik"].size() == 4);

    const testing::Run llmc =
        testing::run_gpt2(base + "--data " + path + " --variant llmc --max-examples 2");
    INFO(llmc.out);
    CHECK(llmc.status == 0);
    CHECK(llmc.out.find("2 examples, variant llmc | acc ") != std::string::npos);

    json three = docs()[0], label9 = docs()[0];
    three["endings"].erase(0);
    label9["label"] = "9";
    struct Bad {
        std::string text, message;
    };
    for (const auto& entry :
         std::vector<Bad>{{"{\"label\": 1}\n", ":2: no field 'endings'"},
                          {"not json\n", ":2: not JSON ("},
                          {three.dump() + "\n", ":2: has 3 endings, expected 4"},
                          {label9.dump() + "\n", ":2: label 9 is out of range 0..3"}}) {
        const auto& text = entry.text;
        const auto& message = entry.message;
        const testing::Run bad =
            testing::run_gpt2(base + write(w, "bad.jsonl", docs()[0].dump() + "\n" + text));
        INFO(bad.out);
        CHECK(bad.status == 1);
        CHECK(testing::count_lines(bad.out) == 1);
        CHECK(bad.out.find("gpt2: error: " + (w / "bad.jsonl") + message) != std::string::npos);
    }
}

TEST_CASE("--eval hellaswag[:FILE] runs the harness's scoring on the first examples") {
    const auto specs = eval::parse_evaluator_specs("hellaswag,hellaswag:/x/h.jsonl", "/data");
    REQUIRE(specs.size() == 2);
    CHECK(specs[0].kind == eval::EvaluatorSpec::Kind::hellaswag);
    CHECK(specs[0].name == "hellaswag");
    CHECK(specs[0].path == "/data/hellaswag/hellaswag_val.jsonl");
    CHECK(specs[1].path == "/x/h.jsonl");

    testing::Workdir w;
    data::Tokenizer tok(TOKENIZER_DIR);
    const std::string path = write_docs(w, "val.jsonl", docs());
    model::GPT2<float> m(model::make_config(2, 2, 16, 50257, 32));
    m.init_weights(13);
    const auto evaluators =
        eval::make_evaluators(eval::parse_evaluator_specs("hellaswag:" + path, ""), tok, {0, 3});
    REQUIRE(evaluators.size() == 1);
    const eval::Evaluation e = evaluators[0]->run(m);
    const auto r =
        eval::evaluate_hellaswag(m, eval::read_hellaswag(path, tok, HellaswagVariant::harness, 3));
    CHECK(e.name == "hellaswag");
    REQUIRE(e.metrics.size() == 2);
    CHECK(e.metrics[0].name == "acc");
    CHECK(e.metrics[0].value == r.acc());
    CHECK(e.metrics[1].name == "acc_norm");
    CHECK(e.metrics[1].value == r.acc_norm());
    CHECK(e.summary.find("over 3 examples") != std::string::npos);
    CHECK_THROWS_AS(
        eval::make_evaluators(eval::parse_evaluator_specs("hellaswag:" + (w / "missing.jsonl"), ""),
                              tok, {}),
        base::FileError);
}
