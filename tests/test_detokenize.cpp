// The WikiText and PTB detokenizers, word counts and article splitting against the
// Python references (Megatron-LM's detokenizer.py, lm-evaluation-harness's wikitext task).
// Expected strings are the references' outputs on real lines of the shared data files.
#include <filesystem>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <doctest/doctest.h>

#include "eval/detokenize.h"
#include "helpers.h"

using eval::Detokenizer;

namespace {

struct Case {
    std::string_view text, expected;
};

// wiki.test.tokens, by line number.
const std::vector<Case> kWikitext = {
    {// lines 6-11: headings and blank lines
     " \n = = Career = = \n \n \n = = = 2000 – 2005 = = = \n \n",
     "\n== Career ==\n\n\n=== 2000 – 2005 ===\n\n"},
    {// line 117: title with brackets
     " = Kiss You ( One Direction song ) = \n \n", " = Kiss You (One Direction song) =\n\n"},
    {// line 1698: @-@ @,@ @.@ ( ) [ ]
     " α @-@ <unk> with <unk> has been widely implemented in total synthesis . It is a key step in "
     "both the <unk> <unk> total synthesis and the <unk> <unk> total synthesis . Additionally , "
     "<unk> implemented the transformation in his synthesis of the <unk> @-@ <unk> ( <unk> 1 @,@ 7 "
     "@-@ <unk> [ 5 @.@ 5 ] <unk> @-@ 3 @-@ <unk> ) System of <unk> acid . \n",
     " α-<unk> with <unk> has been widely implemented in total synthesis. It is a key step in both "
     "the <unk> <unk> total synthesis and the <unk> <unk> total synthesis. Additionally, <unk> "
     "implemented the transformation in his synthesis of the <unk>-<unk> (<unk> 1,7-<unk> [5.5] "
     "<unk>-3-<unk>) System of <unk> acid.\n"},
    {// line 281: 's, @,@, ( ; )
     " <unk> was considered one of the greatest <unk> 's of the 1940s . In four seasons with the "
     "Michigan Wolverines , <unk> played in 32 games and had over 1 @,@ 000 yards of total offense "
     ". <unk> held the University of Michigan 's single season and career record for touchdown "
     "receptions ( eight in a season ; sixteen career ) until his records were broken by Anthony "
     "Carter in 1980 . \n",
     " <unk> was considered one of the greatest <unk>'s of the 1940s. In four seasons with the "
     "Michigan Wolverines, <unk> played in 32 games and had over 1,000 yards of total offense. "
     "<unk> held the University of Michigan's single season and career record for touchdown "
     "receptions (eight in a season; sixteen career) until his records were broken by Anthony "
     "Carter in 1980.\n"},
    {// line 2805: 's, double quotes inside brackets
     " <unk> 's father was described by <unk> as a murderer and a <unk> who was charged by Emperor "
     "<unk> with treason , adultery and <unk> . <unk> died , allowing him to escape these charges "
     ". <unk> 's father died of <unk> ( \" <unk> \" ) in 39 when <unk> was two . \n",
     " <unk>'s father was described by <unk> as a murderer and a <unk> who was charged by Emperor "
     "<unk> with treason, adultery and <unk>. <unk> died, allowing him to escape these charges. "
     "<unk>'s father died of <unk> (\"<unk>\") in 39 when <unk> was two.\n"},
    {// line 682: single quotes
     " There is no clearly defined end to the ironclad , besides the transition from wood hulls to "
     "all @-@ metal . <unk> continued to be used in World War I. Towards the end of the 19th "
     "century , the descriptions ' battleship ' and ' armored cruiser ' came to replace the term ' "
     "ironclad ' . \n",
     " There is no clearly defined end to the ironclad, besides the transition from wood hulls to "
     "all-metal. <unk> continued to be used in World War I. Towards the end of the 19th century, "
     "the descriptions'battleship' and 'armored cruiser' came to replace the term 'ironclad'.\n"},
    {// line 435: plural possessive s '
     " North Korean and US troops remained locked in combat along the <unk> River for several more "
     "days . The North Koreans ' offensive capability was largely destroyed , and the US troops "
     "resolved to hold their lines barring further attack . \n",
     " North Korean and US troops remained locked in combat along the <unk> River for several more "
     "days. The North Koreans' offensive capability was largely destroyed, and the US troops "
     "resolved to hold their lines barring further attack.\n"},
    {// line 2573 (first sentence): degree sign
     " Because the orbit of the Moon is <unk> only 5 ° from the ecliptic , ",
     " Because the orbit of the Moon is <unk> only 5°from the ecliptic, "},
};

// ptb.test.txt, by line number. " N " -> "1 " glues the number to the word before, as
// Megatron's reference does.
const std::vector<Case> kPtb = {
    {// lines 1-2: n't and N
     " no it was n't black monday \n but while the new york stock exchange did n't fall apart "
     "friday as the dow jones industrial average plunged N points most of it in the final hour it "
     "barely managed to stay this side of chaos \n",
     " no it wasn't black monday\nbut while the new york stock exchange didn't fall apart friday "
     "as the dow jones industrial average plunged1 points most of it in the final hour it barely "
     "managed to stay this side of chaos\n"},
    {// line 83: 'll, n't
     " obviously we 'll take a close look at any situation in which we think the <unk> obligations "
     "were n't met he said \n",
     " obviously we'll take a close look at any situation in which we think the <unk> obligations "
     "weren't met he said\n"},
    {// line 137: investments ' $ N
     " two years ago there were massive redemption levels over the weekend and a lot of fear "
     "around said c. bruce <unk> who runs fidelity investments ' $ N billion <unk> fund \n",
     " two years ago there were massive redemption levels over the weekend and a lot of fear "
     "around said c. bruce <unk> who runs fidelity investments' $1 billion <unk> fund\n"},
    {// line 248: # N, $ N
     " britain 's government plans to raise about # N billion $ N billion from the sale of most of "
     "its giant water and electric utilities beginning next month \n",
     " britain's government plans to raise about #1 billion $1 billion from the sale of most of "
     "its giant water and electric utilities beginning next month\n"},
};

std::string read_shared(const std::string& name) {
    auto path = std::filesystem::path(SHARED_DATA_DIR) / name;
    REQUIRE_MESSAGE(std::filesystem::exists(path),
                    "missing " << path << " (see ../shared/data/MANIFEST.md)");
    return testing::read_bytes(path);
}

} // namespace

TEST_CASE("wikitext detokenizer matches the reference on real WikiText-2 lines") {
    for (const auto& c : kWikitext)
        CHECK(eval::detokenize(c.text, Detokenizer::wikitext) == c.expected);
}

TEST_CASE("ptb detokenizer matches Megatron's on real PTB lines") {
    for (const auto& c : kPtb) CHECK(eval::detokenize(c.text, Detokenizer::ptb) == c.expected);
}

TEST_CASE("detokenizer rules follow the reference's order and pairing") {
    auto wiki = [](std::string_view s) { return eval::detokenize(s, Detokenizer::wikitext); };
    auto ptb = [](std::string_view s) { return eval::detokenize(s, Detokenizer::ptb); };
    CHECK(wiki("the boys ' toys") == "the boys' toys");   // "s '" runs before quote pairing
    CHECK(wiki("it ' s") == "it ' s");                    // a lone quote pairs with nothing
    CHECK(wiki("a ( b\n c ) d ( e") == "a (b\nc) d ( e"); // pairs span lines; unclosed left alone
    CHECK(wiki("x ( a ( b ) c )") == "x (a ( b) c )");    // first closer wins, no nesting
    CHECK(wiki("\" a \" b \" c") == "\"a\" b \" c");
    CHECK(wiki("( \u00a0x\u3000 )") == "(x)"); // Python's \s includes NBSP, U+3000
    CHECK(wiki("( \u200bx )") == "(\u200bx)"); // but not the zero-width space
    CHECK(wiki("= = = = Deep = = = =") == "==== Deep ====");
    CHECK(wiki(" 5 \u00b0 C") == " 5\u00b0C");
    CHECK(wiki("1 @-@ 2 @-@ 3") == "1-2-3");
    CHECK(wiki(" N N N ") == " 1 N 1 ");                  // str.replace never overlaps
    CHECK(wiki("see /' 3/ here") == "see /'[0-9]/ here"); // the reference's literal-slash regex
    CHECK(ptb(" N N N ") == "1 N1 ");
    CHECK(ptb("the boys ' toys") == "the boys' toys");
    CHECK(eval::detokenize(" a @-@ b ' c ", Detokenizer::none) == " a @-@ b ' c ");
}

TEST_CASE("parse_detokenizer knows none, wikitext, ptb and cbt") {
    for (const char* name : {"none", "wikitext", "ptb", "cbt"})
        CHECK(eval::detokenizer_name(eval::parse_detokenizer(name)) == std::string_view(name));
    CHECK(eval::parse_detokenizer("ptb") == Detokenizer::ptb);
    CHECK_THROWS_WITH_AS(eval::parse_detokenizer("wiki"),
                         "unknown detokenizer 'wiki' (expected none, wikitext, ptb or cbt)",
                         std::invalid_argument);
}

TEST_CASE("count_words is str.split and count_words_lm_eval is re.split on \\s+") {
    struct W {
        std::string_view text;
        size_t split, re_split;
    };
    for (const auto& entry :
         std::vector<W>{{"", 0, 1},
                        {" ", 0, 2},
                        {"a", 1, 1},
                        {" a b ", 2, 4},
                        {"a\tb\nc", 3, 3},
                        {"  \n\n a  b\n", 2, 4},      // leading and trailing runs count once each
                        {"\u00a0a\u3000b\x1c", 2, 4}, // Unicode spaces and \x1c split
                        {"a\u200bb", 1, 1}}) {        // the zero-width space does not
        const auto& text = entry.text;
        const auto& split = entry.split;
        const auto& re_split = entry.re_split;
        CAPTURE(text);
        CHECK(eval::count_words(text) == split);
        CHECK(eval::count_words_lm_eval(text) == re_split);
    }
}

TEST_CASE("wikitext articles split at top-level titles only") {
    std::string raw = " \n = A = \n \n x ( y ) \n = = Sub = = \n \n = = = Deeper = = = \n z \n = B "
                      "( film ) = \n w \n";
    auto pages = eval::split_wikitext_articles(raw);
    REQUIRE(pages.size() == 2); // the leading blank page is dropped
    CHECK(pages[0] == " = A = \n \n x ( y ) \n = = Sub = = \n \n = = = Deeper = = = \n z ");
    CHECK(pages[1] == " = B ( film ) = \n w \n");
    CHECK(eval::split_wikitext_articles("") == std::vector<std::string>{""});
    CHECK(eval::split_wikitext_articles("=\n= =\n") == std::vector<std::string>{"=\n= =\n"});
}

TEST_CASE("wikitext-2 test has lm-eval's 62 articles, words and detokenized bytes") {
    std::string raw = read_shared("wikitext-2/wiki.test.raw");
    auto pages = eval::split_wikitext_articles(raw);
    REQUIRE(pages.size() == 62);
    CHECK(pages.front().starts_with(" = Robert Boulter = \n \n Robert Boulter is"));
    CHECK(pages[1].starts_with(" = Du Fu = \n"));
    CHECK(pages.back().starts_with(" = The Hustler ( film ) = \n"));
    std::string joined = " "; // the dropped blank first line
    size_t words = 0, bytes = 0;
    for (const auto& p : pages) {
        joined += "\n" + p;
        words += eval::count_words_lm_eval(p);
        bytes += eval::detokenize(p, Detokenizer::wikitext).size();
        CHECK(eval::count_words_lm_eval(p) == eval::count_words(p) + 2);
    }
    CHECK(joined == raw);
    CHECK(words == 241335);  // lm-eval's word_perplexity denominator (Python reference)
    CHECK(bytes == 1240466); // sum of UTF-8 bytes of wikitext_detokenizer(page), Python reference
}

TEST_CASE("ptb detokenizer on the whole PTB test file matches the reference's size") {
    std::string text = read_shared("ptb/ptb.test.txt");
    CHECK(text.size() == 449945);
    CHECK(eval::detokenize(text, Detokenizer::ptb).size() == 439190);
}
