// gpt2 encode / decode / tokenize: text to GPT-2 token ids, ids to bytes, text files to
// llm.c token shards.
#include <chrono>
#include <cstdio>
#include <filesystem>

#include "base/error.h"
#include "base/file.h"
#include "data/shard_writer.h"
#include "data/tokenizer.h"
#include "train/cli/common.h"

namespace cli {

namespace fs = std::filesystem;

namespace {

struct EncodeOptions {
    std::string input, tokenizer;
    bool allow_special = false;
};

void run_encode(const EncodeOptions& o) {
    require_tokenizer(o.tokenizer);
    data::Tokenizer tok(o.tokenizer);
    const auto ids = tok.encode(read_input(o.input), o.allow_special);
    std::string line;
    for (size_t i = 0; i < ids.size(); ++i) line += (i ? " " : "") + std::to_string(ids[i]);
    std::printf("%s\n", line.c_str());
}

void run_decode(const EncodeOptions& o) {
    require_tokenizer(o.tokenizer);
    data::Tokenizer tok(o.tokenizer);
    const std::string where = o.input.empty() ? "standard input" : o.input;
    const std::vector<int> ids = parse_token_ids(read_input(o.input), tok.vocab_size(), where);
    const std::string bytes = tok.decode(ids);
    std::fwrite(bytes.data(), 1, bytes.size(), stdout);
}

struct TokenizeOptions {
    std::vector<std::string> inputs;
    std::string tokenizer;
    data::ShardWriterOptions shards;
    data::DocSplit doc_split = data::DocSplit::file;
    bool eot = false, allow_special = false;
};

// "\rtokenize: 42.0% of 12.3 MB, ..." on standard error, every 2 seconds.
class TokenizeProgress {
public:
    explicit TokenizeProgress(size_t total_bytes) : total_(total_bytes) {}
    void operator()(size_t done_bytes, size_t tokens) {
        if (clock::now() - last_ < std::chrono::seconds(2)) return;
        last_ = clock::now();
        std::fprintf(stderr, "\rtokenize: %5.1f%% of %.1f MB, %zu tokens, %.2f MB/s",
                     100.0 * done_bytes / std::max<size_t>(total_, 1), total_ / 1e6, tokens,
                     done_bytes / 1e6 / seconds());
        printed_ = true;
    }
    void finish() const {
        if (printed_) std::fprintf(stderr, "\n");
    }
    double seconds() const { return std::chrono::duration<double>(clock::now() - start_).count(); }

private:
    using clock = std::chrono::steady_clock;
    size_t total_;
    clock::time_point start_ = clock::now(), last_ = start_;
    bool printed_ = false;
};

// Whether writing shards at `output` (a prefix, or one .bin path) could replace `input`.
bool is_output_of(const std::string& input, const std::string& output) {
    const fs::path out(output), in(input);
    if (out.extension() == ".bin") return same_file(input, output);
    const std::string name = in.filename().string(), prefix = out.filename().string() + "_";
    const fs::path dir = out.parent_path().empty() ? "." : out.parent_path();
    const fs::path in_dir = in.parent_path().empty() ? "." : in.parent_path();
    return same_file(dir.string(), in_dir.string()) && name.starts_with(prefix) &&
           in.extension() == ".bin";
}

void run_tokenize(const TokenizeOptions& o) {
    for (const auto& path : o.inputs) {
        require_file(path);
        if (is_output_of(path, o.shards.output))
            throw base::SettingError("output", "its shards would replace the input " + path);
    }
    require_tokenizer(o.tokenizer);
    data::ShardWriter shards(o.shards);
    if (const fs::path dir = fs::path(o.shards.output).parent_path(); !dir.empty())
        fs::create_directories(dir);
    data::Tokenizer tok(o.tokenizer);
    size_t total_bytes = 0, docs = 0, done_bytes = 0;
    for (const auto& path : o.inputs) total_bytes += fs::file_size(path);
    TokenizeProgress progress(total_bytes);
    std::vector<int> ids;
    for (const auto& path : o.inputs) {
        const std::string text = base::read_file(path);
        for (std::string_view doc : data::split_documents(text, o.doc_split)) {
            ids.clear();
            if (o.eot) ids.push_back(data::Tokenizer::kEndOfText);
            tok.encode(doc, ids, o.allow_special);
            shards.add(ids);
            ++docs;
            done_bytes += doc.size();
            progress(done_bytes, shards.total());
        }
    }
    shards.finish();
    progress.finish();
    const double s = progress.seconds();
    for (const auto& w : shards.written()) std::printf("wrote %s\n", w.c_str());
    std::printf("%zu files, %zu documents, %zu bytes -> %zu tokens in %zu shards, %.2f s "
                "(%.0f tokens/s, %.2f MB/s)\n",
                o.inputs.size(), docs, total_bytes, shards.total(), shards.written().size(), s,
                shards.total() / s, total_bytes / 1e6 / s);
}

void add_encode_decode(CLI::App& app) {
    auto e = std::make_shared<EncodeOptions>();
    auto* encode = app.add_subcommand(
        "encode", "Text to GPT-2 token ids (space-separated on standard output), as tiktoken does");
    encode->add_option("--input", e->input, "Text file (default: standard input)");
    encode->add_flag("--allow-special", e->allow_special,
                     "Read <|endoftext|> in the text as the special token 50256");
    add_tokenizer_option(*encode, e->tokenizer);
    encode->callback([e] { run_encode(*e); });

    auto d = std::make_shared<EncodeOptions>();
    auto* decode = app.add_subcommand(
        "decode", "GPT-2 token ids (whitespace-separated) to the bytes they stand for");
    decode->add_option("--input", d->input, "File of ids (default: standard input)");
    add_tokenizer_option(*decode, d->tokenizer);
    decode->callback([d] { run_decode(*d); });
}

void add_tokenize(CLI::App& app) {
    using data::DocSplit;
    auto t = std::make_shared<TokenizeOptions>();
    auto* cmd = app.add_subcommand(
        "tokenize", "Text files to llm.c token shards: PREFIX_val_000000.bin holds the first "
                    "--val-tokens tokens, PREFIX_train_000001.bin... the rest");
    cmd->add_option("--input", t->inputs, "Text files, read in order")->required();
    cmd->add_option("--output", t->shards.output,
                    "Shard path prefix (e.g. datasets/tinyshakespeare/tiny_shakespeare), or one "
                    "shard's path ending in .bin")
        ->required();
    cmd->add_option("--shard-tokens", t->shards.shard_tokens, "Tokens per train shard")
        ->check(at_least(1))
        ->capture_default_str();
    cmd->add_option("--val-tokens", t->shards.val_tokens,
                    "Tokens of the validation shard, taken first (0 = none)")
        ->check(at_least(0))
        ->capture_default_str();
    add_choice(*cmd, "--doc-split", t->doc_split,
               {{"file", DocSplit::file}, {"blank-line", DocSplit::blank_line}},
               "What a document is: a whole file, or a block ending in a blank line");
    cmd->add_flag("--eot-between-docs", t->eot,
                  "Put <|endoftext|> before every document, as GPT-2 pretraining and llm.c do");
    cmd->add_flag("--allow-special", t->allow_special,
                  "Read <|endoftext|> in the text as the special token");
    add_tokenizer_option(*cmd, t->tokenizer);
    cmd->callback([t] { run_tokenize(*t); });
}

} // namespace

void add_tokens(CLI::App& app) {
    add_encode_decode(app);
    add_tokenize(app);
}

} // namespace cli
