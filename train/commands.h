// The gpt2 program's subcommands. Each add_* registers one subcommand (its options and
// its callback) on the app; callbacks throw on errors, which main() prints as one line.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "model/gpt2.h"

namespace train {

void add_gradcheck(CLI::App& app);
void add_convert(CLI::App& app);
void add_info(CLI::App& app);
void add_eval(CLI::App& app);   // eval loss, eval grads, and add_zeroshot's
void add_tokens(CLI::App& app); // encode, decode, tokenize
void add_zeroshot(CLI::App& eval); // eval ppl, eval lambada, eval cbt (under the eval command)
void add_train(CLI::App& app);
void add_bench(CLI::App& app);
void add_sample(CLI::App& app);
void add_embed(CLI::App& app);

// Where the GPT-2 tokenizer files are unless --tokenizer says: $GPT2_TOKENIZER_DIR, else
// datasets/gpt2-tokenizer in the working directory or beside the build directory.
std::string default_tokenizer_dir();
void add_tokenizer_option(CLI::App& cmd, std::string& dir);

// Shared by the subcommands: a model file loaded into a float model; a whole file
// ("-" or "" = standard input).
std::unique_ptr<model::GPT2<float>> load_model(const std::string& path);
std::string read_file(const std::string& path);
// Whitespace-separated token ids in 0..vocab-1; errors name `where` and the bad word.
std::vector<int> parse_token_ids(const std::string& text, int vocab, const std::string& where);

} // namespace train
