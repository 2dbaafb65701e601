// Shared by the libFuzzer targets: most parsers read from a path, so the input bytes are
// written to a file in a private temp folder (under /dev/shm when it exists, else
// $TMPDIR) and the path-based API is called. Expected rejections are exceptions, which
// the targets catch; crashes and sanitizer reports are never caught.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <string_view>

namespace fuzz {

namespace fs = std::filesystem;

// A folder for this process, removed at exit.
inline const fs::path& workdir() {
    static const fs::path dir = [] {
        const fs::path base =
            fs::is_directory("/dev/shm") ? fs::path("/dev/shm") : fs::temp_directory_path();
        fs::path d = base / ("gpt2_fuzz_" + std::to_string(::getpid()));
        fs::create_directories(d);
        std::atexit([] {
            std::error_code ignored;
            fs::remove_all(workdir(), ignored);
        });
        return d;
    }();
    return dir;
}

// Writes bytes to workdir()/name (replacing it) and returns its path.
inline std::string write_file(const std::string& name, const uint8_t* data, size_t size) {
    const std::string path = (workdir() / name).string();
    std::FILE* f = std::fopen(path.c_str(), "wb");
    if (!f || (size && std::fwrite(data, 1, size, f) != size) || std::fclose(f) != 0) {
        std::perror(path.c_str());
        std::abort(); // the harness itself failed, not the parser
    }
    return path;
}

inline std::string write_file(const std::string& name, std::string_view text) {
    return write_file(name, reinterpret_cast<const uint8_t*>(text.data()), text.size());
}

// GPT-2's tokenizer files: $GPT2_TOKENIZER_DIR, else the build's datasets/gpt2-tokenizer.
inline std::string tokenizer_dir() {
    if (const char* dir = std::getenv("GPT2_TOKENIZER_DIR")) return dir;
    return TOKENIZER_DIR;
}

// A check of the target itself (not an expected rejection): report and abort, so that
// libFuzzer saves the input.
#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            std::fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);          \
            std::abort();                                                                          \
        }                                                                                          \
    } while (0)

} // namespace fuzz
