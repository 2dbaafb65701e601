// The tokenizer's files (data/tokenizer.h). An input whose first non-blank byte is '{'
// is an encoder.json (with GPT-2's vocab.bpe beside it); any other input is a vocab.bpe
// beside GPT-2's encoder.json, and once it loads, the input itself is encoded with those
// merges and must decode back to its (UTF-8-sanitized) bytes.
#include <exception>
#include <filesystem>
#include <string_view>

#include "data/tokenizer.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

// Folders holding one fuzzed file and GPT-2's other file, copied once.
struct Dirs {
    std::string encoder_dir, merges_dir;
    Dirs() {
        namespace fs = std::filesystem;
        const fs::path real = fuzz::tokenizer_dir();
        encoder_dir = (fuzz::workdir() / "enc").string();
        merges_dir = (fuzz::workdir() / "bpe").string();
        fs::create_directories(encoder_dir);
        fs::create_directories(merges_dir);
        fs::copy_file(real / "vocab.bpe", fs::path(encoder_dir) / "vocab.bpe");
        fs::copy_file(real / "encoder.json", fs::path(merges_dir) / "encoder.json");
    }
};

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static const Dirs dirs;
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    const size_t first = text.find_first_not_of(" \t\r\n");
    const bool encoder = first != std::string_view::npos && text[first] == '{';
    const std::string dir = encoder ? dirs.encoder_dir : dirs.merges_dir;
    fuzz::write_file(encoder ? "enc/encoder.json" : "bpe/vocab.bpe", data, size);
    try {
        data::Tokenizer tok(dir);
        const std::vector<int> ids = tok.encode(text);
        FUZZ_CHECK(tok.decode(ids) == data::sanitize_utf8(text));
    } catch (const std::exception&) {
        // a rejected file
    }
    return 0;
}
