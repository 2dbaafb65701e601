#include "model/io.h"

#include <filesystem>

#include "base/error.h"

namespace model {

namespace {

enum class Format { kLlmc, kHdf5, kSafetensors };

Format format_of(const std::string& path) {
    const auto ext = std::filesystem::path(path).extension();
    if (ext == ".bin") return Format::kLlmc;
    if (ext == ".h5" || ext == ".hdf5") return Format::kHdf5;
    if (ext == ".safetensors") return Format::kSafetensors;
    throw base::FileError(path,
                          "unknown model file extension (expected .bin, .h5 or .safetensors)");
}

} // namespace

ModelFile read_model(const std::string& path) {
    switch (format_of(path)) {
    case Format::kLlmc:
        return read_llmc(path);
    case Format::kHdf5:
        return read_hdf5(path);
    case Format::kSafetensors:
        return read_safetensors(path);
    }
    throw base::FileError(path, "unknown model file format");
}

void write_model(const std::string& path, const Config& config, const float* params) {
    switch (format_of(path)) {
    case Format::kLlmc:
        return write_llmc(path, config, params);
    case Format::kHdf5:
        return write_hdf5(path, config, params);
    case Format::kSafetensors:
        return write_safetensors(path, config, params);
    }
}

std::unique_ptr<GPT2<float>> load_model(const std::string& path) {
    const ModelFile file = read_model(path);
    auto gpt = std::make_unique<GPT2<float>>(file.config);
    gpt->set_params(file.params.data(), file.params.size());
    return gpt;
}

} // namespace model
