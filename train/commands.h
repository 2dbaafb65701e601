// The gpt2 program's subcommands. Each add_* registers one subcommand (its options and
// its callback) on the app; callbacks throw on errors, which main() prints as one line.
#pragma once

#include <CLI/CLI.hpp>

namespace train {

void add_gradcheck(CLI::App& app);
void add_convert(CLI::App& app);
void add_info(CLI::App& app);
void add_eval(CLI::App& app); // eval loss (later: ppl, lambada)

} // namespace train
