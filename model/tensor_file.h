// What every model file format reads and writes: a Config and the float32 parameters
// in the ParamLayout of that Config. Shared by the formats (llmc_file.h, hdf5_file.h,
// safetensors.h) and the dispatch on the file name (io.h).
#pragma once

#include <stdexcept>
#include <string>
#include <vector>

#include "base/error.h"
#include "model/config.h"

namespace model {

struct ModelFile {
    Config config;
    std::vector<float> params; // ParamLayout(config).total() elements
};

// A config read from `path` that cannot be a model becomes a FileError naming the file.
inline void check_file_config(const std::string& path, const Config& config) {
    try {
        config.validate();
    } catch (const std::invalid_argument& e) {
        throw base::FileError(path, std::string("invalid model config: ") + e.what());
    }
}

} // namespace model
