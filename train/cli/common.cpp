#include "train/cli/common.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <iterator>
#include <optional>
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

// A SettingError's problem with each {setting} in it that is an option of cmd shown as
// that option; other braces stay as they are.
std::string with_options(const CLI::App& cmd, std::string problem) {
    for (size_t open = 0; (open = problem.find('{', open)) != std::string::npos;) {
        const size_t close = problem.find('}', open);
        if (close == std::string::npos) break;
        const std::string setting = problem.substr(open + 1, close - open - 1);
        const std::string option = option_for(cmd, setting);
        if (option == setting) {
            ++open;
            continue;
        }
        problem.replace(open, close + 1 - open, option);
        open += option.size();
    }
    return problem;
}

// "gpt2 eval ppl": how the command is typed.
std::string command_path(const CLI::App& cmd) {
    std::string path;
    for (const CLI::App* c = &cmd; c; c = c->get_parent())
        path = (c->get_parent() ? c->get_name() : "gpt2") + (path.empty() ? "" : " " + path);
    return path;
}

// A message on one line: line breaks (HDF5's, a JSON library's) become spaces.
std::string one_line(std::string text) {
    std::replace(text.begin(), text.end(), '\n', ' ');
    std::replace(text.begin(), text.end(), '\r', ' ');
    while (!text.empty() && text.back() == ' ') text.pop_back();
    return text;
}

void print_error(const std::string& subject, const std::string& problem) {
    std::fprintf(stderr, "gpt2: error: %s: %s\n", one_line(subject).c_str(),
                 one_line(problem).c_str());
    std::fflush(stderr);
}

// A usage error: the line names the option and ends with a hint to the command's help.
int usage_error(const CLI::App& cmd, const std::string& subject, const std::string& problem) {
    print_error(subject, problem + " (see '" + command_path(cmd) + " --help')");
    return 2;
}

// How a command that ran out of memory can use less, from the options it has.
std::string how_to_use_less_memory(const CLI::App& cmd) {
    std::vector<std::string> shapes;
    for (const char* name : {"--batch", "--seq", "--context"})
        if (cmd.get_option_no_throw(name)) shapes.push_back(name);
    std::string how;
    for (size_t i = 0; i < shapes.size(); ++i)
        how += (i == 0 ? "lower " : i + 1 == shapes.size() ? " or " : ", ") + shapes[i];
    // --recompute all helps unless it is in use already (it is the default).
    if (const CLI::Option* r = cmd.get_option_no_throw("--recompute");
        r && r->count() > 0 && r->results().back() != "all")
        how += (how.empty() ? "use" : ", or use") + std::string(" --recompute all");
    return how.empty() ? "use a smaller model or input" : how;
}

template <class E> bool is(const CLI::ParseError& e) {
    return dynamic_cast<const E*>(&e) != nullptr;
}

// CLI11's messages, reworded as "<option>: <problem>".
std::pair<std::string, std::string> parse_error_parts(const CLI::App& cmd,
                                                      const CLI::ParseError& e) {
    const std::string what = e.what();
    const std::string path = command_path(cmd);
    const std::string command = cmd.get_parent() ? path.substr(5) : "command";
    auto after = [&](const std::string& marker) {
        const size_t at = what.find(marker);
        return at == std::string::npos ? std::string() : what.substr(at + marker.size());
    };
    if (is<CLI::ExtrasError>(e)) {
        std::string first = after(": ");
        first = first.substr(0, first.find(' '));
        return {first, first.starts_with("-") ? "unknown option" : "unexpected argument"};
    }
    if (is<CLI::RequiredError>(e)) {
        if (what.find("subcommand") != std::string::npos) {
            std::string names;
            for (const CLI::App* sub : cmd.get_subcommands({}))
                names += (names.empty() ? "" : ", ") + sub->get_name();
            const auto extra = cmd.remaining();
            if (!extra.empty())
                return {extra.front(),
                        std::string(extra.front().starts_with("-") ? "unknown option"
                                                                   : "unknown command") +
                            " (commands: " + names + ")"};
            return {command, "a command is needed: " + names};
        }
        if (what.ends_with(" is required"))
            return {what.substr(0, what.size() - 12), "is required"};
    }
    if (is<CLI::ConversionError>(e) && what.starts_with("Could not convert: ")) {
        const std::string rest = after("Could not convert: ");
        const size_t eq = rest.find(" = ");
        const std::string option = rest.substr(0, eq);
        const CLI::Option* opt = cmd.get_option_no_throw(option);
        const std::string type = opt ? opt->get_type_name() : "";
        const std::string kind = type.starts_with("INT")     ? "an integer"
                                 : type.starts_with("UINT")  ? "a non-negative integer"
                                 : type.starts_with("FLOAT") ? "a number"
                                                             : "a valid value";
        return {option,
                "'" + (eq == std::string::npos ? rest : rest.substr(eq + 3)) + "' is not " + kind};
    }
    if (is<CLI::ExcludesError>(e)) {
        const size_t at = what.find(" excludes ");
        return {what.substr(0, at), "cannot be given with " + after(" excludes ")};
    }
    if (is<CLI::RequiresError>(e)) {
        const size_t at = what.find(" requires ");
        return {what.substr(0, at), "needs " + after(" requires ")};
    }
    if (is<CLI::ArgumentMismatch>(e)) {
        const size_t colon = what.find(": ");
        const std::string option = what.substr(0, colon), rest = after(": ");
        if (rest.starts_with("At Most")) return {option, "is given more than once"};
        if (rest.find("missing") != std::string::npos) return {option, "needs a value"};
        return {option, rest};
    }
    // ValidationError and the rest: "--option: problem" as CLI11 words it.
    const size_t colon = what.find(": ");
    if (what.starts_with("-") && colon != std::string::npos)
        return {what.substr(0, colon), what.substr(colon + 2)};
    return {command, what};
}

// The number in a command-line value, if all of it is one.
std::optional<double> number_in(const std::string& text) {
    if (text.empty()) return std::nullopt;
    char* end = nullptr;
    const double v = std::strtod(text.c_str(), &end);
    if (end != text.c_str() + text.size()) return std::nullopt;
    return v;
}

std::string number_text(double v) {
    std::ostringstream out;
    out << v;
    return out.str();
}

// A validator of finite numbers in a range, shown in --help as `shown` and worded in
// errors as "must be <range>, got <value>"; `inside` tells whether a value is in it.
CLI::Validator range_validator(const std::string& shown, const std::string& range,
                               std::function<bool(double)> inside) {
    return CLI::Validator(
        [range, inside](std::string& value) -> std::string {
            const auto v = number_in(value);
            if (!v) return {}; // not a number: the conversion says so
            if (std::isfinite(*v) && inside(*v)) return {};
            return "must be " + range + ", got " + value;
        },
        shown);
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
        "fp32 | bf16 (matrix products, attention's included, on bfloat16 inputs with float "
        "accumulation; master weights, optimizer state, statistics, the loss and gradients stay "
        "fp32; needs a CPU with AVX512_BF16)");
}

std::unique_ptr<model::GPT2<float>> load_model_as(const std::string& path,
                                                  model::Precision precision) {
    model::check_precision_supported(precision);
    for (const auto& file : model_inputs(path)) require_file(file);
    auto gpt = model::load_model(path);
    gpt->set_precision(precision);
    return gpt;
}

CLI::Option* add_recompute_option(CLI::App& cmd, model::Recompute& value) {
    using model::Recompute;
    return add_choice(cmd, "--recompute", value,
                      {{"off", Recompute::off}, {"gelu", Recompute::gelu}, {"all", Recompute::all}},
                      "what backward recomputes instead of keeping, for less memory: off | gelu "
                      "(each layer's GELU output, L x B x T x 4C values; llm.c's default) | all "
                      "(also its two LayerNorm outputs, 2L x B x T x C more; the default, 3-7 ms "
                      "more per step than gelu for GPT-2 124M at 4 x 256); results are "
                      "bit-identical");
}

CLI::Option* add_zero_option(CLI::App& cmd, int& value) {
    return add_choice(cmd, "--zero", value,
                      std::map<std::string, int>{{"auto", -1}, {"0", 0}, {"1", 1}},
                      "under mpirun: 0 = every rank holds all optimizer moments and updates all "
                      "parameters; 1 = ZeRO-1, each rank holds and updates 1/ranks of them "
                      "(reduce-scatter; on one machine the ranks share one copy of the parameters "
                      "and read each other's gradients in shared memory, else all-gather); auto = "
                      "1 when all ranks run on one machine, else 0");
}

CLI::Validator at_least(double low) {
    return range_validator(">= " + number_text(low), "at least " + number_text(low),
                           [low](double v) { return v >= low; });
}
CLI::Validator seed_range() {
    return CLI::Validator(
        [](std::string& value) -> std::string {
            uint64_t v = 0;
            const char* end = value.data() + value.size();
            const auto [at, ec] = std::from_chars(value.data(), end, v);
            if (value.empty() || ec != std::errc() || at != end)
                return "must be a whole number in [0, 18446744073709551615], got " + value;
            return {};
        },
        "[0, 2^64)");
}
CLI::Validator above(double low) {
    return range_validator("> " + number_text(low),
                           low == 0 ? "positive" : "greater than " + number_text(low),
                           [low](double v) { return v > low; });
}
CLI::Validator in_range(double low, double high) {
    const std::string range = "[" + number_text(low) + ", " + number_text(high) + "]";
    return range_validator(range, "in " + range, [=](double v) { return v >= low && v <= high; });
}
CLI::Validator from_below(double low, double high) {
    const std::string range = "[" + number_text(low) + ", " + number_text(high) + ")";
    return range_validator(range, "in " + range, [=](double v) { return v >= low && v < high; });
}
CLI::Validator above_to(double low, double high) {
    const std::string range = "(" + number_text(low) + ", " + number_text(high) + "]";
    return range_validator(range, "in " + range, [=](double v) { return v > low && v <= high; });
}

namespace {

// What kind of file system object path is, without opening it (no exception even for
// a name longer than NAME_MAX).
fs::file_status status_of(const std::string& path, std::string& problem) {
    std::error_code ec;
    const fs::file_status st = fs::status(path, ec);
    if (ec && st.type() != fs::file_type::not_found) problem = ec.message();
    return st;
}

} // namespace

void require_file(const std::string& path) {
    std::string problem;
    const fs::file_status st = status_of(path, problem);
    if (!problem.empty()) throw base::FileError(path, "cannot access (" + problem + ")");
    switch (st.type()) {
    case fs::file_type::regular:
        return;
    case fs::file_type::not_found:
        throw base::FileError(path, "no such file");
    case fs::file_type::directory:
        throw base::FileError(path, "is a folder, not a file");
    default:
        throw base::FileError(path, "not a regular file (a FIFO, socket or device is not read)");
    }
}

void require_folder(const std::string& path) {
    std::string problem;
    const fs::file_status st = status_of(path, problem);
    if (!problem.empty()) throw base::FileError(path, "cannot access (" + problem + ")");
    if (st.type() == fs::file_type::not_found) throw base::FileError(path, "no such folder");
    if (st.type() != fs::file_type::directory) throw base::FileError(path, "not a folder");
}

void require_output(const std::string& path) {
    const fs::path folder = fs::path(path).parent_path();
    require_folder(folder.empty() ? "." : folder.string());
    std::error_code ec;
    if (fs::is_directory(path, ec)) throw base::FileError(path, "is a folder, not a file");
}

void require_tokenizer(const std::string& dir) {
    require_folder(dir);
    require_file((fs::path(dir) / "encoder.json").string());
    require_file((fs::path(dir) / "vocab.bpe").string());
}

std::vector<std::string> model_inputs(const std::string& path) {
    std::vector<std::string> files = {path};
    if (fs::path(path).extension() == ".safetensors")
        files.push_back((fs::path(path).parent_path() / "config.json").string());
    return files;
}

bool same_file(const std::string& a, const std::string& b) {
    std::error_code ec;
    const bool same = fs::equivalent(a, b, ec);
    return !ec && same;
}

void require_not_input(const std::string& output, const std::string& setting,
                       const std::vector<std::string>& inputs) {
    for (const auto& input : inputs)
        if (same_file(output, input))
            throw base::SettingError(setting, output + " is the input " + input +
                                                  "; writing it would destroy it");
}

std::string read_input(const std::string& path) {
    if (path.empty() || path == "-")
        return {std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>()};
    require_file(path);
    return base::read_file(path);
}

std::vector<int> parse_token_ids(const std::string& text, int vocab,
                                 const std::function<void(const std::string&)>& fail) {
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
            fail("'" + word + "' is not a token id in 0.." + std::to_string(vocab - 1));
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
    const CLI::App& cmd = *command_of(app);
    const std::string name = command_path(cmd).substr(5); // without "gpt2 "
    try {
        throw;
    } catch (const train::JobError& e) {
        // Thrown on every rank of an MPI job alike; one of them reports it.
        if (e.report()) std::fprintf(stderr, "gpt2: error: %s\n", one_line(e.what()).c_str());
    } catch (const base::SettingError& e) {
        // The same on every rank: rank 0 speaks for the job.
        if (!prints_job_errors()) return 2;
        return usage_error(cmd, option_for(cmd, e.setting()), with_options(cmd, e.problem()));
    } catch (const base::MemoryError& e) {
        print_error(
            option_for(cmd, e.setting()),
            std::string(e.what()) + "; " +
                (e.setting() == "model" ? "use a smaller model" : how_to_use_less_memory(cmd)));
    } catch (const std::bad_alloc&) {
        print_error(name, "ran out of memory; " + how_to_use_less_memory(cmd));
    } catch (const CLI::ParseError& e) {
        return report_parse_error(app, e);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "gpt2: error: %s\n", one_line(e.what()).c_str());
    } catch (...) {
        print_error(name, "failed with an unknown exception");
    }
    std::fflush(stderr);
    return 1;
}

int report_parse_error(const CLI::App& app, const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e); // --help
    const CLI::App& cmd = *command_of(app);
    const auto [subject, problem] = parse_error_parts(cmd, e);
    return usage_error(cmd, subject, problem);
}

bool prints_job_errors() {
    for (const char* var : {"OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK"})
        if (const char* rank = std::getenv(var)) return std::strcmp(rank, "0") == 0;
    return true;
}

} // namespace cli
