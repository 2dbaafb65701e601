// Hugging Face safetensors model files, with their config.json in the same folder.
//
// The file is an 8-byte little-endian header length N, N bytes of JSON mapping each
// tensor name to {"dtype", "shape", "data_offsets": [begin, end]} (offsets relative to
// the data that follow the header), and an optional "__metadata__" object.
#pragma once

#include <string>

#include "model/config.h"
#include "model/tensor_file.h"

namespace model {

// Reads GPT-2 tensors under HF's names, with or without the "transformer." prefix, in
// F32, F16 or BF16 (converted exactly to float). Linear weights are Conv1D (in, out) and
// are transposed to our layout; wte's V rows are padded with zero rows to Vp =
// pad_vocab(V). The attention-mask buffers are ignored; "lm_head.weight", if present,
// must equal wte (we only support tied heads). The config comes from config.json
// beside the file: LayerNorm eps 1e-5 and tanh GELU only.
ModelFile read_safetensors(const std::string& path);

// Writes F32 tensors under HF's names and shapes (wte without its padding rows), in
// sorted name order, and a GPT2LMHeadModel config.json beside the file, so that
// transformers' from_pretrained(folder) loads it.
void write_safetensors(const std::string& path, const Config& config, const float* params);

} // namespace model
