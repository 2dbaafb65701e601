#include "data/shard.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <memory>
#include <stdexcept>
#include <utility>

#include "base/error.h"
#include "base/file.h"

namespace data {

namespace {

// Tokens are mapped raw, and llm.c writes them little-endian.
static_assert(std::endian::native == std::endian::little);

constexpr int32_t kModelMagic = 20240326; // model/io's; data/ does not include model/
constexpr size_t kHeaderInts = kShardHeaderBytes / sizeof(int32_t);

using base::errno_text;

[[noreturn]] void fail(const std::string& path, const std::string& what) {
    throw base::FileError(path, what);
}

// The descriptor is only needed until the file is mapped.
struct Fd {
    int fd;
    ~Fd() {
        if (fd >= 0) ::close(fd);
    }
};

// A whole file mapped read-only once check(header, bytes) has accepted its header.
struct Mapped {
    void* map;
    size_t bytes;
};

template <class Check>
Mapped map_checked(const std::string& path, const std::string& kind, const Check& check) {
    // O_NONBLOCK: a FIFO is refused below instead of blocking the open.
    Fd file{::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK)};
    if (file.fd < 0) fail(path, "cannot open (" + errno_text() + ")");
    struct stat st {};
    if (::fstat(file.fd, &st) != 0) fail(path, "cannot stat (" + errno_text() + ")");
    if (!S_ISREG(st.st_mode)) fail(path, "not a regular file");
    const size_t bytes = size_t(st.st_size);
    if (bytes == 0) fail(path, "empty file (a " + kind + " starts with a 1024-byte header)");
    if (bytes < kShardHeaderBytes)
        fail(path, "too short for a " + kind + " (" + std::to_string(bytes) +
                       " bytes, the header alone is " + std::to_string(kShardHeaderBytes) + ")");

    // Validate before mapping, so a throw here has nothing to unmap.
    int32_t header[kHeaderInts];
    if (::pread(file.fd, header, kShardHeaderBytes, 0) != ssize_t(kShardHeaderBytes))
        fail(path, "cannot read the header (" + errno_text() + ")");
    check(header, bytes);

    void* map = ::mmap(nullptr, bytes, PROT_READ, MAP_PRIVATE, file.fd, 0);
    if (map == MAP_FAILED) fail(path, "cannot mmap (" + errno_text() + ")");
    return {map, bytes};
}

void check_size(const std::string& path, size_t bytes, size_t n_tokens, size_t token_bytes) {
    const size_t expected = kShardHeaderBytes + n_tokens * token_bytes;
    if (bytes != expected)
        fail(path, std::string(bytes < expected ? "truncated" : "trailing bytes") +
                       ": header says " + std::to_string(n_tokens) + " tokens, so expected " +
                       std::to_string(expected) + " bytes, found " + std::to_string(bytes));
}

// Writes header then n items of `size` bytes to path's temporary, renamed to path.
void write_file(const std::string& path, const int32_t* header, const void* items, size_t size,
                size_t n) {
    base::write_atomically(path, [&](const std::string& tmp) {
        std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(tmp.c_str(), "wb"), &std::fclose);
        if (!f) fail(path, "cannot create " + tmp + " (" + errno_text() + ")");
        if (std::fwrite(header, 1, kShardHeaderBytes, f.get()) != kShardHeaderBytes ||
            (n && std::fwrite(items, size, n, f.get()) != n) || std::fclose(f.release()) != 0)
            fail(path, "write failed (" + errno_text() + ")");
    });
}

void check_count(const std::string& path, size_t n_tokens) {
    if (n_tokens > size_t(std::numeric_limits<int32_t>::max()))
        fail(path, std::to_string(n_tokens) + " tokens do not fit one shard's int32 count");
}

} // namespace

std::string mask_path(const std::string& shard_path) {
    return shard_path + ".mask";
}

Shard::Shard(const std::string& path) : path_(path) {
    size_t n_tokens = 0;
    const Mapped m = map_checked(path, "token shard", [&](const int32_t* header, size_t bytes) {
        if (header[0] != kShardMagic) {
            std::string what = "bad magic " + std::to_string(header[0]) + " (expected " +
                               std::to_string(kShardMagic) + " for a token shard)";
            if (header[0] == kModelMagic)
                what += "; this looks like an llm.c model file, not a shard";
            if (header[0] == kMaskMagic) what += "; this looks like a token mask, not a shard";
            fail(path, what);
        }
        if (header[1] != kShardVersion)
            fail(path, "unsupported shard version " + std::to_string(header[1]) + " (expected " +
                           std::to_string(kShardVersion) + ")");
        if (header[2] < 0) fail(path, "negative token count " + std::to_string(header[2]));
        n_tokens = size_t(header[2]);
        check_size(path, bytes, n_tokens, sizeof(uint16_t));
    });
    map_ = m.map;
    map_bytes_ = m.bytes;
    tokens_ =
        reinterpret_cast<const uint16_t*>(static_cast<const char*>(m.map) + kShardHeaderBytes);
    n_tokens_ = n_tokens;
}

Shard::~Shard() {
    if (map_) ::munmap(map_, map_bytes_);
}

Shard::Shard(Shard&& other) noexcept
    : path_(std::move(other.path_)), map_(std::exchange(other.map_, nullptr)),
      map_bytes_(std::exchange(other.map_bytes_, 0)),
      tokens_(std::exchange(other.tokens_, nullptr)), n_tokens_(std::exchange(other.n_tokens_, 0)) {
}

// Swapping hands our old mapping to `other`, whose destructor unmaps it.
Shard& Shard::operator=(Shard&& other) noexcept {
    std::swap(path_, other.path_);
    std::swap(map_, other.map_);
    std::swap(map_bytes_, other.map_bytes_);
    std::swap(tokens_, other.tokens_);
    std::swap(n_tokens_, other.n_tokens_);
    return *this;
}

ShardMask::ShardMask(const std::string& path, size_t n_tokens) : path_(path) {
    const Mapped m = map_checked(path, "token mask", [&](const int32_t* header, size_t bytes) {
        if (header[0] != kMaskMagic) {
            std::string what = "bad magic " + std::to_string(header[0]) + " (expected " +
                               std::to_string(kMaskMagic) + " for a token mask)";
            if (header[0] == kShardMagic) what += "; this looks like a token shard, not a mask";
            fail(path, what);
        }
        if (header[1] != kMaskVersion)
            fail(path, "unsupported mask version " + std::to_string(header[1]) + " (expected " +
                           std::to_string(kMaskVersion) + ")");
        if (header[2] < 0 || size_t(header[2]) != n_tokens)
            fail(path, "counts " + std::to_string(header[2]) + " tokens, but its shard holds " +
                           std::to_string(n_tokens));
        if (header[3] < 0)
            fail(path, "negative row length " + std::to_string(header[3]) +
                           " (0 for a packed stream, or the tokens of one row)");
        if (header[3] > 0 && n_tokens % size_t(header[3]) != 0)
            fail(path, std::to_string(n_tokens) + " tokens are not whole rows of " +
                           std::to_string(header[3]));
        check_size(path, bytes, n_tokens, sizeof(uint8_t));
        row_tokens_ = header[3];
    });
    // Checked before the members take the mapping: a throwing constructor runs no destructor.
    const uint8_t* classes = static_cast<const uint8_t*>(m.map) + kShardHeaderBytes;
    const uint8_t* bad =
        std::find_if(classes, classes + n_tokens, [](uint8_t c) { return c > kScoredToken; });
    if (bad != classes + n_tokens) {
        const std::string what = "class " + std::to_string(*bad) + " at position " +
                                 std::to_string(bad - classes) + " (a class is 0, 1 or 2)";
        ::munmap(m.map, m.bytes);
        fail(path, what);
    }
    map_ = m.map;
    map_bytes_ = m.bytes;
    classes_ = classes;
    n_tokens_ = n_tokens;
}

ShardMask::~ShardMask() {
    if (map_) ::munmap(map_, map_bytes_);
}

ShardMask::ShardMask(ShardMask&& other) noexcept
    : path_(std::move(other.path_)), map_(std::exchange(other.map_, nullptr)),
      map_bytes_(std::exchange(other.map_bytes_, 0)),
      classes_(std::exchange(other.classes_, nullptr)),
      n_tokens_(std::exchange(other.n_tokens_, 0)),
      row_tokens_(std::exchange(other.row_tokens_, 0)) {}

// Swapping hands our old mapping to `other`, whose destructor unmaps it.
ShardMask& ShardMask::operator=(ShardMask&& other) noexcept {
    std::swap(path_, other.path_);
    std::swap(map_, other.map_);
    std::swap(map_bytes_, other.map_bytes_);
    std::swap(classes_, other.classes_);
    std::swap(n_tokens_, other.n_tokens_);
    std::swap(row_tokens_, other.row_tokens_);
    return *this;
}

void write_shard(const std::string& path, const uint16_t* tokens, size_t n_tokens) {
    check_count(path, n_tokens);
    const std::string mask = mask_path(path);
    std::error_code ec;
    std::filesystem::remove(mask, ec); // none is fine
    if (ec) fail(mask, "cannot remove the mask of an earlier shard (" + ec.message() + ")");
    const int32_t header[kHeaderInts] = {kShardMagic, kShardVersion, int32_t(n_tokens)};
    // Written to PATH.tmp and renamed, so readers never see a partial shard.
    write_file(path, header, tokens, sizeof(uint16_t), n_tokens);
}

void write_shard(const std::string& path, const uint16_t* tokens, size_t n_tokens,
                 const uint8_t* classes, int row_tokens) {
    check_count(path, n_tokens);
    write_mask(mask_path(path), classes, n_tokens, row_tokens);
    const int32_t header[kHeaderInts] = {kShardMagic, kShardVersion, int32_t(n_tokens)};
    write_file(path, header, tokens, sizeof(uint16_t), n_tokens);
}

void write_mask(const std::string& path, const uint8_t* classes, size_t n_tokens, int row_tokens) {
    check_count(path, n_tokens);
    if (row_tokens < 0 || (row_tokens > 0 && n_tokens % size_t(row_tokens) != 0))
        fail(path, std::to_string(n_tokens) + " tokens are not whole rows of " +
                       std::to_string(row_tokens));
    for (size_t i = 0; i < n_tokens; ++i)
        if (classes[i] > kScoredToken)
            fail(path, "class " + std::to_string(classes[i]) + " at position " + std::to_string(i) +
                           " (a class is 0, 1 or 2)");
    const int32_t header[kHeaderInts] = {kMaskMagic, kMaskVersion, int32_t(n_tokens), row_tokens};
    write_file(path, header, classes, sizeof(uint8_t), n_tokens);
}

} // namespace data
