// gpt2 encode / decode / tokenize: text to GPT-2 token ids, ids to bytes, text files or
// JSON Lines examples to llm.c token shards (with masks for the examples).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <limits>

#include "base/error.h"
#include "base/file.h"
#include "data/examples.h"
#include "data/shard.h"
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
    const std::vector<int> ids =
        parse_token_ids(read_input(o.input), tok.vocab_size(),
                        [&](const std::string& problem) { throw base::FileError(where, problem); });
    const std::string bytes = tok.decode(ids);
    std::fwrite(bytes.data(), 1, bytes.size(), stdout);
}

enum class Format { automatic, text, jsonl };

struct TokenizeOptions {
    std::vector<std::string> inputs;
    std::string tokenizer;
    data::ShardWriterOptions shards;
    data::DocSplit doc_split = data::DocSplit::file;
    bool eot = false, allow_special = false;
    Format format = Format::automatic;
    // JSON Lines only: packed or one example per row of seq+1 tokens.
    bool pack = true, skip_bad = false;
    int seq = 0; // 0: not given
    data::LongExamples long_examples = data::LongExamples::split;
    // The settings given on the command line that only one format reads.
    std::vector<std::string> text_only, jsonl_only;
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

// Whether writing shards at `output` (a prefix, or one .bin path) could replace `input`,
// a shard or a shard's mask.
bool is_output_of(const std::string& input, const std::string& output) {
    const fs::path out(output), in(input);
    if (out.extension() == ".bin")
        return same_file(input, output) || same_file(input, data::mask_path(output));
    const std::string name = in.filename().string(), prefix = out.filename().string() + "_";
    const fs::path dir = out.parent_path().empty() ? "." : out.parent_path();
    const fs::path in_dir = in.parent_path().empty() ? "." : in.parent_path();
    return same_file(dir.string(), in_dir.string()) && name.starts_with(prefix) &&
           (in.extension() == ".bin" || name.ends_with(data::mask_path(".bin")));
}

// Whether the inputs are JSON Lines: by --format, or all by their .jsonl extension.
bool reads_jsonl(const TokenizeOptions& o) {
    if (o.format != Format::automatic) return o.format == Format::jsonl;
    auto jsonl = [](const std::string& path) { return fs::path(path).extension() == ".jsonl"; };
    const auto first_jsonl = std::find_if(o.inputs.begin(), o.inputs.end(), jsonl);
    const auto first_text = std::find_if_not(o.inputs.begin(), o.inputs.end(), jsonl);
    if (first_jsonl != o.inputs.end() && first_text != o.inputs.end())
        throw base::SettingError("input", "mixes JSON Lines (" + *first_jsonl + ") and text (" +
                                              *first_text + "); tokenize each in its own run");
    return first_jsonl != o.inputs.end();
}

// The settings that the format of the inputs leaves unread are refused, as are --seq
// without --pack off and the other way round, and --long without --pack off.
void check_format_settings(const TokenizeOptions& o, bool jsonl) {
    const auto& unread = jsonl ? o.text_only : o.jsonl_only;
    if (!unread.empty())
        throw base::SettingError(
            unread[0], std::string("applies to ") + (jsonl ? "text" : "JSON Lines") +
                           " input only, and the inputs are " + (jsonl ? "JSON Lines" : "text"));
    if (jsonl && !o.pack && o.seq == 0)
        throw base::SettingError("seq", "is needed with --pack off: each row holds --seq + 1 "
                                        "tokens, one example's");
    if (jsonl && o.pack && o.seq != 0)
        throw base::SettingError("seq", "applies with --pack off only (packed examples run on)");
    if (o.seq == std::numeric_limits<int>::max())
        throw base::SettingError("seq", "is too large: rows of --seq + 1 tokens must be counted "
                                        "in an int32 mask header");
    const bool long_given = std::ranges::count(o.jsonl_only, "long") > 0;
    if (jsonl && o.pack && long_given)
        throw base::SettingError("long", "applies with --pack off only (packed examples run on)");
}

// The lines of a file without their line breaks ("\n" or "\r\n"), numbered from 1.
template <class F> void for_each_line(std::string_view text, const F& f) {
    size_t number = 0;
    for (size_t start = 0; start < text.size();) {
        size_t end = text.find('\n', start);
        if (end == std::string_view::npos) end = text.size();
        std::string_view line = text.substr(start, end - start);
        if (line.ends_with('\r')) line.remove_suffix(1);
        f(line, ++number, end + 1 - start);
        start = end + 1;
    }
}

bool is_blank(std::string_view line) {
    return line.find_first_not_of(" \t\r\f\v") == std::string_view::npos;
}

// What tokenizing examples counted, for the summary.
struct ExampleCounts {
    size_t examples = 0, scored = 0, prompt = 0, lines = 0, bad = 0;
    size_t rows = 0, padding = 0, split = 0, dropped = 0;
};

// Shards under a prefix are written only if there is something to write (one .bin
// output is written even empty, as asked).
void require_tokens(const TokenizeOptions& o, const data::ShardWriter& shards) {
    if (shards.total() > 0 || o.shards.output.ends_with(".bin")) return;
    throw base::FileError(o.inputs.size() == 1 ? o.inputs[0] : "the --input files",
                          "no tokens to write (no text, or every example left out by --long "
                          "drop)");
}

// The shards written, and a warning for each one of an earlier run that a glob over the
// prefix would still find.
void print_written(const data::ShardWriter& shards) {
    for (const auto& w : shards.written()) std::printf("wrote %s\n", w.c_str());
    for (const auto& path : shards.stale())
        std::fprintf(stderr,
                     "warning: %s is an earlier run's shard, not replaced by this one: remove it "
                     "if the shards of this prefix are read by a glob\n",
                     path.c_str());
}

void tokenize_jsonl(const TokenizeOptions& o, data::Tokenizer& tok, data::ShardWriter& shards,
                    size_t total_bytes) {
    TokenizeProgress progress(total_bytes);
    const int row_tokens = o.pack ? 0 : o.seq + 1;
    ExampleCounts n;
    data::Example example, rows;
    size_t done_bytes = 0;
    for (const auto& path : o.inputs) {
        const std::string text = base::read_file(path);
        for_each_line(text, [&](std::string_view line, size_t number, size_t bytes) {
            done_bytes += bytes;
            if (is_blank(line)) return;
            ++n.lines;
            data::ExampleLine parsed;
            try {
                parsed = data::parse_example(line, path, number);
            } catch (const base::FileError&) {
                if (!o.skip_bad) throw;
                ++n.bad;
                return;
            }
            data::encode_example(tok, parsed, o.allow_special, example);
            const data::Example* laid_out = &example;
            if (row_tokens) {
                rows.clear();
                const auto added = data::append_rows(example, row_tokens, o.long_examples, rows);
                n.rows += added.rows;
                n.padding += added.padding;
                n.split += added.split;
                n.dropped += added.dropped;
                if (added.dropped) return;
                laid_out = &rows;
            }
            ++n.examples;
            for (uint8_t c : laid_out->classes) {
                n.scored += c == data::kScoredToken;
                n.prompt += c == data::kPromptToken;
            }
            shards.add_example(*laid_out);
            progress(done_bytes, shards.total());
        });
    }
    if (n.lines > 0 && n.bad == n.lines)
        throw base::FileError(o.inputs.size() == 1 ? o.inputs[0] : "the --input files",
                              "every one of the " + std::to_string(n.lines) +
                                  " lines is bad; none is an example");
    require_tokens(o, shards);
    shards.finish();
    progress.finish();
    const double s = progress.seconds();
    print_written(shards);
    std::printf("%zu files, %zu examples, %zu bytes -> %zu tokens (%zu scored, %zu prompt) in "
                "%zu shards, %.2f s (%.0f tokens/s, %.2f MB/s)\n",
                o.inputs.size(), n.examples, total_bytes, shards.total(), n.scored, n.prompt,
                shards.written().size(), s, shards.total() / s, total_bytes / 1e6 / s);
    if (row_tokens)
        std::printf("rows of %d tokens: %zu rows, %zu padding tokens; %zu examples split, %zu "
                    "dropped\n",
                    row_tokens, n.rows, n.padding, n.split, n.dropped);
    if (o.skip_bad) std::printf("%zu bad lines skipped\n", n.bad);
}

void run_tokenize(const TokenizeOptions& options) {
    TokenizeOptions o = options;
    const bool jsonl = reads_jsonl(o);
    check_format_settings(o, jsonl);
    o.shards.masked = jsonl;
    o.shards.row_tokens = jsonl && !o.pack ? o.seq + 1 : 0;
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
    if (jsonl) return tokenize_jsonl(o, tok, shards, total_bytes);
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
    require_tokens(o, shards);
    shards.finish();
    progress.finish();
    const double s = progress.seconds();
    print_written(shards);
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
        "tokenize", "Text files or JSON Lines examples to llm.c token shards: "
                    "PREFIX_val_000000.bin holds the first --val-tokens tokens, "
                    "PREFIX_train_000001.bin... the rest; examples also get a PATH.mask each");
    cmd->add_option("--input", t->inputs, "Text or JSON Lines files, read in order")->required();
    add_choice(*cmd, "--format", t->format,
               {{"auto", Format::automatic}, {"text", Format::text}, {"jsonl", Format::jsonl}},
               "How to read the inputs: auto is JSON Lines for .jsonl files, text for others");
    cmd->add_option("--output", t->shards.output,
                    "Shard path prefix (e.g. datasets/tinyshakespeare/tiny_shakespeare), or one "
                    "shard's path ending in .bin")
        ->required();
    cmd->add_option("--shard-tokens", t->shards.shard_tokens, "Tokens per train shard")
        ->check(at_least(1))
        ->capture_default_str();
    cmd->add_option("--val-tokens", t->shards.val_tokens,
                    "Tokens of the validation shard, taken first (0 = none; needs a prefix "
                    "as --output)")
        ->check(at_least(0))
        ->capture_default_str();
    add_choice(*cmd, "--doc-split", t->doc_split,
               {{"file", DocSplit::file}, {"blank-line", DocSplit::blank_line}},
               "What a document is: a whole file, or a block ending in a blank line");
    cmd->add_flag("--eot-between-docs", t->eot,
                  "Put <|endoftext|> before every document, as GPT-2 pretraining and llm.c do");
    cmd->add_flag("--allow-special", t->allow_special,
                  "Read <|endoftext|> in the text as the special token");
    add_on_off(*cmd, "--pack", t->pack,
               "JSON Lines: examples one after another (on), or one example per row of --seq "
               "+ 1 tokens, padded (off)");
    cmd->add_option("--seq", t->seq, "JSON Lines with --pack off: the T the rows are for")
        ->check(at_least(1));
    add_choice(*cmd, "--long", t->long_examples,
               {{"split", data::LongExamples::split}, {"drop", data::LongExamples::drop}},
               "JSON Lines with --pack off: an example longer than --seq tokens goes on in "
               "more rows, or is left out");
    cmd->add_flag("--skip-bad", t->skip_bad,
                  "JSON Lines: count and skip lines that are not examples instead of stopping");
    add_tokenizer_option(*cmd, t->tokenizer);
    cmd->callback([t, cmd] {
        auto given = [cmd](std::vector<std::string> names) {
            std::vector<std::string> settings;
            for (auto name : names)
                if (cmd->count("--" + name) > 0) {
                    std::replace(name.begin(), name.end(), '-', '_');
                    settings.push_back(name);
                }
            return settings;
        };
        t->text_only = given({"doc-split", "eot-between-docs"});
        t->jsonl_only = given({"pack", "seq", "long", "skip-bad"});
        run_tokenize(*t);
    });
}

} // namespace

void add_tokens(CLI::App& app) {
    add_encode_decode(app);
    add_tokenize(app);
}

} // namespace cli
