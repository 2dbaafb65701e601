// Detokenizers, word counts and article splitting for zero-shot perplexity on
// WikiText and PTB, reproducing the Python references byte for byte (and our own light
// detokenizer for the Children's Book Test, below):
//   Megatron-LM tasks/zeroshot_gpt/detokenizer.py            (NVIDIA/Megatron-LM @ 64f72f08)
//   lm-evaluation-harness lm_eval/tasks/wikitext/preprocess_wikitext.py (@ 244246fa)
//   lm-evaluation-harness .../wikitext_document_level.py _generate_examples (@ 73414610)
// The two wikitext detokenizers are identical; the PTB one is Megatron's.
//
// wikitext rules, applied in this order ("a" -> "b" is Python's str.replace: every
// non-overlapping occurrence, left to right, in one pass):
//    1. "s '" -> "s'"                                 possessive plural
//    2. "/' D/" -> "/'[0-9]/" (D a digit)             the reference's re.sub(r"/' [0-9]/",
//    r"/'[0-9]/");
//                                                     a literal-slash typo kept as is (never fires
//                                                     on WikiText)
//    3. " @-@ " -> "-",  4. " @,@ " -> ",",  5. " @.@ " -> "."
//    6-11. " : " -> ": ", " ; " -> "; ", " . " -> ". ", " ! " -> "! ", " ? " -> "? ", " , " -> ", "
//   12-16. for each delimiter pair in turn: ( ), [ ], { }, " ", ' ' : scan left to right,
//          pair each opener with the first closer after it (across lines; nesting ignored)
//          and strip whitespace just inside both ends. This is re.sub(r"\(\s*([^\)]*?)\s*\)",
//          r"(\1)") and its siblings; an opener with no closer after it is left alone.
//   17. "= = = =" -> "====",  18. "= = =" -> "===",  19. "= =" -> "=="   heading markers
//   20. " ° " -> "°"  (U+00B0)
//   21. " \n" -> "\n",  22. "\n " -> "\n"
//   23. " N " -> " 1 "
//   24. " 's" -> "'s"
//
// ptb rules (Megatron), in order:
//   1. " '" -> "'"   2. " \n" -> "\n"   3. "\n " -> "\n"   4. " n't" -> "n't"
//   5. " N " -> "1 "  (sic: the reference drops the space before N, "plunged N points"
//                      -> "plunged1 points"; kept so perplexities stay comparable)
//   6. "$ 1" -> "$1"   7. "# 1" -> "#1"
// Neither detokenizer touches "<unk>".
//
// Whitespace everywhere here is Python's str.isspace() / re's \s for str patterns:
// ASCII \t \n \v \f \r, \x1c-\x1f, space, and U+0085, U+00A0, U+1680, U+2000-U+200A,
// U+2028, U+2029, U+202F, U+205F, U+3000 (decoded from UTF-8). The WikiText-2 and PTB
// files hold only ' ' and '\n', but matching Python's full set keeps counts exact on
// any input.
//
// cbt rules (ours; CBT text has its tokens separated by spaces, quotes as `` and ''): the
// text is split at ' ' only into tokens (empty ones dropped) and joined with one space, except
//   1. `` becomes " and the next token follows it with no space     (opening double quote)
//   2. `  becomes ' and the next token follows it with no space     (opening single quote)
//   3. '' becomes " and follows the token before it with no space   (closing double quote)
//   4. , . ; : ! ? ' n't 's 're 've 'll 'd 'm follow the token before them with no space
// Tokens are compared whole and case-sensitively: "`` Well , '' said he ." -> "\"Well,\" said he."
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace eval {

enum class Detokenizer { none, wikitext, ptb, cbt };

// "none", "wikitext", "ptb" or "cbt"; throws std::invalid_argument listing them.
Detokenizer parse_detokenizer(const std::string& name);
const char* detokenizer_name(Detokenizer which);

std::string detokenize(std::string_view text, Detokenizer which);

// Python's str.strip() (Unicode whitespace) and str.replace(from, to).
std::string_view strip(std::string_view s);
std::string replace_all(std::string_view s, std::string_view from, std::string_view to);

// len(text.split()): the number of maximal runs of non-whitespace.
size_t count_words(std::string_view text);

// len(re.split(r"\s+", text)), lm-eval's wikitext word count (taken on the page *before*
// detokenization): whitespace runs + 1, so leading or trailing whitespace adds an empty
// "word" each, and "" counts 1. WikiText pages start with " = Title = " and end with
// "\n", so this is count_words + 2 on every real page.
size_t count_words_lm_eval(std::string_view text);

// len(text.strip().split(" ")) - 1, Megatron-LM's word count for its adjusted
// perplexity: the spaces inside the stripped text.
size_t count_words_megatron(std::string_view text);

// The pages of EleutherAI/wikitext_document_level from a wiki.*.raw (or .tokens) file:
// split at '\n'; a line starts a new page when, after "= = =" -> "===", "= =" -> "=="
// and stripping whitespace, it starts with "= " and ends with " =" (a top-level title;
// sub-headings have become "== X ==" and don't). Each page is its lines joined by '\n'
// (so no trailing newline of its own; the file's final '\n' leaves the last page ending
// in "\n"). Pages before a title that are only whitespace are dropped; the last page is
// always kept. WikiText-2 test gives 62 pages.
std::vector<std::string> split_wikitext_articles(std::string_view raw);

} // namespace eval
