// Model files of any format, chosen by the file name: ".bin" (llm.c, llmc_file.h),
// ".h5"/".hdf5" (HDF5, hdf5_file.h) or ".safetensors" (Hugging Face, with config.json
// beside it; safetensors.h).
//
// Every reader throws base::FileError with a one-line message that names the file and
// what is wrong (missing, wrong magic, unsupported version, truncated, bad config,
// missing tensor, wrong shape). Every writer writes PATH.tmp, flushes it to disk and
// renames it to PATH (base::write_atomically), so an interrupted write never leaves a
// damaged file behind.
#pragma once

#include <memory>
#include <string>

#include "model/gpt2.h"
#include "model/hdf5_file.h"
#include "model/llmc_file.h"
#include "model/safetensors.h"
#include "model/tensor_file.h"

namespace model {

ModelFile read_model(const std::string& path);
void write_model(const std::string& path, const Config& config, const float* params);

// A model file read into a float model, ready for forward passes.
std::unique_ptr<GPT2<float>> load_model(const std::string& path);

} // namespace model
