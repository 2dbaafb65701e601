// LAMBADA files (eval/lambada.h): OpenAI's jsonl ({"text": ...} per line) or plain text,
// split into context and target word (and into context and last token), encoded with
// GPT-2's real tokenizer.
#include <exception>

#include "eval/lambada.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static data::Tokenizer tok(fuzz::tokenizer_dir());
    const std::string path = fuzz::write_file("lambada.jsonl", data, size);
    for (const auto target : {eval::LambadaTarget::word, eval::LambadaTarget::token}) {
        try {
            for (const eval::LambadaExample& ex : eval::read_lambada(path, tok, target))
                FUZZ_CHECK(!ex.target_ids.empty());
        } catch (const std::exception&) {
            // a rejected file
        }
    }
    return 0;
}
