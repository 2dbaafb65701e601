// Text for the tokenizer's encode (data/tokenizer.h), with GPT-2's real files: the ids
// must be in the vocabulary and decode back to the text (with ill-formed UTF-8 replaced
// by U+FFFD); with <|endoftext|> allowed, only the special token may differ.
#include <exception>
#include <string_view>

#include "data/tokenizer.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static data::Tokenizer tok(fuzz::tokenizer_dir());
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    const std::vector<int> ids = tok.encode(text);
    for (int id : ids) FUZZ_CHECK(id >= 0 && id < tok.vocab_size() && id != tok.kEndOfText);
    FUZZ_CHECK(tok.decode(ids) == data::sanitize_utf8(text));
    const std::vector<int> special = tok.encode(text, true);
    FUZZ_CHECK(tok.decode(special) == data::sanitize_utf8(text));
    FUZZ_CHECK(data::complete_utf8_prefix(text) <= text.size());
    return 0;
}
