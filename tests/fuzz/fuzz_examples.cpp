// Prompt/completion JSON Lines (data/examples.h): each line parsed, encoded with GPT-2's
// real tokenizer and laid out in rows; and the same bytes read as a shard's loss mask.
#include <exception>
#include <string_view>

#include "data/examples.h"
#include "data/shard.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static data::Tokenizer tok(fuzz::tokenizer_dir());
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    size_t line_number = 0;
    for (size_t start = 0; start < text.size();) {
        size_t end = text.find('\n', start);
        if (end == std::string_view::npos) end = text.size();
        const std::string_view line = text.substr(start, end - start);
        start = end + 1;
        ++line_number;
        try {
            const data::ExampleLine ex = data::parse_example(line, "fuzz.jsonl", line_number);
            data::Example e, rows;
            data::encode_example(tok, ex, false, e);
            FUZZ_CHECK(e.size() >= 1 && e.tokens.back() == data::Tokenizer::kEndOfText);
            FUZZ_CHECK(e.classes.back() == data::kScoredToken);
            for (const int r : {2, 9}) {
                rows.clear();
                const auto added = data::append_rows(e, r, data::LongExamples::split, rows);
                FUZZ_CHECK(rows.size() == added.rows * size_t(r));
            }
        } catch (const std::exception&) {
            // a rejected line
        }
    }
    // As a mask of a shard of (size - 1024) tokens: accepted only if every class is valid.
    const std::string path = fuzz::write_file("tokens.bin.mask", data, size);
    try {
        const size_t n = size > data::kShardHeaderBytes ? size - data::kShardHeaderBytes : 0;
        const data::ShardMask mask(path, n);
        for (size_t i = 0; i < mask.size(); ++i) FUZZ_CHECK(mask[i] <= data::kScoredToken);
    } catch (const std::exception&) {
        // a rejected file
    }
    return 0;
}
