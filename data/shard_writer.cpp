#include "data/shard_writer.h"

#include <cstdio>

#include "base/error.h"
#include "data/shard.h"
#include "data/tokenizer.h"

namespace data {

ShardWriter::ShardWriter(const ShardWriterOptions& o)
    : o_(o), single_(o.output.ends_with(".bin")), in_val_(!single_ && o.val_tokens > 0) {
    if (o.shard_tokens == 0) throw base::SettingError("shard_tokens", "must be positive");
    if (o.row_tokens < 0 || (o.row_tokens > 0 && !o.masked))
        throw base::SettingError("row_tokens", "must be 0, or positive for masked shards (got " +
                                                   std::to_string(o.row_tokens) + ")");
}

void ShardWriter::add(const std::vector<int>& ids) {
    for (int id : ids) {
        buffer_.push_back(uint16_t(id));
        if (!single_ && buffer_.size() == (in_val_ ? o_.val_tokens : o_.shard_tokens)) flush();
    }
    total_ += ids.size();
}

void ShardWriter::add_example(const Example& example) {
    if (buffer_.empty() && o_.row_tokens == 0) {
        buffer_.push_back(uint16_t(Tokenizer::kEndOfText));
        classes_.push_back(kNotTarget);
        ++total_;
    }
    for (int id : example.tokens) buffer_.push_back(uint16_t(id));
    classes_.insert(classes_.end(), example.classes.begin(), example.classes.end());
    total_ += example.size();
    if (!single_ && buffer_.size() >= (in_val_ ? o_.val_tokens : o_.shard_tokens)) flush();
}

void ShardWriter::finish() {
    if (!buffer_.empty() || (single_ && written_.empty())) flush();
}

void ShardWriter::flush() {
    char name[32];
    std::snprintf(name, sizeof name, "_%s_%06d.bin", in_val_ ? "val" : "train", index_);
    const std::string path = single_ ? o_.output : o_.output + name;
    if (o_.masked)
        write_shard(path, buffer_.data(), buffer_.size(), classes_.data(), o_.row_tokens);
    else
        write_shard(path, buffer_.data(), buffer_.size());
    written_.push_back(path + " (" + std::to_string(buffer_.size()) + " tokens)");
    buffer_.clear();
    classes_.clear();
    in_val_ = false;
    ++index_;
}

std::vector<std::string_view> split_documents(std::string_view text, DocSplit split) {
    if (split == DocSplit::file) return {text};
    std::vector<std::string_view> docs;
    size_t start = 0;
    for (size_t at; (at = text.find("\n\n", start)) != std::string_view::npos; start = at + 2)
        docs.push_back(text.substr(start, at + 2 - start));
    docs.push_back(text.substr(start));
    return docs;
}

} // namespace data
