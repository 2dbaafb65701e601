// HDF5 model files: one float32 dataset per tensor at the root, named and shaped as in
// Hugging Face's GPT-2 (linear weights transposed to Conv1D's (in, out); wte keeps all
// Vp rows), and the config as int attributes on the root group: n_layer, n_head,
// n_embd, vocab_size, padded_vocab_size, n_positions, plus a text attribute `format`.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "model/tensor_file.h"

namespace model {

ModelFile read_hdf5(const std::string& path);

// `extra`, if given, is called with the open file's HDF5 id (an hid_t) before it is
// closed, so that a checkpoint can add its groups to the same atomic write.
void write_hdf5(const std::string& path, const Config& config, const float* params,
                const std::string& format = "gpt2-cpp model",
                const std::function<void(int64_t file)>& extra = {});

} // namespace model
