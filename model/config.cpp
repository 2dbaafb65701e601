#include "model/config.h"

#include <cstdio>
#include <stdexcept>

#include "base/error.h"

namespace model {

namespace {

struct Preset {
    const char* name;
    int n_layer, n_head, n_embd;
};

// OpenAI's released sizes and llm.c's depth presets (dN, see gpt2_set_hyperparameters).
constexpr Preset kPresets[] = {
    {"gpt2", 12, 12, 768},
    {"gpt2-medium", 24, 16, 1024},
    {"gpt2-large", 36, 20, 1280},
    {"gpt2-xl", 48, 25, 1600},
    {"d6", 6, 6, 384},
    {"d12", 12, 12, 768},
    {"d24", 24, 16, 1024},
    {"d36", 36, 20, 1280},
    {"d48", 48, 25, 1600},
    {"d60", 60, 30, 1920},
    {"d72", 72, 30, 2880},
    {"d84", 84, 36, 3456},
};

// 1..limit: the limits are far beyond any GPT-2 but keep a corrupt header from
// describing an absurd model.
void require_range(int value, int limit, const char* name) {
    if (value < 1 || value > limit)
        throw base::SettingError(name, "must be in 1.." + std::to_string(limit) + " (got " +
                                           std::to_string(value) + ")");
}

} // namespace

void Config::validate() const {
    require_range(n_layer, 1 << 12, "n_layer");
    require_range(n_head, 1 << 12, "n_head");
    require_range(n_embd, 1 << 16, "n_embd");
    require_range(vocab, 1 << 24, "vocab");
    require_range(padded_vocab, 1 << 24, "padded_vocab");
    require_range(max_seq, 1 << 20, "max_seq");
    if (n_embd % n_head != 0)
        throw base::SettingError("n_embd", std::to_string(n_embd) + " is not divisible by n_head " +
                                               std::to_string(n_head));
    if (padded_vocab < vocab)
        throw base::SettingError("padded_vocab", std::to_string(padded_vocab) +
                                                     " is smaller than vocab " +
                                                     std::to_string(vocab));
}

std::string Config::describe() const {
    char buf[96];
    std::snprintf(buf, sizeof buf, "L%d NH%d C%d V%d(Vp%d) T%d", n_layer, n_head, n_embd, vocab,
                  padded_vocab, max_seq);
    return buf;
}

int pad_vocab(int vocab) {
    return (vocab + 127) / 128 * 128;
}

Config make_config(int n_layer, int n_head, int n_embd, int vocab, int max_seq) {
    Config c;
    c.n_layer = n_layer;
    c.n_head = n_head;
    c.n_embd = n_embd;
    c.vocab = vocab;
    c.padded_vocab = pad_vocab(vocab);
    c.max_seq = max_seq;
    c.validate();
    return c;
}

bool is_preset(const std::string& name) {
    for (const auto& p : kPresets)
        if (name == p.name) return true;
    return false;
}

Config preset(const std::string& name) {
    for (const auto& p : kPresets)
        if (name == p.name) return make_config(p.n_layer, p.n_head, p.n_embd);
    std::string known;
    for (const auto& p : kPresets) known += std::string(known.empty() ? "" : ", ") + p.name;
    throw base::SettingError("preset",
                             "unknown model preset '" + name + "' (known: " + known + ")");
}

std::vector<std::string> preset_names() {
    std::vector<std::string> names;
    for (const auto& p : kPresets) names.emplace_back(p.name);
    return names;
}

} // namespace model
