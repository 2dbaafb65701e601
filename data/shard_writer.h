// Tokens to llm.c shards as llm.c's data scripts name and fill them: the first
// val_tokens go to PREFIX_val_000000.bin, the rest to PREFIX_train_000001.bin, ... of
// shard_tokens each; an output ending in ".bin" is one shard holding every token.
//
// All or nothing: each shard (and mask) is written under a staged name, PATH.partial
// (PATH.partial.mask), as it fills; finish() renames them all into place, and a writer
// destroyed before that removes them, so a run that fails half-way leaves the shards of an
// earlier run with the same names as they were.
//
// Masked (examples with token classes, see data/shard.h): each shard also gets its mask,
// and ends only after a whole example, once it holds at least val_tokens (the validation
// shard) or shard_tokens; a packed shard (row_tokens 0) starts with one <|endoftext|> of
// class kNotTarget, so that its first example is predicted after <|endoftext|>.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "data/examples.h"

namespace data {

struct ShardWriterOptions {
    std::string output;                // prefix, or one shard's path ending in .bin
    size_t shard_tokens = 100'000'000; // per train shard
    size_t val_tokens = 0;             // of the validation shard, taken first (0 = none)
    bool masked = false;               // examples with classes: add_example, and masks
    int row_tokens = 0;                // masked: 0 = packed examples, R = rows of R tokens
};

class ShardWriter {
public:
    // Throws base::SettingError("shard_tokens") if shard_tokens is 0,
    // base::SettingError("val_tokens") if it is set for one .bin output, or
    // base::SettingError("row_tokens") if it is negative or set without masked.
    explicit ShardWriter(const ShardWriterOptions& options);
    ~ShardWriter(); // removes the staged shards if finish() did not run
    ShardWriter(const ShardWriter&) = delete;
    ShardWriter& operator=(const ShardWriter&) = delete;

    // Appends token ids (each < 65536), writing every shard that fills up. Not masked.
    void add(const std::vector<int>& ids);
    // Appends a whole example (or, with row_tokens, its whole rows), then writes the
    // shard if it is full. Masked only.
    void add_example(const Example& example);
    // Writes what is left (and, for one .bin output, an empty shard if nothing came), then
    // moves every staged shard to its name (a shard written without a mask also loses an
    // earlier run's mask of that name).
    void finish();

    size_t total() const { return total_; }
    // "PATH (N tokens)" for every shard written, in order.
    const std::vector<std::string>& written() const { return written_; }
    // Shards of the same prefix, numbered past the last one written, that an earlier run
    // left (a glob over PREFIX_train_*.bin would read them too). After finish().
    std::vector<std::string> stale() const;

private:
    void flush();

    static std::string staged(const std::string& path) { return path + ".partial"; }

    ShardWriterOptions o_;
    bool single_, in_val_;
    int index_ = 0;
    std::vector<uint16_t> buffer_;
    std::vector<uint8_t> classes_; // masked: one per token of buffer_
    std::vector<std::string> written_;
    std::vector<std::string> paths_; // of the shards written, staged until finish()
    bool finished_ = false;
    size_t total_ = 0;
};

// What one document is in a text file, as llm.c's data scripts split them: the whole
// file, or each block ending in a blank line (as text.replace("\n\n",
// "\n\n<|endoftext|>") cuts it).
enum class DocSplit { file, blank_line };
std::vector<std::string_view> split_documents(std::string_view text, DocSplit split);

} // namespace data
