// GPT-2 hyperparameters: presets by name, explicit small configs, validation.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace model {

struct Config {
    int max_seq = 1024;       // maxT: positions in wpe
    int vocab = 50257;        // V: real tokens
    int padded_vocab = 50304; // Vp >= V: rows of wte; rows V..Vp-1 are never predicted
    int n_layer = 12;         // L
    int n_head = 12;          // NH
    int n_embd = 768;         // C

    int head_dim() const { return n_embd / n_head; }
    bool operator==(const Config&) const = default;

    // Throws base::SettingError naming the offending field if the config is unusable.
    void validate() const;
    // "L12 NH12 C768 V50257(Vp50304) T1024"
    std::string describe() const;
};

// Vp as llm.c chooses it: V rounded up to a multiple of 128.
int pad_vocab(int vocab);

// Builds a config with Vp = pad_vocab(vocab) and validates it.
Config make_config(int n_layer, int n_head, int n_embd, int vocab = 50257, int max_seq = 1024);

// Presets: gpt2, gpt2-medium, gpt2-large, gpt2-xl (OpenAI's sizes) and llm.c's
// depth presets dN (N layers, C = 64 N, NH = N, T 1024), e.g. d6, d12, d24, d48.
// Throws base::SettingError (setting "preset") for an unknown name.
Config preset(const std::string& name);
bool is_preset(const std::string& name);
std::vector<std::string> preset_names();

} // namespace model
