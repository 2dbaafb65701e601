#include "model/hdf5_file.h"

#include <climits>
#include <cstdio>
#include <vector>

#include "base/error.h"
#include "base/file.h"
#include "model/h5.h"
#include "model/layout.h"

namespace model {

namespace {

using base::FileError;

// HF's shape of a tensor: linear weights as Conv1D (in, out), the transpose of ours.
std::vector<hsize_t> hf_shape(const TensorInfo& t) {
    if (t.hf_transposed) return {hsize_t(t.shape[1]), hsize_t(t.shape[0])};
    return {t.shape.begin(), t.shape.end()};
}

} // namespace

ModelFile read_hdf5(const std::string& path) {
    // A missing file is "cannot open", not "not an HDF5 file".
    if (std::FILE* f = std::fopen(path.c_str(), "rb"))
        std::fclose(f);
    else
        throw FileError(path, "cannot open (" + base::errno_text() + ")");
    h5::Quiet quiet;
    h5::Id file(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose);
    if (!file.ok()) throw FileError(path, "not an HDF5 file");

    ModelFile m;
    Config& c = m.config;
    auto config_int = [&](const char* name) {
        const int64_t v = h5::read_int(file, name, path);
        if (v < INT_MIN || v > INT_MAX)
            throw FileError(path, std::string("attribute '") + name + "' is out of range");
        return int(v);
    };
    c.n_layer = config_int("n_layer");
    c.n_head = config_int("n_head");
    c.n_embd = config_int("n_embd");
    c.vocab = config_int("vocab_size");
    c.padded_vocab = config_int("padded_vocab_size");
    c.max_seq = config_int("n_positions");
    check_file_config(path, c);

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
    base::write_atomically(path, [&](const std::string& tmp) {
        h5::Id file(H5Fcreate(tmp.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), H5Fclose);
        if (!file.ok()) throw FileError(path, "cannot create HDF5 file " + tmp);
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
        if (H5Fflush(file, H5F_SCOPE_GLOBAL) < 0) throw FileError(path, "write failed");
    });
}

} // namespace model
