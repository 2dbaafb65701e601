#include "model/llmc_file.h"

#include <bit>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <initializer_list>
#include <memory>
#include <span>

#include "base/error.h"
#include "base/file.h"
#include "model/layout.h"

namespace model {

namespace {

// llm.c writes its files raw from little-endian machines; so do we.
static_assert(std::endian::native == std::endian::little);

constexpr int32_t kModelMagic = 20240326;
constexpr int32_t kShardMagic = 20240520; // data/shard.h's; model/ does not include data/
constexpr size_t kHeaderInts = 256;
constexpr size_t kHeaderBytes = kHeaderInts * sizeof(int32_t);

using base::errno_text;
using base::FileError;
using File = std::unique_ptr<FILE, int (*)(FILE*)>;

File open_file(const std::string& path, const char* mode) {
    File f(std::fopen(path.c_str(), mode), &std::fclose);
    if (!f) throw FileError(path, "cannot open (" + errno_text() + ")");
    return f;
}

void read_exact(FILE* f, void* dst, size_t bytes, const std::string& path) {
    if (std::fread(dst, 1, bytes, f) != bytes)
        throw FileError(path, "read failed (" + errno_text() + ")");
}

void write_bytes(const std::string& tmp, std::initializer_list<std::span<const std::byte>> parts,
                 const std::string& path) {
    File f = open_file(tmp, "wb");
    for (auto part : parts)
        if (std::fwrite(part.data(), 1, part.size(), f.get()) != part.size())
            throw FileError(path, "write failed (" + errno_text() + ")");
    if (std::fclose(f.release()) != 0) throw FileError(path, "write failed (" + errno_text() + ")");
}

std::string size_mismatch(uintmax_t expected, uintmax_t actual) {
    return std::string(actual < expected ? "truncated" : "trailing bytes") + ": expected " +
           std::to_string(expected) + " bytes, found " + std::to_string(actual);
}

} // namespace

ModelFile read_llmc(const std::string& path) {
    File f = open_file(path, "rb");
    std::error_code ec;
    const uintmax_t actual = std::filesystem::file_size(path, ec);
    if (ec) throw FileError(path, "cannot read (" + ec.message() + ")");
    if (actual < kHeaderBytes)
        throw FileError(path, "too short for an llm.c model file (" + std::to_string(actual) +
                                  " bytes, the header alone is " + std::to_string(kHeaderBytes) +
                                  ")");

    int32_t header[kHeaderInts];
    read_exact(f.get(), header, kHeaderBytes, path);
    if (header[0] != kModelMagic) {
        std::string what = "bad magic " + std::to_string(header[0]) + " (expected " +
                           std::to_string(kModelMagic) + " for an llm.c model file)";
        if (header[0] == kShardMagic) what += "; this looks like a token shard, not a model";
        throw FileError(path, what);
    }
    const int version = header[1];
    if (version != 3 && version != 5)
        throw FileError(path, "unsupported llm.c model version " + std::to_string(version) +
                                  " (expected 3 = fp32 or 5 = bf16)");

    ModelFile m;
    Config& c = m.config;
    c.max_seq = header[2];
    c.vocab = header[3];
    c.n_layer = header[4];
    c.n_head = header[5];
    c.n_embd = header[6];
    c.padded_vocab = header[7];
    check_file_config(path, c);

    const size_t n = ParamLayout(c).total();
    const size_t bytes_per_param = version == 3 ? sizeof(float) : sizeof(uint16_t);
    const uintmax_t expected = kHeaderBytes + n * bytes_per_param;
    if (actual != expected)
        throw FileError(path, size_mismatch(expected, actual) + " for " + c.describe());

    m.params.resize(n);
    if (version == 3) {
        read_exact(f.get(), m.params.data(), n * sizeof(float), path);
    } else {
        std::vector<uint16_t> bf16(n);
        read_exact(f.get(), bf16.data(), n * sizeof(uint16_t), path);
        // bf16 is the top half of an fp32.
        for (size_t i = 0; i < n; ++i) m.params[i] = std::bit_cast<float>(uint32_t(bf16[i]) << 16);
    }
    return m;
}

void write_llmc(const std::string& path, const Config& config, const float* params) {
    const size_t n = ParamLayout(config).total();
    int32_t header[kHeaderInts] = {kModelMagic,    3,
                                   config.max_seq, config.vocab,
                                   config.n_layer, config.n_head,
                                   config.n_embd,  config.padded_vocab};
    base::write_atomically(path, [&](const std::string& tmp) {
        write_bytes(tmp, {std::as_bytes(std::span(header)), std::as_bytes(std::span(params, n))},
                    path);
    });
}

} // namespace model
