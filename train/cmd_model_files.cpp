// gpt2 convert / gpt2 info: model files between formats, and what a file holds.
#include <cstdio>
#include <memory>
#include <string>

#include "model/io.h"
#include "model/layout.h"
#include "train/commands.h"

namespace train {

namespace {

std::string with_commas(size_t n) {
    std::string s = std::to_string(n);
    for (int i = int(s.size()) - 3; i > 0; i -= 3) s.insert(size_t(i), ",");
    return s;
}

void print_info(const std::string& path) {
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

} // namespace

void add_convert(CLI::App& app) {
    auto paths = std::make_shared<std::pair<std::string, std::string>>();
    auto* cmd = app.add_subcommand(
        "convert", "Convert a model file between formats, chosen by extension: .bin (llm.c, fp32 "
                   "v3; bf16 v5 is read too), .h5 (HDF5, Hugging Face names; checkpoints too) and "
                   ".safetensors (Hugging Face, with config.json beside it; f32/f16/bf16 read)");
    cmd->add_option("input", paths->first, "Model file to read")->required()->check(CLI::ExistingFile);
    cmd->add_option("output", paths->second, "Model file to write")->required();
    cmd->callback([paths] {
        const auto file = model::read_model(paths->first);
        model::write_model(paths->second, file.config, file.params.data());
        std::printf("%s -> %s (%s)\n", paths->first.c_str(), paths->second.c_str(),
                    file.config.describe().c_str());
    });
}

void add_info(CLI::App& app) {
    auto path = std::make_shared<std::string>();
    auto* cmd = app.add_subcommand("info", "Print a model file's config and parameter count");
    cmd->add_option("file", *path, "Model file (.bin, .h5, .safetensors)")->required()->check(CLI::ExistingFile);
    cmd->callback([path] { print_info(*path); });
}

} // namespace train
