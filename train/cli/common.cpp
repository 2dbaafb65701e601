#include "train/cli/common.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <iterator>
#include <sstream>

#include "base/error.h"
#include "base/file.h"
#include "model/io.h"

namespace cli {

namespace fs = std::filesystem;

namespace {

// `local` (a path under datasets/) in the working directory, else beside the build
// directory (build/gpt2 -> datasets/ next to build/), else `local` as given.
std::string find_datasets_path(const fs::path& local, const fs::path& marker) {
    if (fs::exists(local / marker)) return local.string();
    std::error_code ec;
    const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
    if (!ec) {
        const fs::path beside = exe.parent_path().parent_path() / local;
        if (fs::exists(beside / marker)) return beside.string();
    }
    return local.string();
}

// The command that was run: the deepest subcommand parsed.
const CLI::App* command_of(const CLI::App& app) {
    const CLI::App* cmd = &app;
    while (!cmd->get_subcommands().empty()) cmd = cmd->get_subcommands().front();
    return cmd;
}

// A library's name for a setting -> the option of cmd that sets it, if it has one.
std::string option_for(const CLI::App& cmd, const std::string& setting) {
    static const std::map<std::string, std::string> kAliases = {
        {"evals", "--eval"},
        {"total", "--steps"},
        {"preset", "--model"},
        {"kind", "--lr-schedule"},
        {"final_fraction", "--lr-final-fraction"},
    };
    std::string name = "--" + setting;
    std::replace(name.begin(), name.end(), '_', '-');
    if (const auto it = kAliases.find(setting); it != kAliases.end()) name = it->second;
    return cmd.get_option_no_throw(name) ? name : setting;
}

} // namespace

std::string default_datasets_dir() {
    if (const char* env = std::getenv("GPT2_DATA_DIR")) return env;
    return find_datasets_path("datasets", "gpt2-tokenizer");
}

std::string default_tokenizer_dir() {
    if (const char* env = std::getenv("GPT2_TOKENIZER_DIR")) return env;
    return find_datasets_path("datasets/gpt2-tokenizer", "encoder.json");
}

CLI::Option* add_tokenizer_option(CLI::App& cmd, std::string& dir) {
    dir = default_tokenizer_dir();
    return cmd
        .add_option("--tokenizer", dir,
                    "Folder with GPT-2's encoder.json and vocab.bpe (scripts/get_data.sh "
                    "gpt2-tokenizer puts them in datasets/gpt2-tokenizer; or set "
                    "GPT2_TOKENIZER_DIR)")
        ->capture_default_str();
}

CLI::Option* add_model_option(CLI::App& cmd, std::string& model, bool presets) {
    if (!presets)
        return cmd.add_option("--model", model, "Model file (.bin, .h5, .safetensors)")->required();
    std::string names;
    for (const auto& p : model::preset_names()) names += (names.empty() ? "" : ", ") + p;
    return cmd
        .add_option("--model", model,
                    "Preset (" + names + ") or model file (.bin, .h5, .safetensors, a checkpoint)")
        ->capture_default_str();
}

CLI::Option* add_on_off(CLI::App& cmd, const std::string& name, bool& value,
                        const std::string& help) {
    return add_choice(cmd, name, value, std::map<std::string, bool>{{"on", true}, {"off", false}},
                      "on|off: " + help);
}

CLI::Option* add_precision_option(CLI::App& cmd, model::Precision& precision) {
    using model::Precision;
    return add_choice(
        cmd, "--precision", precision,
        std::map<std::string, Precision>{{"fp32", Precision::fp32}, {"bf16", Precision::bf16}},
        "fp32 | bf16 (matrix products on bfloat16 inputs with float accumulation; "
        "weights and everything else stay fp32; needs a CPU with AVX512_BF16)");
}

std::unique_ptr<model::GPT2<float>> load_model_as(const std::string& path,
                                                  model::Precision precision) {
    model::check_precision_supported(precision);
    auto gpt = model::load_model(path);
    gpt->set_precision(precision);
    return gpt;
}

CLI::Option* add_recompute_option(CLI::App& cmd, model::Recompute& value) {
    using model::Recompute;
    return add_choice(cmd, "--recompute", value,
                      {{"off", Recompute::off}, {"gelu", Recompute::gelu}, {"all", Recompute::all}},
                      "what backward recomputes instead of keeping, for less memory: off | gelu "
                      "(each layer's GELU output, L x B x T x 4C floats) | all (also its two "
                      "LayerNorm outputs, 2L x B x T x C more); results are bit-identical");
}

std::string read_input(const std::string& path) {
    if (path.empty() || path == "-")
        return {std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>()};
    return base::read_file(path);
}

std::vector<int> parse_token_ids(const std::string& text, int vocab, const std::string& where) {
    std::istringstream in(text);
    std::vector<int> ids;
    for (std::string word; in >> word;) {
        size_t used = 0;
        int id = -1;
        try {
            id = std::stoi(word, &used);
        } catch (const std::exception&) {
        }
        if (used != word.size() || id < 0 || id >= vocab)
            throw std::runtime_error(where + ": '" + word + "' is not a token id in 0.." +
                                     std::to_string(vocab - 1));
        ids.push_back(id);
    }
    return ids;
}

void Progress::operator()(size_t done, size_t total) {
    const auto now = clock::now();
    if (done < total ? now - last_ < std::chrono::seconds(1) : finished_) return;
    finished_ = done == total;
    last_ = now;
    const double s = seconds();
    std::fprintf(stderr, "\r%s %zu/%zu (%.1f%%) %.0f s, eta %.0f s   ", what_.c_str(), done, total,
                 100.0 * done / std::max<size_t>(total, 1), s,
                 done ? s * (total - done) / done : 0.0);
    if (done == total) std::fprintf(stderr, "\n");
}

double Progress::seconds() const {
    return std::chrono::duration<double>(clock::now() - start_).count();
}

void run_on_ranks(const std::function<void(train::Communicator&)>& body) {
    auto comm = train::make_communicator();
    try {
        body(*comm);
    } catch (const train::JobError&) {
        throw; // every rank throws it here; the communicator then shuts down cleanly
    } catch (const std::exception& e) {
        if (comm->size() == 1) throw;
        // Only this rank knows: the others may be waiting in a collective.
        std::fprintf(stderr, "gpt2: error: rank %d: %s\n", comm->rank(), e.what());
        std::fflush(stderr);
        comm->abort_job(1);
    }
}

int report_error(const CLI::App& app) {
    try {
        throw;
    } catch (const train::JobError& e) {
        // Thrown on every rank of an MPI job alike; one of them reports it.
        if (e.report()) std::fprintf(stderr, "gpt2: error: %s\n", e.what());
    } catch (const base::SettingError& e) {
        std::fprintf(stderr, "gpt2: error: %s: %s\n",
                     option_for(*command_of(app), e.setting()).c_str(), e.problem().c_str());
    } catch (const std::exception& e) {
        std::fprintf(stderr, "gpt2: error: %s\n", e.what());
    }
    return 1;
}

} // namespace cli
