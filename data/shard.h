// llm.c token shards: int32 header[256] = {20240520, 1, n_tokens, 0...} followed by
// n_tokens uint16 token ids.
//
// A shard at PATH may have a mask, PATH.mask, that says which tokens are targets:
// int32 header[256] = {20261202, 1, n_tokens, row_tokens, 0...} followed by n_tokens
// uint8 classes (kNotTarget, kPromptToken, kScoredToken). row_tokens is 0 for a packed
// stream of examples, or R when the shard holds one example per row of R tokens. A
// shard without a mask is all kScoredToken, as a plain llm.c shard.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace data {

inline constexpr int32_t kShardMagic = 20240520;
inline constexpr int32_t kShardVersion = 1;
inline constexpr size_t kShardHeaderBytes = 256 * sizeof(int32_t);
inline constexpr int32_t kMaskMagic = 20261202;
inline constexpr int32_t kMaskVersion = 1;

// A token's class in a mask, as a target: kNotTarget never is one (padding, a row's first
// token, a packed shard's leading <|endoftext|>); kPromptToken (a prompt's) only when
// prompts are scored; kScoredToken (a completion's or a text's) always.
inline constexpr uint8_t kNotTarget = 0;
inline constexpr uint8_t kPromptToken = 1;
inline constexpr uint8_t kScoredToken = 2;

// PATH.mask, where the mask of the shard at PATH is.
std::string mask_path(const std::string& shard_path);

// A read-only, memory-mapped shard. Opening checks the magic, the version and that
// the file size matches the token count; failures throw std::runtime_error naming the
// file and the problem.
class Shard {
public:
    explicit Shard(const std::string& path);
    ~Shard();
    Shard(Shard&& other) noexcept;
    Shard& operator=(Shard&& other) noexcept;
    Shard(const Shard&) = delete;
    Shard& operator=(const Shard&) = delete;

    const std::string& path() const { return path_; }
    size_t size() const { return n_tokens_; }
    const uint16_t* tokens() const { return tokens_; }
    uint16_t operator[](size_t i) const { return tokens_[i]; }

private:
    std::string path_;
    void* map_ = nullptr;
    size_t map_bytes_ = 0;
    const uint16_t* tokens_ = nullptr;
    size_t n_tokens_ = 0;
};

// A read-only, memory-mapped mask. Opening checks the magic, the version, that the count
// is the shard's n_tokens, that the file size matches it and that every class is at most
// kScoredToken; failures throw base::FileError naming the mask file. A default-made mask
// is empty: no file, every token kScoredToken.
class ShardMask {
public:
    ShardMask() = default;
    ShardMask(const std::string& path, size_t n_tokens);
    ~ShardMask();
    ShardMask(ShardMask&& other) noexcept;
    ShardMask& operator=(ShardMask&& other) noexcept;
    ShardMask(const ShardMask&) = delete;
    ShardMask& operator=(const ShardMask&) = delete;

    bool empty() const { return classes_ == nullptr; }
    const std::string& path() const { return path_; }
    size_t size() const { return n_tokens_; }
    int row_tokens() const { return row_tokens_; } // 0: a packed stream; R: rows of R tokens
    const uint8_t* classes() const { return classes_; }
    uint8_t operator[](size_t i) const { return classes_ ? classes_[i] : kScoredToken; }

private:
    std::string path_;
    void* map_ = nullptr;
    size_t map_bytes_ = 0;
    const uint8_t* classes_ = nullptr;
    size_t n_tokens_ = 0;
    int row_tokens_ = 0;
};

// Writes a shard (to PATH.tmp, then renamed to PATH), and removes a PATH.mask left by an
// earlier shard at PATH, which would not describe this one.
void write_shard(const std::string& path, const uint16_t* tokens, size_t n_tokens);
// Writes a shard and its mask, each atomically: the mask first, so that a shard never
// stands beside a mask of another count without the loader noticing.
void write_shard(const std::string& path, const uint16_t* tokens, size_t n_tokens,
                 const uint8_t* classes, int row_tokens);
// Writes a mask alone at path (the mask's own path: mask_path(shard)), atomically.
void write_mask(const std::string& path, const uint8_t* classes, size_t n_tokens, int row_tokens);

} // namespace data
