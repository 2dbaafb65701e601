// gpt2 sample: text (or token ids) from a model, streamed as it is generated.
#include <cstdio>
#include <memory>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "data/tokenizer.h"
#include "eval/sample.h"
#include "model/gpt2.h"
#include "model/io.h"
#include "train/commands.h"

namespace train {

namespace {

struct SampleCommand {
    std::string model, prompt, prompt_ids, tokenizer;
    eval::SampleOptions options;
    int num_samples = 1;
    bool ids = false, stop_at_eot = false;
};

void run_sample(SampleCommand o) {
    auto gpt_ptr = load_model(o.model);
    model::GPT2<float>& gpt = *gpt_ptr;
    const int vocab = gpt.config().vocab;
    // Text needs the GPT-2 tokenizer; --prompt-ids with --ids works for any vocabulary.
    std::optional<data::Tokenizer> tok;
    if (!o.ids || o.prompt_ids.empty()) tok.emplace(o.tokenizer);
    if (tok && tok->vocab_size() != vocab)
        throw std::invalid_argument(o.model + ": vocabulary of " + std::to_string(vocab) +
                                    " tokens is not GPT-2's; use --prompt-ids and --ids");
    std::vector<int> prompt;
    if (!o.prompt_ids.empty()) prompt = parse_token_ids(o.prompt_ids, vocab, "--prompt-ids");
    else if (!o.prompt.empty()) prompt = tok->encode(o.prompt);
    if (prompt.empty()) prompt = {std::min(data::Tokenizer::kEndOfText, vocab - 1)};
    if (o.stop_at_eot) o.options.stop_token = std::min(data::Tokenizer::kEndOfText, vocab - 1);

    const uint64_t seed = o.options.seed;
    for (int s = 0; s < o.num_samples; ++s) {
        o.options.seed = seed + uint64_t(s);
        if (!o.ids && !o.prompt.empty()) std::fputs(o.prompt.c_str(), stdout);
        std::string pending; // bytes of a character split across tokens
        eval::generate(gpt, prompt, o.options, [&](int token) {
            if (o.ids) {
                std::printf("%d ", token);
            } else {
                pending += tok->token_bytes(token);
                // Print up to the last complete UTF-8 character; keep the rest for later.
                size_t cut = pending.size();
                for (size_t back = 1; back <= std::min<size_t>(3, pending.size()); ++back) {
                    const auto c = static_cast<unsigned char>(pending[pending.size() - back]);
                    if ((c & 0xC0) == 0x80) continue;
                    const size_t need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
                    if (need > back) cut = pending.size() - back;
                    break;
                }
                std::fputs(pending.substr(0, cut).c_str(), stdout);
                pending.erase(0, cut);
            }
            std::fflush(stdout);
        });
        if (!pending.empty()) std::fputs(data::sanitize_utf8(pending).c_str(), stdout);
        std::printf(o.num_samples > 1 && s + 1 < o.num_samples ? "\n---\n" : "\n");
    }
}

} // namespace

void add_sample(CLI::App& app) {
    auto o = std::make_shared<SampleCommand>();
    auto* cmd = app.add_subcommand(
        "sample", "Generate text from a model with a key/value cache, streaming tokens as they "
                  "come; reproducible with --seed; --temperature 0 is greedy");
    cmd->add_option("--model", o->model, "Model file (.bin, .h5, .safetensors)")->required()->check(CLI::ExistingFile);
    auto* prompt = cmd->add_option("--prompt", o->prompt, "Text to continue (default: <|endoftext|>)");
    cmd->add_option("--prompt-ids", o->prompt_ids, "The prompt as token ids, e.g. \"0 0 0 52\"")->excludes(prompt);
    cmd->add_option("--max-tokens", o->options.max_tokens, "Tokens to generate")->capture_default_str();
    cmd->add_option("--temperature", o->options.temperature, "Softmax temperature (0 = greedy)")->capture_default_str();
    cmd->add_option("--top-k", o->options.top_k, "Sample among the k most likely tokens (0 = all)")->capture_default_str();
    cmd->add_option("--top-p", o->options.top_p, "Nucleus: the smallest set of tokens with this probability")
        ->capture_default_str();
    cmd->add_option("--seed", o->options.seed, "Random seed (sample i uses seed + i)")->capture_default_str();
    cmd->add_option("--num-samples", o->num_samples, "Samples to draw")->capture_default_str();
    cmd->add_flag("--ids", o->ids, "Print token ids instead of text");
    cmd->add_flag("--stop-at-eot", o->stop_at_eot, "Stop a sample at <|endoftext|>");
    add_tokenizer_option(*cmd, o->tokenizer);
    cmd->callback([o] { run_sample(*o); });
}

} // namespace train
