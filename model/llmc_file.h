// llm.c model files: int32 header[256] = {20240326, version, maxT, V, L, NH, C, Vp, 0...}
// then the parameters in llm.c order (our flat layout).
#pragma once

#include <string>

#include "model/tensor_file.h"

namespace model {

// Reads version 3 (fp32) and 5 (bf16, widened to fp32); writes version 3. Reading then
// writing a v3 file reproduces its bytes. Errors are base::FileError naming the file.
ModelFile read_llmc(const std::string& path);
void write_llmc(const std::string& path, const Config& config, const float* params);

} // namespace model
