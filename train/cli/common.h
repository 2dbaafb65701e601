// What the gpt2 program's commands share: finding the data folders, options that
// several commands take, reading input, progress lines, running on MPI ranks, and the
// error contract (only the command line knows option names).
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "model/config.h"
#include "model/gpt2.h"
#include "model/precision.h"
#include "model/recompute.h"
#include "train/communicator.h"

namespace cli {

// Each command group adds its subcommands to the app (or, for eval, to its parent).
void add_train(CLI::App& app);
void add_bench(CLI::App& app);
void add_eval(CLI::App& app);        // eval loss, eval grads, and add_zeroshot's
void add_zeroshot(CLI::App& eval);   // eval ppl, eval lambada, eval cbt
void add_generate(CLI::App& app);    // sample, embed
void add_model_files(CLI::App& app); // convert, info
void add_tokens(CLI::App& app);      // encode, decode, tokenize
void add_gradcheck(CLI::App& app);

// Folders found without options: $GPT2_DATA_DIR (datasets) or $GPT2_TOKENIZER_DIR, else
// datasets/ (or datasets/gpt2-tokenizer) in the working directory or beside the build
// directory that holds this program.
std::string default_datasets_dir();
std::string default_tokenizer_dir();

CLI::Option* add_tokenizer_option(CLI::App& cmd, std::string& dir);
// --model: a model file; with presets, also a preset name.
CLI::Option* add_model_option(CLI::App& cmd, std::string& model, bool presets = false);
// An option whose words stand for values of an enum (or bool), e.g. on|off.
template <class T>
CLI::Option* add_choice(CLI::App& cmd, const std::string& name, T& value,
                        const std::map<std::string, T>& words, const std::string& help) {
    std::string shown, all;
    std::vector<std::string> keys;
    for (const auto& [word, v] : words) {
        if (v == value) shown = word;
        all += (all.empty() ? "" : "|") + word;
        keys.push_back(word);
    }
    return cmd
        .add_option_function<std::string>(
            name, [&value, words](const std::string& word) { value = words.at(word); }, help)
        ->check(CLI::IsMember(keys).description(""))
        ->type_name(all)
        ->default_str(shown);
}
CLI::Option* add_on_off(CLI::App& cmd, const std::string& name, bool& value,
                        const std::string& help);
// --precision fp32|bf16: the arithmetic of the model a command runs.
CLI::Option* add_precision_option(CLI::App& cmd, model::Precision& precision);
// The model file at path, set to run in `precision`, which is checked before the file is
// read.
std::unique_ptr<model::GPT2<float>> load_model_as(const std::string& path,
                                                  model::Precision precision);
// --recompute off|gelu|all, for train and bench.
CLI::Option* add_recompute_option(CLI::App& cmd, model::Recompute& value);
// --zero auto|0|1 (auto = -1), for train and bench.
CLI::Option* add_zero_option(CLI::App& cmd, int& value);

// Numeric option ranges, checked as the command line is parsed and stated in --help
// (after the type: "FLOAT:>= 0"). NaN and infinities are refused; a value that is not a
// number is left to the conversion, which refuses it.
CLI::Validator at_least(double low);                // [low, inf)
CLI::Validator above(double low);                   // (low, inf)
CLI::Validator in_range(double low, double high);   // [low, high]
CLI::Validator from_below(double low, double high); // [low, high)
CLI::Validator above_to(double low, double high);   // (low, high]
CLI::Validator seed_range();                        // a uint64 written in decimal digits

// Input paths, checked before anything is opened (opening a FIFO blocks): each throws
// base::FileError unless the path exists and is a regular file, or a folder.
void require_file(const std::string& path);
void require_folder(const std::string& path);
// An output file: its folder exists and it is not itself a folder (FileError otherwise).
void require_output(const std::string& path);
// The tokenizer folder and its encoder.json and vocab.bpe.
void require_tokenizer(const std::string& dir);
// Model files the loaders read for `path`: the file, and a .safetensors file's
// config.json beside it.
std::vector<std::string> model_inputs(const std::string& path);
// True when a and b both exist and are the same file (std::filesystem::equivalent).
bool same_file(const std::string& a, const std::string& b);
// Throws base::SettingError(setting) when `output` is one of `inputs`, which writing it
// would destroy.
void require_not_input(const std::string& output, const std::string& setting,
                       const std::vector<std::string>& inputs);

// A whole file; "" or "-" is standard input.
std::string read_input(const std::string& path);
// Whitespace-separated token ids in 0..vocab-1; a bad word is passed to fail(problem),
// which throws the error that names where the text came from.
std::vector<int> parse_token_ids(const std::string& text, int vocab,
                                 const std::function<void(const std::string&)>& fail);

// "\r<what> 1234/5678 (21.7%) 12 s, eta 45 s" on standard error, at most once a second.
class Progress {
public:
    explicit Progress(std::string what) : what_(std::move(what)) {}
    void operator()(size_t done, size_t total);
    double seconds() const;

private:
    using clock = std::chrono::steady_clock;
    std::string what_;
    clock::time_point start_ = clock::now(), last_{};
    bool finished_ = false; // the final line is printed once
};

// Runs body with this process's communicator (MPI under mpirun). An error agreed on by
// all ranks (train::JobError) ends the job cleanly; any other exception on one rank of
// several prints "gpt2: error: rank R: ..." and aborts every rank, so none is left
// waiting in a collective.
void run_on_ranks(const std::function<void(train::Communicator&)>& body);

// The error contract: every failure prints one line on standard error,
//   gpt2: error: <file or option>: <what is wrong>
// and exits 2 for a usage error (the command line itself is wrong: an unknown or missing
// option, a value out of range, settings that disagree; the line ends with a hint to
// the command's --help) or 1 for anything else (files, data, memory, the computation).

// For the exception in flight: names a library's setting by the option of `app`'s
// command that sets it. Returns the exit status.
int report_error(const CLI::App& app);
// For a CLI11 parse error: --help prints help and returns 0, any other is a usage error.
int report_parse_error(const CLI::App& app, const CLI::ParseError& e);
// Whether this process should print a job-wide error: rank 0 of an MPI job (from the
// launcher's environment, as errors before MPI starts are the same on every rank).
bool prints_job_errors();

} // namespace cli
