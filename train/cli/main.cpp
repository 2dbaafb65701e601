// gpt2: train, evaluate and inspect GPT-2 models. See `gpt2 --help`.
#include <cstdio>

#include "model/blas.h"
#include "train/cli/common.h"

int main(int argc, char** argv) {
    model::configure_blas();
    CLI::App app{"gpt2: GPT-2 from scratch, with hand-written forward and backward passes"};
    app.require_subcommand(1);
    cli::add_train(app);
    cli::add_bench(app);
    cli::add_generate(app);
    cli::add_gradcheck(app);
    cli::add_model_files(app);
    cli::add_eval(app);
    cli::add_tokens(app);
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        // One line and exit 2 (--help: help and exit 0); see cli::report_error.
        return cli::report_parse_error(app, e);
    } catch (...) {
        return cli::report_error(app);
    }
    return 0;
}
