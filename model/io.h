// Model files: llm.c's .bin, our HDF5 .h5 and Hugging Face's .safetensors
// (model/safetensors.h). Each holds a Config and the float32 parameters in the
// ParamLayout of that Config.
//
// Every reader throws std::runtime_error with a one-line message that names the file
// and what is wrong (missing, wrong magic, unsupported version, truncated, bad config,
// missing tensor, wrong shape). Every writer writes PATH.tmp, flushes it to disk and
// renames it to PATH, so an interrupted write never leaves a damaged file behind.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "model/config.h"

namespace model {

struct ModelFile {
    Config config;
    std::vector<float> params; // ParamLayout(config).total() elements
};

// llm.c model file: int32 header[256] = {20240326, version, maxT, V, L, NH, C, Vp, 0...}
// then the parameters in llm.c order. Reads version 3 (fp32) and 5 (bf16, widened to
// fp32); writes version 3. Reading then writing a v3 file reproduces its bytes.
ModelFile read_llmc(const std::string& path);
void write_llmc(const std::string& path, const Config& config, const float* params);

// HDF5 model file: one float32 dataset per tensor at the root, named and shaped as in
// Hugging Face's GPT-2 (linear weights transposed to Conv1D's (in, out); wte keeps all
// Vp rows), and the config as int attributes on the root group: n_layer, n_head,
// n_embd, vocab_size, padded_vocab_size, n_positions, plus format = "gpt2-cpp model".
// `extra`, if given, is called with the open file's HDF5 id (an hid_t) before it is
// closed, so that a checkpoint can add its groups to the same atomic write.
ModelFile read_hdf5(const std::string& path);
void write_hdf5(const std::string& path, const Config& config, const float* params,
                const std::string& format = "gpt2-cpp model",
                const std::function<void(int64_t file)>& extra = {});

// Dispatch on the extension: ".bin" (llm.c), ".h5"/".hdf5" (HDF5) or ".safetensors"
// (Hugging Face, with config.json beside it; see model/safetensors.h).
ModelFile read_model(const std::string& path);
void write_model(const std::string& path, const Config& config, const float* params);

// Calls write(tmp) with tmp = path + ".tmp", flushes tmp to disk and renames it over
// path; on any failure tmp is removed and path is left as it was.
void write_atomically(const std::string& path, const std::function<void(const std::string&)>& write);

} // namespace model
