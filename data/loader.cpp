#include "data/loader.h"

#include <glob.h>

#include <algorithm>
#include <random>
#include <stdexcept>
#include <utility>

#include "base/error.h"

namespace data {

namespace {

std::vector<std::string> expand_glob(const std::string& pattern) {
    glob_t g{};
    const int rc = ::glob(pattern.c_str(), 0, nullptr, &g); // sorted: no GLOB_NOSORT
    std::vector<std::string> paths;
    if (rc == 0) paths.assign(g.gl_pathv, g.gl_pathv + g.gl_pathc);
    ::globfree(&g);
    if (rc == GLOB_NOMATCH || (rc == 0 && paths.empty()))
        throw std::runtime_error("no token shards match '" + pattern + "'");
    if (rc != 0) throw std::runtime_error("cannot expand the glob '" + pattern + "'");
    return paths;
}

void check_options(const LoaderOptions& o) {
    auto require = [](bool ok, const char* setting, const std::string& what, int got) {
        if (!ok) throw base::SettingError(setting, what + " (got " + std::to_string(got) + ")");
    };
    require(o.batch >= 1, "batch", "must be >= 1", o.batch);
    require(o.seq >= 1, "seq", "must be >= 1", o.seq);
    require(o.world >= 1, "world", "must be >= 1", o.world);
    require(o.rank >= 0 && o.rank < o.world, "rank",
            "must be in [0, world = " + std::to_string(o.world) + ")", o.rank);
    require(o.vocab >= 1, "vocab", "must be >= 1", o.vocab);
}

uint64_t splitmix64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

// Uniform in [0, n), unbiased: rejects the 2^64 mod n lowest draws. Unlike
// std::uniform_int_distribution, the result is the same on every standard library.
uint64_t below(std::mt19937_64& rng, uint64_t n) {
    const uint64_t min = (0 - n) % n;
    uint64_t x;
    do x = rng();
    while (x < min);
    return x % n;
}

// Fisher-Yates; std::shuffle's draws are implementation-defined.
template <class It> void permute(It first, It last, std::mt19937_64& rng) {
    for (auto n = uint64_t(last - first); n > 1; --n) std::swap(first[n - 1], first[below(rng, n)]);
}

} // namespace

Loader::Loader(const std::string& pattern, const LoaderOptions& options) : options_(options) {
    check_options(options_);
    files_ = expand_glob(pattern);
    starts_.push_back(0);
    for (const auto& path : files_) {
        shards_.emplace_back(path);
        n_tokens_ += shards_.back().size();
        starts_.push_back(n_tokens_);
    }

    const size_t bt = size_t(options_.batch) * size_t(options_.seq);
    const size_t world = size_t(options_.world);
    std::string need;
    if (options_.shuffle) {
        // A window of B*T+1 tokens lies inside one shard, at offset k*B*T.
        size_t windows = 0;
        for (const auto& shard : shards_) windows += shard.size() > 0 ? (shard.size() - 1) / bt : 0;
        order_.reserve(windows);
        shard_order_.reserve(shards_.size());
        windows_per_epoch_ = windows;
        need = "a shuffled batch needs W = " + std::to_string(world) +
               " windows of B*T+1 = " + std::to_string(bt + 1) +
               " tokens, each inside one shard, and they hold " + std::to_string(windows);
    } else {
        windows_per_epoch_ = n_tokens_ > 0 ? (n_tokens_ - 1) / bt : 0;
        need = "one batch needs W*B*T+1 = " + std::to_string(world * bt + 1) + " tokens";
    }
    if (batches_per_epoch() == 0)
        throw std::runtime_error("token shards matching '" + pattern + "' hold " +
                                 std::to_string(n_tokens_) + " tokens, too few: " + need);
    enter_epoch(0);
}

void Loader::enter_epoch(uint64_t epoch) {
    state_ = {epoch, 0};
    if (!options_.shuffle) return;
    // Capacities were reserved in the constructor, so this allocates nothing.
    std::mt19937_64 rng(splitmix64(splitmix64(options_.seed) ^ epoch));
    shard_order_.clear();
    for (size_t s = 0; s < shards_.size(); ++s) shard_order_.push_back(s);
    permute(shard_order_.begin(), shard_order_.end(), rng);

    const size_t bt = size_t(options_.batch) * size_t(options_.seq);
    order_.clear();
    for (size_t s : shard_order_) {
        const size_t size = shards_[s].size(), first = order_.size();
        for (size_t k = 0; size > 0 && k < (size - 1) / bt; ++k)
            order_.push_back(starts_[s] + k * bt);
        permute(order_.begin() + ptrdiff_t(first), order_.end(), rng);
    }
}

void Loader::restore(const LoaderState& state) {
    if (state.window >= windows_per_epoch_)
        throw base::SettingError("window", "cannot restore window " + std::to_string(state.window) +
                                               " of an epoch of " +
                                               std::to_string(windows_per_epoch_) + " windows");
    enter_epoch(state.epoch);
    state_.window = state.window;
    end_epoch_if_short(); // possible when the rank count changed
}

// Fewer than W windows left: the epoch is over.
void Loader::end_epoch_if_short() {
    if (state_.window + size_t(options_.world) > windows_per_epoch_) enter_epoch(state_.epoch + 1);
}

void Loader::next(int* inputs, int* targets) {
    const size_t window = size_t(state_.window) + size_t(options_.rank);
    const size_t bt = size_t(options_.batch) * size_t(options_.seq);
    read_window(options_.shuffle ? order_[window] : window * bt, inputs, targets);
    state_.window += size_t(options_.world);
    end_epoch_if_short();
}

// Copies the B*T+1 tokens at stream position `pos`, which may span shards:
// inputs[j] = token pos+j, targets[j] = token pos+j+1, for j in [0, B*T).
void Loader::read_window(size_t pos, int* inputs, int* targets) const {
    const size_t n = size_t(options_.batch) * size_t(options_.seq) + 1;
    // The last shard starting at or before pos; empty shards share their start with the next.
    size_t s = size_t(std::upper_bound(starts_.begin(), starts_.end(), pos) - starts_.begin()) - 1;
    for (size_t j = 0; j < n; ++s) {
        const Shard& shard = shards_[s];
        for (size_t at = pos + j - starts_[s]; at < shard.size() && j < n; ++at, ++j) {
            const int token = shard[at];
            if (token >= options_.vocab)
                throw base::FileError(shard.path(), "token " + std::to_string(token) +
                                                        " at position " + std::to_string(at) +
                                                        " is >= vocab " +
                                                        std::to_string(options_.vocab));
            if (j + 1 < n) inputs[j] = token;
            if (j > 0) targets[j - 1] = token;
        }
    }
}

} // namespace data
