// A text's hidden states per token, as Hugging Face's GPT2Model returns them, written
// to HDF5 for other programs (h5py, h5ls).
#pragma once

#include <string>
#include <vector>

#include "model/gpt2.h"

namespace eval {

// Runs the model on ids (1..max_seq tokens) and writes `path` atomically:
//   tokens             int32 (T)
//   last_hidden_state  float32 (T, C), after ln_f (GPT2Model's last_hidden_state)
//   hidden_states      float32 (L+1, T, C) with all_layers: the embeddings, then each
//                      block's output, the last one after ln_f (output_hidden_states)
// and a text attribute `model` = model_name. Throws base::SettingError("input") for a
// token count the model cannot take, base::FileError when the file cannot be written.
void write_hidden_states(const std::string& path, model::GPT2<float>& model,
                         const std::vector<int>& ids, bool all_layers,
                         const std::string& model_name);

} // namespace eval
