// llm.c token shards: int32 header[256] = {20240520, 1, n_tokens, 0...} followed by
// n_tokens uint16 token ids.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace data {

inline constexpr int32_t kShardMagic = 20240520;
inline constexpr int32_t kShardVersion = 1;
inline constexpr size_t kShardHeaderBytes = 256 * sizeof(int32_t);

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

// Writes a shard (to PATH.tmp, then renamed to PATH).
void write_shard(const std::string& path, const uint16_t* tokens, size_t n_tokens);

} // namespace data
