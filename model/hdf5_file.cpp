#include "model/hdf5_file.h"

#include <climits>
#include <cstdio>
#include <set>
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

herr_t collect_name(hid_t, const char* name, const H5L_info_t*, void* out) {
    static_cast<std::vector<std::string>*>(out)->push_back(name);
    return 0;
}

} // namespace

ModelFile read_hdf5(const std::string& path) {
    h5::Quiet quiet;
    h5::Id file = h5::open_file(path);

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
    // Every dataset at the root must be a tensor of this config: a file whose n_layer is
    // smaller than its blocks (or that holds anything else) does not describe itself.
    std::set<std::string> expected;
    for (const TensorInfo& t : layout.tensors()) expected.insert(t.name);
    std::vector<std::string> names;
    H5Literate(file, H5_INDEX_NAME, H5_ITER_NATIVE, nullptr, collect_name, &names);
    for (const std::string& name : names) {
        h5::Id object(H5Oopen(file, name.c_str(), H5P_DEFAULT), H5Oclose);
        if (!object.ok())
            throw FileError(path, "cannot read '" + name + "' (" + h5::error_text() + ")");
        if (H5Iget_type(object) == H5I_DATASET && !expected.contains(name))
            throw FileError(path, "tensor '" + name + "' is not a parameter of the config " +
                                      c.describe() + " in its attributes");
    }
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
        h5::Id file = h5::create_file(tmp, path);
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
        h5::close_file(file, path);
    });
}

} // namespace model
