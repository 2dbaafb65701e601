// gpt2: train, evaluate and inspect GPT-2 models. See `gpt2 --help`.
#include <cstdio>
#include <exception>

#include "model/blas.h"
#include "train/commands.h"
#include "train/communicator.h"

int main(int argc, char** argv) {
    model::configure_blas();
    CLI::App app{"gpt2: GPT-2 from scratch, with hand-written forward and backward passes"};
    app.require_subcommand(1);
    train::add_train(app);
    train::add_bench(app);
    train::add_sample(app);
    train::add_embed(app);
    train::add_gradcheck(app);
    train::add_convert(app);
    train::add_info(app);
    train::add_eval(app);
    train::add_tokens(app);
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return app.exit(e);
    } catch (const train::JobError& e) {
        // Thrown on every rank of an MPI job alike; one of them reports it.
        if (e.report()) std::fprintf(stderr, "gpt2: error: %s\n", e.what());
        return 1;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "gpt2: error: %s\n", e.what());
        return 1;
    }
    return 0;
}
