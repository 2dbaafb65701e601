#include "eval/features.h"

#include <algorithm>

#include "base/error.h"
#include "base/file.h"
#include "model/h5.h"

namespace eval {

namespace h5 = model::h5;

namespace {

void write_tokens(hid_t file, const std::vector<int>& ids, const std::string& path) {
    const hsize_t n = ids.size();
    h5::Id space(H5Screate_simple(1, &n, nullptr), H5Sclose);
    h5::Id d(
        H5Dcreate2(file, "tokens", H5T_STD_I32LE, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
        H5Dclose);
    if (!d.ok() || H5Dwrite(d, H5T_NATIVE_INT, H5S_ALL, H5S_ALL, H5P_DEFAULT, ids.data()) < 0)
        throw base::FileError(path, "cannot write tokens");
}

// (L+1, T, C): each block's input (the embeddings, then the outputs of blocks 0..L-2),
// then ln_f's output.
std::vector<float> all_hidden_states(const model::GPT2<float>& m, size_t T) {
    const int L = m.config().n_layer;
    const size_t per = T * size_t(m.config().n_embd);
    const auto& a = m.activations();
    std::vector<float> all;
    all.reserve(size_t(L + 1) * per);
    for (int l = 0; l < L; ++l)
        all.insert(all.end(), a.layer(l).residual, a.layer(l).residual + per);
    all.insert(all.end(), a.lnf, a.lnf + per);
    return all;
}

} // namespace

void write_hidden_states(const std::string& path, model::GPT2<float>& model,
                         const std::vector<int>& ids, bool all_layers,
                         const std::string& model_name) {
    const model::Config& c = model.config();
    if (ids.empty()) throw base::SettingError("input", "no tokens");
    if (int(ids.size()) > c.max_seq)
        throw base::SettingError("input", std::to_string(ids.size()) +
                                              " tokens exceed the model's " +
                                              std::to_string(c.max_seq) + " positions");
    const int T = int(ids.size());
    model.reserve(1, T, false);
    model.forward(ids.data(), nullptr, 1, T);

    base::write_atomically(path, [&](const std::string& tmp) {
        h5::Quiet quiet;
        h5::Id f = h5::create_file(tmp, path);
        write_tokens(f, ids, path);
        const hsize_t n = hsize_t(T), C = hsize_t(c.n_embd), L = hsize_t(c.n_layer);
        h5::write_floats(f, "last_hidden_state", {n, C}, model.activations().lnf, path);
        if (all_layers)
            h5::write_floats(f, "hidden_states", {L + 1, n, C},
                             all_hidden_states(model, size_t(T)).data(), path);
        h5::write_attr(f, "model", model_name, path);
        h5::close_file(f, path); // checked: a full disk fails here
    });
}

} // namespace eval
