#include "data/shard_writer.h"

#include <cstdio>
#include <filesystem>

#include "base/error.h"
#include "data/shard.h"
#include "data/tokenizer.h"

namespace data {

namespace fs = std::filesystem;

namespace {

// "_val_000000.bin", "_train_000001.bin", ...
std::string shard_suffix(bool val, int index) {
    char name[32];
    std::snprintf(name, sizeof name, "_%s_%06d.bin", val ? "val" : "train", index);
    return name;
}

} // namespace

ShardWriter::ShardWriter(const ShardWriterOptions& o)
    : o_(o), single_(o.output.ends_with(".bin")), in_val_(!single_ && o.val_tokens > 0) {
    if (o.shard_tokens == 0) throw base::SettingError("shard_tokens", "must be positive");
    if (single_ && o.val_tokens > 0)
        throw base::SettingError("val_tokens", "needs a prefix as the output: one .bin shard "
                                               "holds every token");
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

ShardWriter::~ShardWriter() {
    if (finished_) return;
    std::error_code ec; // best effort: this runs while an error goes up
    for (const auto& path : paths_) {
        fs::remove(staged(path), ec);
        fs::remove(mask_path(staged(path)), ec);
    }
}

void ShardWriter::finish() {
    if (!buffer_.empty() || (single_ && written_.empty())) flush();
    // What would stop a rename, found before the first one.
    for (const auto& path : paths_) {
        std::error_code ec;
        for (const std::string& target : {path, mask_path(path)})
            if (fs::is_directory(target, ec))
                throw base::FileError(target, "is a folder, where the new shard goes");
    }
    for (const auto& path : paths_) {
        std::error_code ec;
        if (o_.masked)
            fs::rename(mask_path(staged(path)), mask_path(path), ec);
        else
            fs::remove(mask_path(path), ec); // none is fine
        if (!ec) fs::rename(staged(path), path, ec);
        if (ec)
            throw base::FileError(path,
                                  "cannot move the new shard into place (" + ec.message() + ")");
    }
    finished_ = true;
}

std::vector<std::string> ShardWriter::stale() const {
    std::vector<std::string> found;
    if (single_) return found;
    std::error_code ec;
    const std::string val = o_.output + shard_suffix(true, 0);
    if (index_ == 0 && fs::exists(val, ec)) found.push_back(val);
    for (int i = index_; found.size() < 1000; ++i) {
        const std::string path = o_.output + shard_suffix(false, i);
        if (fs::exists(path, ec))
            found.push_back(path);
        else if (i > 0) // train shards start at 0 without a val shard, at 1 with one
            break;
    }
    return found;
}

void ShardWriter::flush() {
    const std::string path = single_ ? o_.output : o_.output + shard_suffix(in_val_, index_);
    paths_.push_back(path);
    if (o_.masked)
        write_shard(staged(path), buffer_.data(), buffer_.size(), classes_.data(), o_.row_tokens);
    else
        write_shard(staged(path), buffer_.data(), buffer_.size());
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
