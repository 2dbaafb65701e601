#include "data/shard.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

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

} // namespace

Shard::Shard(const std::string& path) : path_(path) {
    // O_NONBLOCK: a FIFO is refused below instead of blocking the open.
    Fd file{::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK)};
    if (file.fd < 0) fail(path, "cannot open (" + errno_text() + ")");
    struct stat st {};
    if (::fstat(file.fd, &st) != 0) fail(path, "cannot stat (" + errno_text() + ")");
    if (!S_ISREG(st.st_mode)) fail(path, "not a regular file");
    const size_t bytes = size_t(st.st_size);
    if (bytes == 0) fail(path, "empty file (a token shard starts with a 1024-byte header)");
    if (bytes < kShardHeaderBytes)
        fail(path, "too short for a token shard (" + std::to_string(bytes) +
                       " bytes, the header alone is " + std::to_string(kShardHeaderBytes) + ")");

    // Validate before mapping, so a throw here has nothing to unmap.
    int32_t header[kHeaderInts];
    if (::pread(file.fd, header, kShardHeaderBytes, 0) != ssize_t(kShardHeaderBytes))
        fail(path, "cannot read the header (" + errno_text() + ")");
    if (header[0] != kShardMagic) {
        std::string what = "bad magic " + std::to_string(header[0]) + " (expected " +
                           std::to_string(kShardMagic) + " for a token shard)";
        if (header[0] == kModelMagic) what += "; this looks like an llm.c model file, not a shard";
        fail(path, what);
    }
    if (header[1] != kShardVersion)
        fail(path, "unsupported shard version " + std::to_string(header[1]) + " (expected " +
                       std::to_string(kShardVersion) + ")");
    if (header[2] < 0) fail(path, "negative token count " + std::to_string(header[2]));
    const size_t n_tokens = size_t(header[2]);
    const size_t expected = kShardHeaderBytes + n_tokens * sizeof(uint16_t);
    if (bytes != expected)
        fail(path, std::string(bytes < expected ? "truncated" : "trailing bytes") +
                       ": header says " + std::to_string(n_tokens) + " tokens, so expected " +
                       std::to_string(expected) + " bytes, found " + std::to_string(bytes));

    void* map = ::mmap(nullptr, bytes, PROT_READ, MAP_PRIVATE, file.fd, 0);
    if (map == MAP_FAILED) fail(path, "cannot mmap (" + errno_text() + ")");
    map_ = map;
    map_bytes_ = bytes;
    tokens_ = reinterpret_cast<const uint16_t*>(static_cast<const char*>(map) + kShardHeaderBytes);
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

void write_shard(const std::string& path, const uint16_t* tokens, size_t n_tokens) {
    if (n_tokens > size_t(std::numeric_limits<int32_t>::max()))
        fail(path, std::to_string(n_tokens) + " tokens do not fit one shard's int32 count");
    const int32_t header[kHeaderInts] = {kShardMagic, kShardVersion, int32_t(n_tokens)};

    // Written to PATH.tmp and renamed, so readers never see a partial shard.
    base::write_atomically(path, [&](const std::string& tmp) {
        std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(tmp.c_str(), "wb"), &std::fclose);
        if (!f) fail(path, "cannot create " + tmp + " (" + errno_text() + ")");
        if (std::fwrite(header, 1, kShardHeaderBytes, f.get()) != kShardHeaderBytes ||
            (n_tokens && std::fwrite(tokens, sizeof(uint16_t), n_tokens, f.get()) != n_tokens) ||
            std::fclose(f.release()) != 0)
            fail(path, "write failed (" + errno_text() + ")");
    });
}

} // namespace data
