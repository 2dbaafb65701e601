// gpt2 convert / gpt2 info: model files between formats, and what a file holds.
#include <cstdio>

#include "model/io.h"
#include "model/layout.h"
#include "train/cli/common.h"

namespace cli {

namespace {

std::string with_commas(size_t n) {
    std::string s = std::to_string(n);
    for (int i = int(s.size()) - 3; i > 0; i -= 3) s.insert(size_t(i), ",");
    return s;
}

void print_info(const std::string& path) {
    for (const auto& file : model_inputs(path)) require_file(file);
    const auto file = model::read_model(path);
    const model::Config& c = file.config;
    const model::ParamLayout layout(c);
    std::printf("%s\n", path.c_str());
    std::printf("  n_layer %d, n_head %d, n_embd %d, vocab %d (padded to %d), max_seq %d\n",
                c.n_layer, c.n_head, c.n_embd, c.vocab, c.padded_vocab, c.max_seq);
    std::printf("  parameters %s (%s with the vocabulary padded to %d: +%s)\n",
                with_commas(layout.count_unpadded()).c_str(), with_commas(layout.total()).c_str(),
                c.padded_vocab, with_commas(layout.padding_elements()).c_str());
    std::printf("  tensors %zu, %.3g MiB as float32\n", layout.tensors().size(),
                double(layout.total()) * 4 / (1 << 20));
}

struct ConvertOptions {
    std::string input, output;
};

void convert(const ConvertOptions& o) {
    const auto inputs = model_inputs(o.input);
    for (const auto& file : inputs) require_file(file);
    // What writing writes: the file, and a .safetensors file's config.json beside it.
    for (const auto& written : model_inputs(o.output)) require_not_input(written, "output", inputs);
    const auto file = model::read_model(o.input);
    model::write_model(o.output, file.config, file.params.data());
    std::printf("%s -> %s (%s)\n", o.input.c_str(), o.output.c_str(),
                file.config.describe().c_str());
}

} // namespace

void add_model_files(CLI::App& app) {
    auto c = std::make_shared<ConvertOptions>();
    auto* convert_cmd = app.add_subcommand(
        "convert", "Convert a model file between formats, chosen by extension: .bin (llm.c, fp32 "
                   "v3; bf16 v5 is read too), .h5 (HDF5, Hugging Face names; checkpoints too) "
                   "and .safetensors (Hugging Face, with config.json beside it; f32/f16/bf16 "
                   "read)");
    convert_cmd->add_option("input", c->input, "Model file to read")->required();
    convert_cmd->add_option("output", c->output, "Model file to write")->required();
    convert_cmd->callback([c] { convert(*c); });

    auto path = std::make_shared<std::string>();
    auto* info = app.add_subcommand("info", "Print a model file's config and parameter count");
    info->add_option("file", *path, "Model file (.bin, .h5, .safetensors)")->required();
    info->callback([path] { print_info(*path); });
}

} // namespace cli
