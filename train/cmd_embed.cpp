// gpt2 embed: a text's hidden states per token, as GPT2Model(...).last_hidden_state.
#include <cstdio>
#include <filesystem>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "data/tokenizer.h"
#include "model/gpt2.h"
#include "model/h5.h"
#include "base/file.h"
#include "model/io.h"
#include "train/commands.h"

namespace train {

namespace {

struct EmbedOptions {
    std::string model, input, out, tokenizer;
    bool all_layers = false;
};

namespace h5 = model::h5;

// OUT.h5: tokens (T) int32, last_hidden_state (T, C) after ln_f, and with --all-layers
// hidden_states (L+1, T, C) as HF's output_hidden_states: the embeddings, then each
// block's output, the last one after ln_f.
void run_embed(const EmbedOptions& o) {
    auto gpt_ptr = load_model(o.model);
    model::GPT2<float>& gpt = *gpt_ptr;
    data::Tokenizer tok(o.tokenizer);
    const std::string text = std::filesystem::is_regular_file(o.input) ? read_file(o.input) : o.input;
    const auto ids = tok.encode(text);
    const model::Config& c = gpt.config();
    if (ids.empty()) throw std::invalid_argument("--input: no tokens");
    if (int(ids.size()) > c.max_seq)
        throw std::invalid_argument("--input: " + std::to_string(ids.size()) + " tokens exceed the model's " +
                                    std::to_string(c.max_seq) + " positions");
    const int T = int(ids.size()), C = c.n_embd, L = c.n_layer;
    gpt.reserve(1, T, false);
    gpt.forward(ids.data(), nullptr, 1, T);
    const auto& a = gpt.activations();

    base::write_atomically(o.out, [&](const std::string& tmp) {
        h5::Quiet quiet;
        h5::Id f(H5Fcreate(tmp.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), H5Fclose);
        if (!f.ok()) throw std::runtime_error(o.out + ": cannot create");
        const hsize_t n = hsize_t(T);
        h5::Id space(H5Screate_simple(1, &n, nullptr), H5Sclose);
        h5::Id d(H5Dcreate2(f, "tokens", H5T_STD_I32LE, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Dclose);
        if (!d.ok() || H5Dwrite(d, H5T_NATIVE_INT, H5S_ALL, H5S_ALL, H5P_DEFAULT, ids.data()) < 0)
            throw std::runtime_error(o.out + ": cannot write tokens");
        h5::write_floats(f, "last_hidden_state", {n, hsize_t(C)}, a.lnf, o.out);
        if (o.all_layers) {
            const size_t per = size_t(T) * C;
            std::vector<float> all(size_t(L + 1) * per);
            std::copy(a.encoded, a.encoded + per, all.begin());
            for (int l = 0; l + 1 < L; ++l)
                std::copy(a.residual3 + l * per, a.residual3 + (l + 1) * per, all.begin() + (l + 1) * per);
            std::copy(a.lnf, a.lnf + per, all.begin() + L * per);
            h5::write_floats(f, "hidden_states", {hsize_t(L + 1), n, hsize_t(C)}, all.data(), o.out);
        }
        h5::write_attr(f, "model", o.model, o.out);
    });
    std::printf("%s: %d tokens x %d channels%s\n", o.out.c_str(), T, C,
                o.all_layers ? (" (and " + std::to_string(L + 1) + " hidden_states)").c_str() : "");
}

} // namespace

void add_embed(CLI::App& app) {
    auto o = std::make_shared<EmbedOptions>();
    auto* cmd = app.add_subcommand(
        "embed", "Hidden states of a text per token, written to HDF5: last_hidden_state (T, C) "
                 "after ln_f, as GPT2Model(...).last_hidden_state; --all-layers adds hidden_states "
                 "(L+1, T, C) as HF's output_hidden_states");
    cmd->add_option("--model", o->model, "Model file (.bin, .h5, .safetensors)")->required()->check(CLI::ExistingFile);
    cmd->add_option("--input", o->input, "Text, or a file holding it")->required();
    cmd->add_option("--out", o->out, "HDF5 file to write")->required();
    cmd->add_flag("--all-layers", o->all_layers, "Also write every layer's hidden states");
    add_tokenizer_option(*cmd, o->tokenizer);
    cmd->callback([o] { run_embed(*o); });
}

} // namespace train
