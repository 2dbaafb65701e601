#include "model/io.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <initializer_list>
#include <memory>
#include <span>
#include <stdexcept>

#include "model/h5.h"
#include "model/layout.h"
#include "model/safetensors.h"

namespace model {

namespace {

// llm.c writes its files raw from little-endian machines; so do we.
static_assert(std::endian::native == std::endian::little);

constexpr int32_t kModelMagic = 20240326;
constexpr int32_t kShardMagic = 20240520; // data/shard.h's; model/ does not include data/
constexpr size_t kHeaderInts = 256;
constexpr size_t kHeaderBytes = kHeaderInts * sizeof(int32_t);

[[noreturn]] void fail(const std::string& path, const std::string& what) {
    throw std::runtime_error(path + ": " + what);
}

std::string errno_text() { return std::strerror(errno); }

// Validation errors become runtime_errors naming the file they came from.
void check_config(const std::string& path, const Config& c) {
    try {
        c.validate();
    } catch (const std::invalid_argument& e) {
        fail(path, e.what());
    }
}

// ---- llm.c .bin ----

using File = std::unique_ptr<FILE, int (*)(FILE*)>;

File open_file(const std::string& path, const char* mode) {
    File f(std::fopen(path.c_str(), mode), &std::fclose);
    if (!f) fail(path, "cannot open (" + errno_text() + ")");
    return f;
}

void read_exact(FILE* f, void* dst, size_t bytes, const std::string& path) {
    if (std::fread(dst, 1, bytes, f) != bytes) fail(path, "read failed (" + errno_text() + ")");
}

void write_bytes(const std::string& tmp, std::initializer_list<std::span<const std::byte>> parts,
                 const std::string& path) {
    File f = open_file(tmp, "wb");
    for (auto part : parts)
        if (std::fwrite(part.data(), 1, part.size(), f.get()) != part.size())
            fail(path, "write failed (" + errno_text() + ")");
    if (std::fclose(f.release()) != 0) fail(path, "write failed (" + errno_text() + ")");
}

std::string size_mismatch(uintmax_t expected, uintmax_t actual) {
    return std::string(actual < expected ? "truncated" : "trailing bytes") + ": expected " +
           std::to_string(expected) + " bytes, found " + std::to_string(actual);
}

// ---- HDF5 ----

std::vector<hsize_t> hf_shape(const TensorInfo& t) {
    if (t.hf_transposed) return {hsize_t(t.shape[1]), hsize_t(t.shape[0])};
    return {t.shape.begin(), t.shape.end()};
}

enum class Format { kLlmc, kHdf5, kSafetensors };

Format format_of(const std::string& path) {
    const auto ext = std::filesystem::path(path).extension();
    if (ext == ".bin") return Format::kLlmc;
    if (ext == ".h5" || ext == ".hdf5") return Format::kHdf5;
    if (ext == ".safetensors") return Format::kSafetensors;
    fail(path, "unknown model file extension (expected .bin, .h5 or .safetensors)");
}

} // namespace

ModelFile read_llmc(const std::string& path) {
    File f = open_file(path, "rb");
    std::error_code ec;
    const uintmax_t actual = std::filesystem::file_size(path, ec);
    if (ec) fail(path, "cannot read (" + ec.message() + ")");
    if (actual < kHeaderBytes)
        fail(path, "too short for an llm.c model file (" + std::to_string(actual) +
                       " bytes, the header alone is " + std::to_string(kHeaderBytes) + ")");

    int32_t header[kHeaderInts];
    read_exact(f.get(), header, kHeaderBytes, path);
    if (header[0] != kModelMagic) {
        std::string what = "bad magic " + std::to_string(header[0]) + " (expected " +
                           std::to_string(kModelMagic) + " for an llm.c model file)";
        if (header[0] == kShardMagic) what += "; this looks like a token shard, not a model";
        fail(path, what);
    }
    const int version = header[1];
    if (version != 3 && version != 5)
        fail(path, "unsupported llm.c model version " + std::to_string(version) +
                       " (expected 3 = fp32 or 5 = bf16)");

    ModelFile m;
    Config& c = m.config;
    c.max_seq = header[2];
    c.vocab = header[3];
    c.n_layer = header[4];
    c.n_head = header[5];
    c.n_embd = header[6];
    c.padded_vocab = header[7];
    check_config(path, c);

    const size_t n = ParamLayout(c).total();
    const size_t bytes_per_param = version == 3 ? sizeof(float) : sizeof(uint16_t);
    const uintmax_t expected = kHeaderBytes + n * bytes_per_param;
    if (actual != expected) fail(path, size_mismatch(expected, actual) + " for " + c.describe());

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
    write_atomically(path, [&](const std::string& tmp) {
        write_bytes(tmp, {std::as_bytes(std::span(header)), std::as_bytes(std::span(params, n))},
                    path);
    });
}

ModelFile read_hdf5(const std::string& path) {
    open_file(path, "rb"); // a missing file is "cannot open", not "not an HDF5 file"
    h5::Quiet quiet;
    h5::Id file(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose);
    if (!file.ok()) fail(path, "not an HDF5 file");

    ModelFile m;
    Config& c = m.config;
    auto config_int = [&](const char* name) {
        const int64_t v = h5::read_int(file, name, path);
        if (v < INT_MIN || v > INT_MAX) fail(path, std::string("attribute '") + name + "' is out of range");
        return int(v);
    };
    c.n_layer = config_int("n_layer");
    c.n_head = config_int("n_head");
    c.n_embd = config_int("n_embd");
    c.vocab = config_int("vocab_size");
    c.padded_vocab = config_int("padded_vocab_size");
    c.max_seq = config_int("n_positions");
    check_config(path, c);

    const ParamLayout layout(c);
    m.params.resize(layout.total());
    std::vector<float> hf;
    for (const TensorInfo& t : layout.tensors()) {
        float* dst = m.params.data() + t.offset;
        if (!t.hf_transposed) {
            h5::read_floats(file, t.name, hf_shape(t), dst, path);
            continue;
        }
        hf.resize(t.size);
        h5::read_floats(file, t.name, hf_shape(t), hf.data(), path);
        transpose(hf.data(), dst, size_t(t.shape[1]), size_t(t.shape[0]));
    }
    return m;
}

void write_hdf5(const std::string& path, const Config& config, const float* params,
                const std::string& format, const std::function<void(int64_t)>& extra) {
    const ParamLayout layout(config);
    h5::Quiet quiet;
    write_atomically(path, [&](const std::string& tmp) {
        h5::Id file(H5Fcreate(tmp.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), H5Fclose);
        if (!file.ok()) fail(path, "cannot create HDF5 file " + tmp);
        std::vector<float> hf;
        for (const TensorInfo& t : layout.tensors()) {
            const float* src = params + t.offset;
            if (t.hf_transposed) {
                hf.resize(t.size);
                transpose(src, hf.data(), size_t(t.shape[0]), size_t(t.shape[1]));
                src = hf.data();
            }
            h5::write_floats(file, t.name, hf_shape(t), src, path);
        }
        // An attribute created on the file id lands on the root group.
        h5::write_attr(file, "n_layer", int64_t(config.n_layer), path);
        h5::write_attr(file, "n_head", int64_t(config.n_head), path);
        h5::write_attr(file, "n_embd", int64_t(config.n_embd), path);
        h5::write_attr(file, "vocab_size", int64_t(config.vocab), path);
        h5::write_attr(file, "padded_vocab_size", int64_t(config.padded_vocab), path);
        h5::write_attr(file, "n_positions", int64_t(config.max_seq), path);
        h5::write_attr(file, "format", std::string(format), path);
        if (extra) extra(file);
        if (H5Fflush(file, H5F_SCOPE_GLOBAL) < 0) fail(path, "write failed");
    });
}

ModelFile read_model(const std::string& path) {
    switch (format_of(path)) {
    case Format::kLlmc: return read_llmc(path);
    case Format::kHdf5: return read_hdf5(path);
    case Format::kSafetensors: return read_safetensors(path);
    }
    fail(path, "unknown model file format");
}

void write_atomically(const std::string& path,
                      const std::function<void(const std::string&)>& write) {
    const std::string tmp = path + ".tmp";
    try {
        write(tmp);
        // Data on disk before the rename makes it visible, so a crash leaves either the
        // old file or the complete new one.
        const int fd = ::open(tmp.c_str(), O_RDONLY);
        if (fd < 0 || ::fsync(fd) != 0) {
            if (fd >= 0) ::close(fd);
            fail(path, "cannot flush " + tmp + " (" + errno_text() + ")");
        }
        ::close(fd);
        std::filesystem::rename(tmp, path);
    } catch (...) {
        std::error_code ignored;
        std::filesystem::remove(tmp, ignored);
        throw;
    }
}

void write_model(const std::string& path, const Config& config, const float* params) {
    switch (format_of(path)) {
    case Format::kLlmc: return write_llmc(path, config, params);
    case Format::kHdf5: return write_hdf5(path, config, params);
    case Format::kSafetensors: return write_safetensors(path, config, params);
    }
}

} // namespace model
