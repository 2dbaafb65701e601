// gpt2 sample / gpt2 embed: text generated from a model, and a text's hidden states.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <optional>

#include "base/error.h"
#include "data/tokenizer.h"
#include "eval/features.h"
#include "eval/sample.h"
#include "model/io.h"
#include "train/cli/common.h"

namespace cli {

namespace {

struct SampleCommandOptions {
    std::string model, prompt, prompt_ids, tokenizer;
    eval::SampleOptions sampling;
    int num_samples = 1;
    bool ids = false, stop_at_eot = false;
    model::Precision precision = model::Precision::fp32;
};

// Writes token bytes to stdout whole UTF-8 characters at a time.
class TextStream {
public:
    explicit TextStream(const data::Tokenizer& tok) : tok_(tok) {}
    void add(int token) {
        pending_ += tok_.token_bytes(token);
        const size_t cut = data::complete_utf8_prefix(pending_);
        std::fwrite(pending_.data(), 1, cut, stdout);
        pending_.erase(0, cut);
    }
    void finish() { std::fputs(data::sanitize_utf8(pending_).c_str(), stdout); }

private:
    const data::Tokenizer& tok_;
    std::string pending_; // bytes of a character split across tokens
};

void run_sample(SampleCommandOptions o) {
    if (!o.ids || o.prompt_ids.empty()) require_tokenizer(o.tokenizer);
    auto gpt = load_model_as(o.model, o.precision);
    const int vocab = gpt->config().vocab;
    // Text needs the GPT-2 tokenizer; --prompt-ids with --ids works for any vocabulary.
    std::optional<data::Tokenizer> tok;
    if (!o.ids || o.prompt_ids.empty()) tok.emplace(o.tokenizer);
    if (tok && tok->vocab_size() != vocab)
        throw base::FileError(o.model, "vocabulary of " + std::to_string(vocab) +
                                           " tokens is not GPT-2's; use --prompt-ids and --ids");
    std::vector<int> prompt;
    if (!o.prompt_ids.empty())
        prompt = parse_token_ids(o.prompt_ids, vocab, [](const std::string& problem) {
            throw base::SettingError("prompt_ids", problem);
        });
    else if (!o.prompt.empty())
        prompt = tok->encode(o.prompt);
    const int eot = std::min(data::Tokenizer::kEndOfText, vocab - 1);
    if (prompt.empty()) prompt = {eot};
    if (o.stop_at_eot) o.sampling.stop_token = eot;
    // The prompt and every new token but the last take one of the model's positions.
    const size_t positions = size_t(gpt->config().max_seq);
    if (prompt.size() > positions)
        throw base::SettingError(o.prompt_ids.empty() ? "prompt" : "prompt_ids",
                                 "its " + std::to_string(prompt.size()) +
                                     " tokens are more than the model's " +
                                     std::to_string(positions) + " positions");
    const size_t room = positions + 1 - prompt.size();
    if (size_t(o.sampling.max_tokens) > room)
        throw base::SettingError("max_tokens",
                                 "must be at most " + std::to_string(room) + " after a prompt of " +
                                     std::to_string(prompt.size()) + " tokens (the model has " +
                                     std::to_string(positions) + " positions), got " +
                                     std::to_string(o.sampling.max_tokens));

    const uint64_t seed = o.sampling.seed;
    for (int s = 0; s < o.num_samples; ++s) {
        o.sampling.seed = seed + uint64_t(s);
        if (!o.ids && !o.prompt.empty()) std::fputs(o.prompt.c_str(), stdout);
        std::optional<TextStream> text;
        if (!o.ids) text.emplace(*tok);
        eval::generate(*gpt, prompt, o.sampling, [&](int token) {
            if (text)
                text->add(token);
            else
                std::printf("%d ", token);
            std::fflush(stdout);
        });
        if (text) text->finish();
        std::printf(o.num_samples > 1 && s + 1 < o.num_samples ? "\n---\n" : "\n");
    }
}

struct EmbedOptions {
    std::string model, input, out, tokenizer;
    bool all_layers = false;
    model::Precision precision = model::Precision::fp32;
};

// --input names a file when one exists there; otherwise it is the text itself (which
// may be longer than a file name can be).
bool names_file(const std::string& input) {
    std::error_code ec;
    return std::filesystem::exists(input, ec) && !ec;
}

void run_embed(const EmbedOptions& o) {
    const bool is_file = names_file(o.input);
    if (is_file) require_file(o.input); // not a folder or FIFO
    auto inputs = model_inputs(o.model);
    if (is_file) inputs.push_back(o.input);
    for (const char* name : {"/encoder.json", "/vocab.bpe"}) inputs.push_back(o.tokenizer + name);
    require_not_input(o.out, "out", inputs);
    require_tokenizer(o.tokenizer);
    auto gpt = load_model_as(o.model, o.precision);
    data::Tokenizer tok(o.tokenizer);
    const auto ids = tok.encode(is_file ? read_input(o.input) : o.input);
    if (is_file && ids.empty()) throw base::FileError(o.input, "empty: there is no text to embed");
    eval::write_hidden_states(o.out, *gpt, ids, o.all_layers, o.model);
    const model::Config& c = gpt->config();
    std::printf(
        "%s: %zu tokens x %d channels%s\n", o.out.c_str(), ids.size(), c.n_embd,
        o.all_layers ? (" (and " + std::to_string(c.n_layer + 1) + " hidden_states)").c_str() : "");
}

void add_sample(CLI::App& app) {
    auto o = std::make_shared<SampleCommandOptions>();
    auto* cmd = app.add_subcommand(
        "sample", "Generate text from a model with a key/value cache, streaming tokens as they "
                  "come; reproducible with --seed; --temperature 0 is greedy");
    add_model_option(*cmd, o->model);
    add_precision_option(*cmd, o->precision);
    auto* prompt =
        cmd->add_option("--prompt", o->prompt, "Text to continue (default: <|endoftext|>)");
    cmd->add_option("--prompt-ids", o->prompt_ids, "The prompt as token ids, e.g. \"0 0 0 52\"")
        ->excludes(prompt);
    eval::SampleOptions& s = o->sampling;
    cmd->add_option("--max-tokens", s.max_tokens,
                    "Tokens to generate; the prompt and all of them but the last must fit the "
                    "model's positions (more is an error)")
        ->check(at_least(1))
        ->capture_default_str();
    cmd->add_option("--temperature", s.temperature, "Softmax temperature (0 = greedy)")
        ->check(at_least(0))
        ->capture_default_str();
    cmd->add_option("--top-k", s.top_k, "Sample among the k most likely tokens (0 = all)")
        ->check(at_least(0))
        ->capture_default_str();
    cmd->add_option("--top-p", s.top_p, "Nucleus: the smallest set of tokens with this probability")
        ->check(above_to(0, 1))
        ->capture_default_str();
    cmd->add_option("--seed", s.seed, "Random seed (sample i uses seed + i)")
        ->check(seed_range())
        ->capture_default_str();
    cmd->add_option("--num-samples", o->num_samples, "Samples to draw")
        ->check(at_least(1))
        ->capture_default_str();
    cmd->add_flag("--ids", o->ids, "Print token ids instead of text");
    cmd->add_flag("--stop-at-eot", o->stop_at_eot, "Stop a sample at <|endoftext|>");
    add_tokenizer_option(*cmd, o->tokenizer);
    cmd->callback([o] { run_sample(*o); });
}

void add_embed(CLI::App& app) {
    auto o = std::make_shared<EmbedOptions>();
    auto* cmd = app.add_subcommand(
        "embed", "Hidden states of a text per token, written to HDF5: last_hidden_state (T, C) "
                 "after ln_f, as GPT2Model(...).last_hidden_state; --all-layers adds "
                 "hidden_states (L+1, T, C) as HF's output_hidden_states");
    add_model_option(*cmd, o->model);
    add_precision_option(*cmd, o->precision);
    cmd->add_option("--input", o->input,
                    "A file holding the text, or (when no file has that name) the text itself")
        ->required();
    cmd->add_option("--out", o->out, "HDF5 file to write")->required();
    cmd->add_flag("--all-layers", o->all_layers, "Also write every layer's hidden states");
    add_tokenizer_option(*cmd, o->tokenizer);
    cmd->callback([o] { run_embed(*o); });
}

} // namespace

void add_generate(CLI::App& app) {
    add_sample(app);
    add_embed(app);
}

} // namespace cli
