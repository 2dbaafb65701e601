// gpt2 tokenize on JSON Lines: prompt/completion examples to shards and masks, packed or
// one example per row, and the loader reading them back.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "base/error.h"
#include "data/examples.h"
#include "data/loader.h"
#include "data/shard.h"
#include "helpers.h"

namespace fs = std::filesystem;
using namespace testing;

namespace {

constexpr int EOT = 50256;

// Token ids (from gpt2 encode) of the examples below:
//   "Hello" 15496 | " world" 995 | "First block." 5962 2512 13 | "Another" 6610 |
//   " file." 2393 13
const char* const kExamples = R"({"prompt": "Hello", "completion": " world", "id": 1}
{"text": "First block."}

{"prompt": "Another", "completion": " file."}
)";

struct Tokens {
    std::vector<int> tokens;
    std::vector<int> classes;
    bool operator==(const Tokens&) const = default;
};

doctest::String toString(const Tokens& t) {
    std::string s;
    for (size_t i = 0; i < t.tokens.size(); ++i)
        s += std::to_string(t.tokens[i]) + "/" + std::to_string(t.classes[i]) + " ";
    return s.c_str();
}

// A shard's tokens and its mask's classes (2 for every token without a mask).
Tokens read_shard(const std::string& path, int expected_row_tokens) {
    const data::Shard shard(path);
    data::ShardMask mask;
    if (fs::exists(data::mask_path(path)))
        mask = data::ShardMask(data::mask_path(path), shard.size());
    CHECK(mask.row_tokens() == expected_row_tokens);
    Tokens t;
    for (size_t i = 0; i < shard.size(); ++i) {
        t.tokens.push_back(shard[i]);
        t.classes.push_back(mask[i]);
    }
    return t;
}

Run tokenize(const std::string& args) {
    return run_gpt2("tokenize --tokenizer " TOKENIZER_DIR " " + args);
}

void check_one_line_error(const Run& r, int status, const std::string& line) {
    INFO(r.out);
    CHECK(r.status == status);
    CHECK(count_lines(r.out) == 1);
    CHECK(r.out.starts_with(line));
}

} // namespace

TEST_CASE("tokenize packs JSON Lines examples after one <|endoftext|> with a mask of classes") {
    Workdir w;
    std::ofstream(w / "ex.jsonl") << kExamples;
    const Run r = tokenize("--input " + (w / "ex.jsonl") + " --output " + (w / "all.bin"));
    INFO(r.out);
    REQUIRE(r.status == 0);
    const Tokens expected = {
        {EOT, 15496, 995, EOT, 5962, 2512, 13, EOT, 6610, 2393, 13, EOT},
        {0, 1, 2, 2, 2, 2, 2, 2, 1, 2, 2, 2},
    };
    CHECK(read_shard(w / "all.bin", 0) == expected);
    CHECK(r.out.find("1 files, 3 examples, ") != std::string::npos);
    CHECK(r.out.find("-> 12 tokens (9 scored, 2 prompt) in 1 shards") != std::string::npos);

    // Text again at the same output: a plain shard, and the old mask is gone.
    std::ofstream(w / "t.txt") << "First block.";
    REQUIRE(tokenize("--input " + (w / "t.txt") + " --output " + (w / "all.bin")).status == 0);
    CHECK(read_shard(w / "all.bin", 0) == Tokens{{5962, 2512, 13}, {2, 2, 2}});
    CHECK(!fs::exists(w / "all.bin.mask"));
}

TEST_CASE("tokenize ends JSON Lines shards after whole examples, the val shard first") {
    Workdir w;
    std::ofstream(w / "ex.data") << kExamples; // not .jsonl: --format says so
    const Run r = tokenize("--format jsonl --input " + (w / "ex.data") + " --output " +
                           (w / "out") + " --val-tokens 2 --shard-tokens 5");
    INFO(r.out);
    REQUIRE(r.status == 0);
    // Each shard starts with <|endoftext|> of class 0 and holds whole examples until it
    // has at least --val-tokens (--shard-tokens) tokens.
    CHECK(read_shard(w / "out_val_000000.bin", 0) == Tokens{{EOT, 15496, 995, EOT}, {0, 1, 2, 2}});
    CHECK(read_shard(w / "out_train_000001.bin", 0) ==
          Tokens{{EOT, 5962, 2512, 13, EOT}, {0, 2, 2, 2, 2}});
    CHECK(read_shard(w / "out_train_000002.bin", 0) ==
          Tokens{{EOT, 6610, 2393, 13, EOT}, {0, 1, 2, 2, 2}});
    CHECK(!fs::exists(w / "out_train_000003.bin"));
    CHECK(r.out.find("in 3 shards") != std::string::npos);

    // Masks are outputs too: one given as an input is refused.
    const Run again = tokenize("--format jsonl --input " + (w / "out_train_000001.bin.mask") +
                               " --output " + (w / "out"));
    check_one_line_error(again, 2, "gpt2: error: --output: its shards would replace the input");
    const Run one = tokenize("--format jsonl --input " + (w / "out_train_000001.bin.mask") +
                             " --output " + (w / "out_train_000001.bin"));
    check_one_line_error(one, 2, "gpt2: error: --output: its shards would replace the input");
}

TEST_CASE("tokenize --pack off writes one example per row of --seq + 1 tokens") {
    Workdir w;
    std::ofstream(w / "ex.jsonl") << kExamples;
    const std::string common = "--input " + (w / "ex.jsonl") + " --pack off";

    SUBCASE("every example fits a row") {
        const Run r = tokenize(common + " --seq 4 --output " + (w / "rows.bin"));
        INFO(r.out);
        REQUIRE(r.status == 0);
        const Tokens expected = {
            {EOT, 15496, 995, EOT, EOT, EOT, 5962, 2512, 13, EOT, EOT, 6610, 2393, 13, EOT},
            {0, 1, 2, 2, 0, 0, 2, 2, 2, 2, 0, 1, 2, 2, 2},
        };
        CHECK(read_shard(w / "rows.bin", 5) == expected);
        CHECK(r.out.find("-> 15 tokens (9 scored, 2 prompt)") != std::string::npos);
        CHECK(r.out.find("rows of 5 tokens: 3 rows, 1 padding tokens; 0 examples split, 0 "
                         "dropped") != std::string::npos);
    }
    SUBCASE("longer examples are split: a continuation row starts with the last token again") {
        const Run r = tokenize(common + " --seq 3 --output " + (w / "rows.bin"));
        INFO(r.out);
        REQUIRE(r.status == 0);
        const Tokens expected = {
            {EOT, 15496, 995,  EOT,                     // Hello world
             EOT, 5962,  2512, 13,  13, EOT, EOT, EOT,  // First block.
             EOT, 6610,  2393, 13,  13, EOT, EOT, EOT}, // Another file.
            {0, 1, 2, 2, 0, 2, 2, 2, 0, 2, 0, 0, 0, 1, 2, 2, 0, 2, 0, 0},
        };
        CHECK(read_shard(w / "rows.bin", 4) == expected);
        CHECK(r.out.find("rows of 4 tokens: 5 rows, 4 padding tokens; 2 examples split, 0 "
                         "dropped") != std::string::npos);

        // The loader reads the rows back: targets are exactly the class-2 tokens (and
        // the prompt's too with score_prompts), each once.
        for (bool score_prompts : {false, true}) {
            data::LoaderOptions o;
            o.batch = 5;
            o.seq = 3;
            o.score_prompts = score_prompts;
            data::Loader loader(w / "rows.bin", o);
            CHECK(loader.masked());
            CHECK(loader.row_tokens() == 4);
            REQUIRE(loader.batches_per_epoch() == 1);
            std::vector<int> inputs(15), targets(15);
            loader.next(inputs.data(), targets.data());
            CHECK(inputs == std::vector<int>{EOT, 15496, 995, EOT, 5962, 2512, 13, EOT, EOT, EOT,
                                             6610, 2393, 13, EOT, EOT});
            CHECK(targets == std::vector<int>{score_prompts ? 15496 : -1, 995, EOT, 5962, 2512, 13,
                                              EOT, -1, -1, score_prompts ? 6610 : -1, 2393, 13, EOT,
                                              -1, -1});
        }
    }
    SUBCASE("or dropped") {
        const Run r = tokenize(common + " --seq 3 --long drop --output " + (w / "rows.bin"));
        INFO(r.out);
        REQUIRE(r.status == 0);
        CHECK(read_shard(w / "rows.bin", 4) == Tokens{{EOT, 15496, 995, EOT}, {0, 1, 2, 2}});
        CHECK(r.out.find("1 examples") != std::string::npos);
        CHECK(r.out.find("rows of 4 tokens: 1 rows, 0 padding tokens; 0 examples split, 2 "
                         "dropped") != std::string::npos);
    }
    SUBCASE("shards hold whole rows of whole examples") {
        const Run r = tokenize(common + " --seq 3 --output " + (w / "out") +
                               " --val-tokens 1 --shard-tokens 4");
        INFO(r.out);
        REQUIRE(r.status == 0);
        CHECK(read_shard(w / "out_val_000000.bin", 4).tokens.size() == 4);
        CHECK(read_shard(w / "out_train_000001.bin", 4).tokens.size() == 8);
        CHECK(read_shard(w / "out_train_000002.bin", 4).tokens.size() == 8);
        CHECK(!fs::exists(w / "out_train_000003.bin"));
    }
}

TEST_CASE("tokenize stops at a bad JSON Lines line naming file and line, or skips it") {
    Workdir w;
    const std::string path = w / "bad.jsonl";
    std::ofstream(path) << "{\"text\": \"First block.\"}\n\n[1, 2]\r\n{\"prompt\": \"a\"}\n";
    const Run r = tokenize("--input " + path + " --output " + (w / "o.bin"));
    INFO(r.out);
    CHECK(r.status == 1);
    CHECK(r.out == "gpt2: error: " + path + ":3: not a JSON object\n");

    const Run skip = tokenize("--input " + path + " --output " + (w / "o.bin") + " --skip-bad");
    INFO(skip.out);
    REQUIRE(skip.status == 0);
    CHECK(skip.out.find("2 bad lines skipped") != std::string::npos);
    CHECK(read_shard(w / "o.bin", 0) == Tokens{{EOT, 5962, 2512, 13, EOT}, {0, 2, 2, 2, 2}});

    std::ofstream(w / "worse.jsonl") << "nope\n{\"text\": \"\"}\n";
    check_one_line_error(tokenize("--input " + (w / "worse.jsonl") + " --output " + (w / "p.bin")),
                         1, "gpt2: error: " + (w / "worse.jsonl") + ":1: not valid JSON: ");
    const Run all =
        tokenize("--input " + (w / "worse.jsonl") + " --output " + (w / "p.bin") + " --skip-bad");
    CHECK(all.status == 1);
    CHECK(all.out == "gpt2: error: " + (w / "worse.jsonl") +
                         ": every one of the 2 lines is bad; none is an example\n");
    CHECK(!fs::exists(w / "p.bin"));
}

TEST_CASE("tokenize is all or nothing: a run that fails leaves an earlier run's shards as "
          "they were") {
    Workdir w;
    const std::string args = " --val-tokens 2 --shard-tokens 5 --output " + (w / "out");
    std::ofstream(w / "ex.jsonl") << kExamples;
    REQUIRE(tokenize("--input " + (w / "ex.jsonl") + args).status == 0);
    auto files = [&] {
        std::vector<std::pair<std::string, std::string>> found;
        for (const auto& entry : fs::directory_iterator(w.dir))
            found.emplace_back(entry.path().filename().string(), read_bytes(entry.path()));
        std::sort(found.begin(), found.end());
        return found;
    };
    const auto before = files();
    REQUIRE(before.size() == 7); // the input, 3 shards and 3 masks

    // Two shards' worth of other examples, then a bad line.
    std::ofstream(w / "bad.jsonl") << "{\"text\": \"One two three four five.\"}\n"
                                   << "{\"text\": \"Six seven eight nine ten.\"}\n"
                                   << "{\"prompt\": \"a\"}\n";
    const Run bad = tokenize("--input " + (w / "bad.jsonl") + args);
    check_one_line_error(bad, 1, "gpt2: error: " + (w / "bad.jsonl") + ":3: ");
    fs::remove(w / "bad.jsonl");
    CHECK(files() == before); // no shard replaced, no .partial left

    // Plain text over masked shards: the masks go with them. One shard of three: the
    // other two are named on stderr.
    std::ofstream(w / "a.txt") << "Hello";
    const Run text =
        tokenize("--input " + (w / "a.txt") + " --val-tokens 1 --output " + (w / "out"));
    INFO(text.out);
    REQUIRE(text.status == 0);
    CHECK(read_shard(w / "out_val_000000.bin", 0) == Tokens{{15496}, {2}});
    CHECK(!fs::exists(w / "out_val_000000.bin.mask"));
    CHECK(text.out.find("warning: " + (w / "out_train_000001.bin") +
                        " is an earlier run's shard, not replaced by this one") !=
          std::string::npos);
    CHECK(text.out.find((w / "out_train_000002.bin") + " is an earlier run's shard") !=
          std::string::npos);

    // Nothing to write is an error, not a run that leaves the old shards looking new.
    std::ofstream(w / "empty.txt").flush();
    check_one_line_error(tokenize("--input " + (w / "empty.txt") + args), 1,
                         "gpt2: error: " + (w / "empty.txt") + ": no tokens to write");
}

TEST_CASE("tokenize refuses settings that do not fit the input format") {
    Workdir w;
    std::ofstream(w / "ex.jsonl") << kExamples;
    std::ofstream(w / "t.txt") << "Some text.";
    const std::string jsonl = "--input " + (w / "ex.jsonl") + " --output " + (w / "o");
    const std::string text = "--input " + (w / "t.txt") + " --output " + (w / "o");
    const std::pair<std::string, std::string> cases[] = {
        {jsonl + " --pack off", "--seq: is needed with --pack off"},
        {jsonl + " --seq 8", "--seq: applies with --pack off only"},
        {jsonl + " --long drop", "--long: applies with --pack off only"},
        {jsonl + " --eot-between-docs", "--eot-between-docs: applies to text input only"},
        {text + " --pack off --seq 8", "--pack: applies to JSON Lines input only"},
        {text + " --skip-bad", "--skip-bad: applies to JSON Lines input only"},
        {"--input " + (w / "ex.jsonl") + " " + (w / "t.txt") + " --output " + (w / "o"),
         "--input: mixes JSON Lines (" + (w / "ex.jsonl") + ") and text (" + (w / "t.txt") + ")"},
        {jsonl + " --pack off --seq 0", "--seq: "},
    };
    for (const auto& entry : cases) {
        const auto& args = std::get<0>(entry);
        const auto& expected = std::get<1>(entry);
        const Run r = tokenize(args);
        check_one_line_error(r, 2, "gpt2: error: " + expected);
        CHECK(r.out.ends_with(" --help')\n"));
    }
    CHECK(!fs::exists(w / "o_train_000000.bin"));
}

TEST_CASE("a JSON Lines line is a text or a prompt and a completion, and nothing else") {
    const std::string path = "f.jsonl";
    const auto text = data::parse_example(R"({"text": "a b", "meta": 3})", path, 1);
    CHECK(text.is_text);
    CHECK(text.text == "a b");
    const auto pc = data::parse_example(R"({"prompt": "", "completion": "x"})", path, 1);
    CHECK(!pc.is_text);
    CHECK(pc.prompt.empty());
    CHECK(pc.completion == "x");

    const std::pair<std::string, std::string> bad[] = {
        {"{\"text\": 1", "not valid JSON: "},
        {"\"text\"", "not a JSON object"},
        {R"({"text": "a", "prompt": "b", "completion": "c"})", "has both"},
        {R"({"id": 1})", "has neither \"text\" nor \"prompt\" and \"completion\""},
        {R"({"prompt": "a"})", "has \"prompt\" but no \"completion\""},
        {R"({"completion": "a"})", "has \"completion\" but no \"prompt\""},
        {R"({"text": null})", "\"text\" is not a string"},
        {R"({"prompt": 1, "completion": "a"})", "\"prompt\" is not a string"},
        {R"({"text": ""})", "\"text\" is empty"},
        {R"({"prompt": "a", "completion": ""})", "\"completion\" is empty"},
    };
    for (const auto& entry : bad) {
        const auto& line = std::get<0>(entry);
        const auto& problem = std::get<1>(entry);
        CAPTURE(line);
        try {
            data::parse_example(line, path, 7);
            FAIL("no error");
        } catch (const base::FileError& e) {
            CHECK(e.path() == path);
            CHECK(e.line() == 7);
            CHECK(e.problem().starts_with(problem));
        }
    }
}

TEST_CASE("an example's rows put every token in a target place exactly once") {
    data::Example ex;
    for (int i = 1; i <= 7; ++i) ex.append(i, i <= 2 ? data::kPromptToken : data::kScoredToken);
    data::Example rows;
    const auto split = data::append_rows(ex, 4, data::LongExamples::split, rows);
    CHECK(split.rows == 3);
    CHECK(split.padding == 2);
    CHECK(split.split);
    CHECK(rows.tokens == std::vector<int>{EOT, 1, 2, 3, 3, 4, 5, 6, 6, 7, EOT, EOT});
    CHECK(rows.classes == std::vector<uint8_t>{0, 1, 1, 2, 0, 2, 2, 2, 0, 2, 0, 0});

    data::Example none;
    const auto dropped = data::append_rows(ex, 4, data::LongExamples::drop, none);
    CHECK(dropped.dropped);
    CHECK(dropped.rows == 0);
    CHECK(none.size() == 0);

    data::Example exact;
    const auto fits = data::append_rows(ex, 8, data::LongExamples::drop, exact);
    CHECK(!fits.split);
    CHECK(fits.rows == 1);
    CHECK(fits.padding == 0);
    CHECK(exact.size() == 8);
}
