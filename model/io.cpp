#include "model/io.h"

#include <hdf5.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <initializer_list>
#include <memory>
#include <span>
#include <stdexcept>

#include "model/layout.h"

namespace model {

namespace {

// llm.c writes its files raw from little-endian machines; so do we.
static_assert(std::endian::native == std::endian::little);

constexpr int32_t kModelMagic = 20240326;
constexpr int32_t kShardMagic = 20240520; // data/shard.h's; model/ does not include data/
constexpr size_t kHeaderInts = 256;
constexpr size_t kHeaderBytes = kHeaderInts * sizeof(int32_t);
constexpr const char* kHdf5Format = "gpt2-cpp model";

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

// Runs write(tmp) and renames tmp over path, so a failed write leaves path as it was.
template <class Write>
void replace_atomically(const std::string& path, Write write) {
    const std::string tmp = path + ".tmp";
    try {
        write(tmp);
        std::filesystem::rename(tmp, path);
    } catch (...) {
        std::error_code ignored;
        std::filesystem::remove(tmp, ignored);
        throw;
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

// Owns an HDF5 id and closes it with the matching H5?close.
class H5Id {
public:
    H5Id(hid_t id, herr_t (*close)(hid_t)) : id_(id), close_(close) {}
    ~H5Id() {
        if (id_ >= 0) close_(id_);
    }
    H5Id(const H5Id&) = delete;
    H5Id& operator=(const H5Id&) = delete;
    operator hid_t() const { return id_; }
    bool ok() const { return id_ >= 0; }

private:
    hid_t id_;
    herr_t (*close_)(hid_t);
};

// HDF5 prints its whole error stack to stderr by default; we report one line instead.
class QuietHdf5 {
public:
    QuietHdf5() {
        H5Eget_auto2(H5E_DEFAULT, &func_, &data_);
        H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
    }
    ~QuietHdf5() { H5Eset_auto2(H5E_DEFAULT, func_, data_); }
    QuietHdf5(const QuietHdf5&) = delete;
    QuietHdf5& operator=(const QuietHdf5&) = delete;

private:
    H5E_auto2_t func_ = nullptr;
    void* data_ = nullptr;
};

std::vector<hsize_t> hf_shape(const TensorInfo& t) {
    if (t.hf_transposed) return {hsize_t(t.shape[1]), hsize_t(t.shape[0])};
    return {t.shape.begin(), t.shape.end()};
}

std::string shape_text(const std::vector<hsize_t>& dims) {
    std::string s = "(";
    for (size_t i = 0; i < dims.size(); ++i) s += (i ? ", " : "") + std::to_string(dims[i]);
    return s + ")";
}

// src (rows, cols) -> dst (cols, rows)
void transpose(const float* src, float* dst, size_t rows, size_t cols) {
    for (size_t r = 0; r < rows; ++r)
        for (size_t c = 0; c < cols; ++c) dst[c * rows + r] = src[r * cols + c];
}

void write_int_attr(hid_t loc, const char* name, int value, const std::string& path) {
    H5Id space(H5Screate(H5S_SCALAR), H5Sclose);
    H5Id attr(H5Acreate2(loc, name, H5T_STD_I32LE, space, H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
    if (!attr.ok() || H5Awrite(attr, H5T_NATIVE_INT, &value) < 0)
        fail(path, std::string("cannot write attribute '") + name + "'");
}

// Variable-length UTF-8, so h5py reads it as a str rather than bytes.
void write_string_attr(hid_t loc, const char* name, const char* value, const std::string& path) {
    H5Id type(H5Tcopy(H5T_C_S1), H5Tclose);
    H5Tset_size(type, H5T_VARIABLE);
    H5Tset_cset(type, H5T_CSET_UTF8);
    H5Id space(H5Screate(H5S_SCALAR), H5Sclose);
    H5Id attr(H5Acreate2(loc, name, type, space, H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
    if (!attr.ok() || H5Awrite(attr, type, &value) < 0)
        fail(path, std::string("cannot write attribute '") + name + "'");
}

int read_int_attr(hid_t loc, const char* name, const std::string& path) {
    if (H5Aexists(loc, name) <= 0) fail(path, std::string("missing attribute '") + name + "'");
    H5Id attr(H5Aopen(loc, name, H5P_DEFAULT), H5Aclose);
    H5Id space(H5Aget_space(attr), H5Sclose);
    int value = 0;
    if (H5Sget_simple_extent_npoints(space) != 1 || H5Aread(attr, H5T_NATIVE_INT, &value) < 0)
        fail(path, std::string("attribute '") + name + "' is not a single integer");
    return value;
}

void write_dataset(hid_t file, const std::string& name, const std::vector<hsize_t>& dims,
                   const float* data, const std::string& path) {
    H5Id space(H5Screate_simple(int(dims.size()), dims.data(), nullptr), H5Sclose);
    H5Id dset(H5Dcreate2(file, name.c_str(), H5T_IEEE_F32LE, space, H5P_DEFAULT, H5P_DEFAULT,
                         H5P_DEFAULT),
              H5Dclose);
    if (!dset.ok() || H5Dwrite(dset, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0)
        fail(path, "cannot write tensor '" + name + "'");
}

// Reads dataset `name`, which must have shape `dims`, converting its values to float.
void read_dataset(hid_t file, const std::string& name, const std::vector<hsize_t>& dims,
                  float* dst, const std::string& path) {
    if (H5Lexists(file, name.c_str(), H5P_DEFAULT) <= 0)
        fail(path, "missing tensor '" + name + "'");
    H5Id dset(H5Dopen2(file, name.c_str(), H5P_DEFAULT), H5Dclose);
    if (!dset.ok()) fail(path, "'" + name + "' is not a dataset");
    H5Id space(H5Dget_space(dset), H5Sclose);
    const int rank = H5Sget_simple_extent_ndims(space);
    std::vector<hsize_t> found(std::max(rank, 0));
    H5Sget_simple_extent_dims(space, found.data(), nullptr);
    if (found != dims)
        fail(path, "tensor '" + name + "' has shape " + shape_text(found) + ", expected " +
                       shape_text(dims));
    H5Id type(H5Dget_type(dset), H5Tclose);
    const H5T_class_t cls = H5Tget_class(type);
    if (cls != H5T_FLOAT && cls != H5T_INTEGER) fail(path, "tensor '" + name + "' is not numeric");
    if (H5Dread(dset, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, dst) < 0)
        fail(path, "cannot read tensor '" + name + "'");
}

enum class Format { kLlmc, kHdf5 };

Format format_of(const std::string& path) {
    const auto ext = std::filesystem::path(path).extension();
    if (ext == ".bin") return Format::kLlmc;
    if (ext == ".h5" || ext == ".hdf5") return Format::kHdf5;
    fail(path, "unknown model file extension (expected .bin or .h5)");
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
    replace_atomically(path, [&](const std::string& tmp) {
        write_bytes(tmp, {std::as_bytes(std::span(header)), std::as_bytes(std::span(params, n))},
                    path);
    });
}

ModelFile read_hdf5(const std::string& path) {
    open_file(path, "rb"); // a missing file is "cannot open", not "not an HDF5 file"
    QuietHdf5 quiet;
    H5Id file(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose);
    if (!file.ok()) fail(path, "not an HDF5 file");

    ModelFile m;
    Config& c = m.config;
    c.n_layer = read_int_attr(file, "n_layer", path);
    c.n_head = read_int_attr(file, "n_head", path);
    c.n_embd = read_int_attr(file, "n_embd", path);
    c.vocab = read_int_attr(file, "vocab_size", path);
    c.padded_vocab = read_int_attr(file, "padded_vocab_size", path);
    c.max_seq = read_int_attr(file, "n_positions", path);
    check_config(path, c);

    const ParamLayout layout(c);
    m.params.resize(layout.total());
    std::vector<float> hf;
    for (const TensorInfo& t : layout.tensors()) {
        float* dst = m.params.data() + t.offset;
        if (!t.hf_transposed) {
            read_dataset(file, t.name, hf_shape(t), dst, path);
            continue;
        }
        hf.resize(t.size);
        read_dataset(file, t.name, hf_shape(t), hf.data(), path);
        transpose(hf.data(), dst, size_t(t.shape[1]), size_t(t.shape[0]));
    }
    return m;
}

void write_hdf5(const std::string& path, const Config& config, const float* params) {
    const ParamLayout layout(config);
    QuietHdf5 quiet;
    replace_atomically(path, [&](const std::string& tmp) {
        H5Id file(H5Fcreate(tmp.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), H5Fclose);
        if (!file.ok()) fail(path, "cannot create HDF5 file " + tmp);
        std::vector<float> hf;
        for (const TensorInfo& t : layout.tensors()) {
            const float* src = params + t.offset;
            if (t.hf_transposed) {
                hf.resize(t.size);
                transpose(src, hf.data(), size_t(t.shape[0]), size_t(t.shape[1]));
                src = hf.data();
            }
            write_dataset(file, t.name, hf_shape(t), src, path);
        }
        // An attribute created on the file id lands on the root group.
        write_int_attr(file, "n_layer", config.n_layer, path);
        write_int_attr(file, "n_head", config.n_head, path);
        write_int_attr(file, "n_embd", config.n_embd, path);
        write_int_attr(file, "vocab_size", config.vocab, path);
        write_int_attr(file, "padded_vocab_size", config.padded_vocab, path);
        write_int_attr(file, "n_positions", config.max_seq, path);
        write_string_attr(file, "format", kHdf5Format, path);
        if (H5Fflush(file, H5F_SCOPE_GLOBAL) < 0) fail(path, "write failed");
    });
}

ModelFile read_model(const std::string& path) {
    return format_of(path) == Format::kLlmc ? read_llmc(path) : read_hdf5(path);
}

void write_model(const std::string& path, const Config& config, const float* params) {
    if (format_of(path) == Format::kLlmc)
        write_llmc(path, config, params);
    else
        write_hdf5(path, config, params);
}

} // namespace model
