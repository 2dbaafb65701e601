// gpt2 encode / decode / tokenize: text to GPT-2 token ids, ids to bytes, text files to
// llm.c token shards.
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "data/shard.h"
#include "data/tokenizer.h"
#include "model/io.h"
#include "train/commands.h"

namespace train {

namespace fs = std::filesystem;

std::string default_tokenizer_dir() {
    if (const char* env = std::getenv("GPT2_TOKENIZER_DIR")) return env;
    const fs::path local = "datasets/gpt2-tokenizer";
    if (fs::exists(local / "encoder.json")) return local.string();
    // build/gpt2 -> datasets/ beside build/
    std::error_code ec;
    const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
    if (!ec) {
        const fs::path beside = exe.parent_path().parent_path() / local;
        if (fs::exists(beside / "encoder.json")) return beside.string();
    }
    return local.string();
}

void add_tokenizer_option(CLI::App& cmd, std::string& dir) {
    dir = default_tokenizer_dir();
    cmd.add_option("--tokenizer", dir,
                   "Folder with GPT-2's encoder.json and vocab.bpe (scripts/get_data.sh "
                   "gpt2-tokenizer puts them in datasets/gpt2-tokenizer; or set GPT2_TOKENIZER_DIR)")
        ->capture_default_str();
}

// Also reads standard input, for encode and decode.
std::string read_file(const std::string& path) {
    if (path.empty() || path == "-") {
        return {std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>()};
    }
    std::ifstream in(path, std::ios::binary);
    if (!in) throw std::runtime_error(path + ": cannot open");
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
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

std::unique_ptr<model::GPT2<float>> load_model(const std::string& path) {
    auto file = model::read_model(path);
    auto gpt = std::make_unique<model::GPT2<float>>(file.config);
    gpt->set_params(file.params.data(), file.params.size());
    return gpt;
}

namespace {


struct EncodeOptions {
    std::string input, tokenizer;
    bool allow_special = false;
};

void run_encode(const EncodeOptions& o) {
    data::Tokenizer tok(o.tokenizer);
    const auto ids = tok.encode(read_file(o.input), o.allow_special);
    std::string line;
    for (size_t i = 0; i < ids.size(); ++i) {
        if (i) line += ' ';
        line += std::to_string(ids[i]);
    }
    std::printf("%s\n", line.c_str());
}

void run_decode(const EncodeOptions& o) {
    data::Tokenizer tok(o.tokenizer);
    const std::string where = o.input.empty() ? "standard input" : o.input;
    const std::vector<int> ids = parse_token_ids(read_file(o.input), tok.vocab_size(), where);
    const std::string bytes = tok.decode(ids);
    std::fwrite(bytes.data(), 1, bytes.size(), stdout);
}

struct TokenizeOptions {
    std::vector<std::string> inputs;
    std::string output, tokenizer, doc_split = "file";
    size_t shard_tokens = 100'000'000, val_tokens = 0;
    bool eot = false, allow_special = false;
};

// Splits text into documents the way llm.c's data scripts do: "file" keeps it whole;
// "blank-line" cuts after every "\n\n" (as text.replace("\n\n", "\n\n<|endoftext|>")).
std::vector<std::string_view> documents(std::string_view text, const std::string& mode) {
    if (mode == "file") return {text};
    std::vector<std::string_view> docs;
    size_t start = 0;
    for (size_t at; (at = text.find("\n\n", start)) != std::string_view::npos; start = at + 2)
        docs.push_back(text.substr(start, at + 2 - start));
    docs.push_back(text.substr(start));
    return docs;
}

// Tokens go to the val shard (PREFIX_val_000000.bin) until it holds val_tokens, then to
// train shards PREFIX_train_000001.bin, ... of shard_tokens each, as llm.c names them.
// An output ending in .bin is one shard holding every token.
class ShardWriter {
public:
    explicit ShardWriter(const TokenizeOptions& o)
        : o_(o), single_(o.output.ends_with(".bin")), in_val_(!single_ && o.val_tokens > 0) {}

    void add(const std::vector<int>& ids) {
        for (int id : ids) {
            buffer_.push_back(uint16_t(id));
            if (!single_ && buffer_.size() == (in_val_ ? o_.val_tokens : o_.shard_tokens)) flush();
        }
        total_ += ids.size();
    }
    void finish() {
        if (!buffer_.empty() || (single_ && written_.empty())) flush();
    }
    size_t total() const { return total_; }
    const std::vector<std::string>& written() const { return written_; }

private:
    void flush() {
        char name[32];
        std::snprintf(name, sizeof name, "_%s_%06d.bin", in_val_ ? "val" : "train", index_);
        const std::string path = single_ ? o_.output : o_.output + name;
        data::write_shard(path, buffer_.data(), buffer_.size());
        written_.push_back(path + " (" + std::to_string(buffer_.size()) + " tokens)");
        buffer_.clear();
        in_val_ = false;
        ++index_;
    }

    const TokenizeOptions& o_;
    bool single_, in_val_;
    int index_ = 0;
    std::vector<uint16_t> buffer_;
    std::vector<std::string> written_;
    size_t total_ = 0;
};

void run_tokenize(const TokenizeOptions& o) {
    using clock = std::chrono::steady_clock;
    if (o.shard_tokens == 0) throw std::invalid_argument("--shard-tokens must be positive");
    if (const fs::path dir = fs::path(o.output).parent_path(); !dir.empty())
        fs::create_directories(dir);
    data::Tokenizer tok(o.tokenizer);

    size_t total_bytes = 0;
    for (const auto& path : o.inputs) total_bytes += fs::file_size(path);
    ShardWriter shards(o);
    std::vector<int> ids;
    size_t docs = 0, done_bytes = 0;
    const auto start = clock::now();
    auto last_report = start;
    for (const auto& path : o.inputs) {
        const std::string text = read_file(path);
        for (std::string_view doc : documents(text, o.doc_split)) {
            ids.clear();
            if (o.eot) ids.push_back(data::Tokenizer::kEndOfText);
            tok.encode(doc, ids, o.allow_special);
            shards.add(ids);
            ++docs;
            done_bytes += doc.size();
            if (clock::now() - last_report > std::chrono::seconds(2)) {
                last_report = clock::now();
                const double s = std::chrono::duration<double>(last_report - start).count();
                std::fprintf(stderr, "\rtokenize: %5.1f%% of %.1f MB, %zu tokens, %.2f MB/s",
                             100.0 * done_bytes / std::max<size_t>(total_bytes, 1), total_bytes / 1e6,
                             shards.total(), done_bytes / 1e6 / s);
            }
        }
    }
    shards.finish();
    const double s = std::chrono::duration<double>(clock::now() - start).count();
    if (last_report != start) std::fprintf(stderr, "\n");
    for (const auto& w : shards.written()) std::printf("wrote %s\n", w.c_str());
    std::printf("%zu files, %zu documents, %zu bytes -> %zu tokens in %zu shards, %.2f s "
                "(%.0f tokens/s, %.2f MB/s)\n",
                o.inputs.size(), docs, total_bytes, shards.total(), shards.written().size(), s,
                shards.total() / s, total_bytes / 1e6 / s);
}

} // namespace

void add_tokens(CLI::App& app) {
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

    auto t = std::make_shared<TokenizeOptions>();
    auto* tokenize = app.add_subcommand(
        "tokenize", "Text files to llm.c token shards: PREFIX_val_000000.bin holds the first "
                    "--val-tokens tokens, PREFIX_train_000001.bin... the rest");
    tokenize->add_option("--input", t->inputs, "Text files, read in order")
        ->required()
        ->check(CLI::ExistingFile);
    tokenize->add_option("--output", t->output,
                         "Shard path prefix (e.g. datasets/tinyshakespeare/tiny_shakespeare), or "
                         "one shard's path ending in .bin")
        ->required();
    tokenize->add_option("--shard-tokens", t->shard_tokens, "Tokens per train shard")
        ->capture_default_str();
    tokenize->add_option("--val-tokens", t->val_tokens,
                         "Tokens of the validation shard, taken first (0 = none)")
        ->capture_default_str();
    tokenize->add_option("--doc-split", t->doc_split,
                         "What a document is: a whole file, or a block ending in a blank line")
        ->check(CLI::IsMember({"file", "blank-line"}))
        ->capture_default_str();
    tokenize->add_flag("--eot-between-docs", t->eot,
                       "Put <|endoftext|> before every document, as GPT-2 pretraining and llm.c do");
    tokenize->add_flag("--allow-special", t->allow_special,
                       "Read <|endoftext|> in the text as the special token");
    add_tokenizer_option(*tokenize, t->tokenizer);
    tokenize->callback([t] { run_tokenize(*t); });
}

} // namespace train
