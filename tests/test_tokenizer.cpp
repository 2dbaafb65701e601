// The GPT-2 tokenizer: ids as the reference GPT-2 tokenizer gives them (expected ids
// from scripts/reference_tokenizer.py, OpenAI's algorithm with Python's regex module).
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

#include <doctest/doctest.h>

#include "data/tokenizer.h"
#include "helpers.h"

using data::Tokenizer;

namespace {

Tokenizer& gpt2_tokenizer() {
    static Tokenizer tok(TOKENIZER_DIR);
    return tok;
}

struct Case {
    std::string_view text;
    bool allow_special;
    std::vector<int> ids;
};

// English, whitespace runs, newlines, contractions, digits, code, emoji, accents,
// non-Latin scripts, invalid UTF-8, Unicode spaces (NEL, NBSP, ideographic, zero-width),
// and <|endoftext|> with and without special tokens allowed.
const std::vector<Case> kCases = {
    {std::string_view("", 0), false, {}},
    {std::string_view("hello world", 11), false, {31373, 995}},
    {std::string_view("Hello world", 11), false, {15496, 995}},
    {std::string_view("  leading spaces", 16), false, {220, 3756, 9029}},
    {std::string_view("trailing   ", 11), false, {9535, 4386, 220, 220, 220}},
    {std::string_view("a                    b", 22), false, {64,  220, 220, 220, 220, 220, 220,
                                                             220, 220, 220, 220, 220, 220, 220,
                                                             220, 220, 220, 220, 220, 220, 275}},
    {std::string_view("multiple\x0a"
                      "\x0a"
                      "\x0a"
                      "newlines\x0a"
                      "",
                      20),
     false,
     {48101, 628, 198, 3605, 6615, 198}},
    {std::string_view("\x09"
                      "\x09"
                      "tabs\x09"
                      "and\x0d"
                      "\x0a"
                      "CRLF\x0d"
                      "\x0a"
                      "",
                      18),
     false,
     {197, 197, 8658, 82, 197, 392, 201, 198, 34, 7836, 37, 201, 198}},
    {std::string_view(" \x0a"
                      " \x0a"
                      " ",
                      5),
     false,
     {220, 198, 220, 198, 220}},
    {std::string_view("I'm don't we'll you've they'd it's I'M DON'T", 44),
     false,
     {40, 1101, 836, 470, 356, 1183, 345, 1053, 484, 1549, 340, 338, 314, 6, 44, 23917, 6, 51}},
    {std::string_view("123456789 3.14159 1,000,000 2024-11-24 0x1F", 43),
     false,
     {10163, 2231, 3134,  4531, 513,  13, 1415, 19707, 352, 11, 830,
      11,    830,  48609, 12,   1157, 12, 1731, 657,   87,  16, 37}},
    {std::string_view("def f(x):\x0a"
                      "    return x**2  # square\x0a"
                      "\x0a"
                      "\x09"
                      "if (a && b) { c++; }\x0a"
                      "",
                      59),
     false,
     {4299, 277, 7,   87,  2599, 198, 220,   220, 220, 1441, 2124, 1174,  17,   220, 1303,
      6616, 628, 197, 361, 357,  64,  11405, 275, 8,   1391, 269,  47253, 1782, 198}},
    {std::string_view("\xf0"
                      "\x9f"
                      "\xa4"
                      "\x96"
                      "\xf0"
                      "\x9f"
                      "\x91"
                      "\x8d"
                      "\xf0"
                      "\x9f"
                      "\x8f"
                      "\xbd"
                      " h\xc3"
                      "\xa9"
                      "llo w\xc3"
                      "\xb6"
                      "rld na\xc3"
                      "\xaf"
                      "ve caf\xc3"
                      "\xa9"
                      "",
                      39),
     false,
     {8582, 97, 244, 41840, 235, 8582, 237, 121, 289, 2634, 18798, 266, 30570, 335, 41492, 40304}},
    {std::string_view("\xe6"
                      "\x97"
                      "\xa5"
                      "\xe6"
                      "\x9c"
                      "\xac"
                      "\xe8"
                      "\xaa"
                      "\x9e"
                      "\xe3"
                      "\x81"
                      "\xae"
                      "\xe3"
                      "\x83"
                      "\x86"
                      "\xe3"
                      "\x82"
                      "\xad"
                      "\xe3"
                      "\x82"
                      "\xb9"
                      "\xe3"
                      "\x83"
                      "\x88"
                      " \xce"
                      "\x95"
                      "\xce"
                      "\xbb"
                      "\xce"
                      "\xbb"
                      "\xce"
                      "\xb7"
                      "\xce"
                      "\xbd"
                      "\xce"
                      "\xb9"
                      "\xce"
                      "\xba"
                      "\xce"
                      "\xac"
                      " \xd1"
                      "\x80"
                      "\xd1"
                      "\x83"
                      "\xd1"
                      "\x81"
                      "\xd1"
                      "\x81"
                      "\xd0"
                      "\xba"
                      "\xd0"
                      "\xb8"
                      "\xd0"
                      "\xb9"
                      " \xd7"
                      "\xa2"
                      "\xd7"
                      "\x91"
                      "\xd7"
                      "\xa8"
                      "\xd7"
                      "\x99"
                      "\xd7"
                      "\xaa"
                      " \xd9"
                      "\x85"
                      "\xd8"
                      "\xb1"
                      "\xd8"
                      "\xad"
                      "\xd8"
                      "\xa8"
                      "\xd8"
                      "\xa7"
                      "",
                      78),
     false,
     {33768, 98,    17312, 105,   45739, 252,   5641,  24336, 25084, 43302, 7377,
      243,   39377, 39377, 138,   115,   26180, 29945, 43000, 138,   105,   220,
      21169, 35072, 21727, 21727, 31583, 18849, 140,   117,   14360, 95,    49603,
      37778, 33951, 103,   47048, 26897, 148,   255,   39848, 12919}},
    {std::string_view("\xe0"
                      "\xa4"
                      "\xb9"
                      "\xe0"
                      "\xa4"
                      "\xbf"
                      "\xe0"
                      "\xa4"
                      "\xa8"
                      "\xe0"
                      "\xa5"
                      "\x8d"
                      "\xe0"
                      "\xa4"
                      "\xa6"
                      "\xe0"
                      "\xa5"
                      "\x80"
                      " \xed"
                      "\x95"
                      "\x9c"
                      "\xea"
                      "\xb5"
                      "\xad"
                      "\xec"
                      "\x96"
                      "\xb4"
                      " \xe0"
                      "\xb9"
                      "\x84"
                      "\xe0"
                      "\xb8"
                      "\x97"
                      "\xe0"
                      "\xb8"
                      "\xa2"
                      " \xc2"
                      "\xb2"
                      "\xc2"
                      "\xb3"
                      " \xd9"
                      "\xa3"
                      "\xd9"
                      "\xa4"
                      " \xe2"
                      "\x85"
                      "\xa7"
                      "",
                      52),
     false,
     {11976, 117, 11976, 123, 11976, 101, 24231, 235, 11976, 99,    24231, 222,   220,
      47991, 250, 166,   113, 255,   168, 244,   112, 220,   31479, 226,   19567, 245,
      19567, 95,  1587,  110, 126,   111, 18923, 96,  149,   97,    2343,  227,   100}},
    {std::string_view("abc\xff"
                      "\xfe"
                      "def",
                      8),
     false,
     {39305, 6353, 4299}},
    {std::string_view("x\xe2"
                      "\x82"
                      "y",
                      4),
     false,
     {87, 4210, 88}},
    {std::string_view("\xf0"
                      "\x9f"
                      "\x98"
                      "",
                      3),
     false,
     {4210}},
    {std::string_view("\xed"
                      "\xa0"
                      "\x80"
                      " surrogate",
                      13),
     false,
     {48585, 37660}},
    {std::string_view("\xc0"
                      "\xaf"
                      " over",
                      7),
     false,
     {6353, 625}},
    {std::string_view("\xf4"
                      "\x90"
                      "\x80"
                      "\x80"
                      " big",
                      8),
     false,
     {12100, 1263}},
    {std::string_view("a\xc2"
                      "\x85"
                      "b c\xc2"
                      "\xa0"
                      "d e\xe3"
                      "\x80"
                      "\x80"
                      "f g\xe2"
                      "\x80"
                      "\x8b"
                      "h i\xe2"
                      "\x80"
                      "\xa8"
                      "j",
                      27),
     false,
     {64, 126, 227, 65, 269, 1849, 67, 304, 5099, 222, 69, 308, 9525, 71, 1312, 447, 101, 73}},
    {std::string_view("  \xc2"
                      "\xa0"
                      " \xe2"
                      "\x80"
                      "\x83"
                      "x",
                      9),
     false,
     {220, 5624, 220, 447, 225, 87}},
    {std::string_view("<|endoftext|>", 13), false, {27, 91, 437, 1659, 5239, 91, 29}},
    {std::string_view("<|endoftext|>", 13), true, {50256}},
    {std::string_view("one<|endoftext|>two <|endoftext|> three<|endoftext|>", 52),
     true,
     {505, 50256, 11545, 220, 50256, 1115, 50256}},
    {std::string_view("Hello,  world!!! ...   \x3f"
                      "\x3f"
                      " -- ''quoted'' \x22"
                      "double\x22"
                      "",
                      48),
     false,
     {15496, 11, 220, 995, 10185, 2644, 220, 220, 19153, 1377, 10148, 421, 5191, 7061, 366, 23352,
      1}},
    {std::string_view("'s's 'S 'll've're", 17), false, {338, 338, 705, 50, 705, 297, 1053, 821}},
};

} // namespace

TEST_CASE("tokenizer gives the reference GPT-2 ids on adversarial strings") {
    Tokenizer& tok = gpt2_tokenizer();
    for (const Case& c : kCases) {
        INFO("text: ", std::string(c.text));
        CHECK(tok.encode(c.text, c.allow_special) == c.ids);
    }
}

TEST_CASE("decoding gives back the bytes, with invalid UTF-8 replaced by U+FFFD") {
    Tokenizer& tok = gpt2_tokenizer();
    for (const Case& c : kCases) {
        INFO("text: ", std::string(c.text));
        CHECK(tok.decode(tok.encode(c.text, c.allow_special)) == data::sanitize_utf8(c.text));
    }
    CHECK(tok.token_bytes(Tokenizer::kEndOfText) == "<|endoftext|>");
    CHECK(tok.vocab_size() == 50257);
    CHECK_THROWS_AS(tok.token_bytes(50257), std::out_of_range);
    // A token boundary may split a character: the bytes still join up.
    const auto ids = tok.encode("\xF0\x9F\xA4\x96");
    CHECK(ids.size() > 1);
    CHECK(tok.decode(ids) == "\xF0\x9F\xA4\x96");
}

TEST_CASE("invalid UTF-8 is replaced per maximal subpart, as Python decodes it") {
    using data::sanitize_utf8;
    const std::string fffd = "\xEF\xBF\xBD";
    CHECK(sanitize_utf8("plain \xC3\xA9") == "plain \xC3\xA9");
    CHECK(sanitize_utf8("\xFF") == fffd);
    CHECK(sanitize_utf8("\xE2\x82") == fffd); // truncated 3-byte sequence
    CHECK(sanitize_utf8("\xE2\x82x") == fffd + "x");
    CHECK(sanitize_utf8("\xF0\x80") == fffd + fffd);                       // F0 needs 90..BF next
    CHECK(sanitize_utf8("\xED\xA0\x80") == fffd + fffd + fffd);            // a surrogate
    CHECK(sanitize_utf8("\xC0\xAF") == fffd + fffd);                       // overlong
    CHECK(sanitize_utf8("\xF4\x90\x80\x80") == fffd + fffd + fffd + fffd); // > U+10FFFF
    CHECK(sanitize_utf8(std::string_view("a\0b", 3)) == std::string("a\0b", 3));
}

TEST_CASE("a missing or malformed tokenizer folder is a one-line error naming the file") {
    CHECK_THROWS_WITH_AS(Tokenizer("/nonexistent"), doctest::Contains("/nonexistent/encoder.json"),
                         std::runtime_error);
}

TEST_CASE("a tokenizer with a repeated id or a truncated vocab.bpe is refused naming the file") {
    testing::Workdir w;
    const std::string dir = std::string(TOKENIZER_DIR);
    std::string encoder = testing::read_bytes(dir + "/encoder.json");
    const std::string merges = testing::read_bytes(dir + "/vocab.bpe");
    auto write = [&](const std::string& name, const std::string& bytes) {
        std::ofstream(w / name, std::ios::binary) << bytes;
    };
    write("vocab.bpe", merges);

    SUBCASE("two tokens with one id") {
        // '"!": 0' becomes '"!": 1', the id of '"'.
        const size_t at = encoder.find("\"!\": 0,");
        REQUIRE(at != std::string::npos);
        encoder.replace(at, 7, "\"!\": 1,");
        write("encoder.json", encoder);
        CHECK_THROWS_WITH_AS(Tokenizer(w.dir.string()),
                             doctest::Contains("encoder.json: id 1 is given to both"),
                             std::runtime_error);
    }
    SUBCASE("vocab.bpe cut at a line") {
        write("encoder.json", encoder);
        write("vocab.bpe", merges.substr(0, merges.rfind('\n', merges.size() - 2) + 1));
        CHECK_THROWS_WITH_AS(Tokenizer(w.dir.string()),
                             doctest::Contains("vocab.bpe: truncated or incomplete: 1 tokens"),
                             std::runtime_error);
    }
    SUBCASE("vocab.bpe cut inside a line") {
        write("encoder.json", encoder);
        write("vocab.bpe", merges.substr(0, merges.size() - 3));
        CHECK_THROWS_WITH_AS(Tokenizer(w.dir.string()), doctest::Contains("vocab.bpe"),
                             std::runtime_error);
    }
}
