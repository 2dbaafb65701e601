#include "data/loader.h"

#include <glob.h>

#include <algorithm>
#include <filesystem>
#include <random>
#include <stdexcept>
#include <string_view>
#include <utility>

#include "base/error.h"

namespace data {

std::vector<std::string> shard_files(const std::string& pattern) {
    glob_t g{};
    const int rc = ::glob(pattern.c_str(), 0, nullptr, &g); // sorted: no GLOB_NOSORT
    std::vector<std::string> paths;
    if (rc == 0)
        for (size_t i = 0; i < g.gl_pathc; ++i)
            if (!std::string_view(g.gl_pathv[i]).ends_with(".mask")) paths.push_back(g.gl_pathv[i]);
    ::globfree(&g);
    if (rc == GLOB_NOMATCH || (rc == 0 && paths.empty()))
        throw std::runtime_error("no token shards match '" + pattern + "'");
    if (rc != 0) throw std::runtime_error("cannot expand the glob '" + pattern + "'");
    return paths;
}

namespace {

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
    if (o.partial_last && o.shuffle)
        throw base::SettingError("shuffle", "a partial last window is read in order only");
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

std::string rows_text(int row_tokens) {
    return row_tokens ? "one example per row of " + std::to_string(row_tokens) + " tokens"
                      : "a packed stream";
}

} // namespace

Loader::Loader(const std::string& pattern, const LoaderOptions& options)
    : options_(options), pattern_(pattern) {
    check_options(options_);
    files_ = shard_files(pattern);
    starts_.push_back(0);
    for (const auto& path : files_) {
        shards_.emplace_back(path);
        n_tokens_ += shards_.back().size();
        starts_.push_back(n_tokens_);
    }
    open_masks();

    const size_t window = window_tokens(), world = size_t(options_.world);
    // A packed window also reads the one target after it; rows hold their last targets.
    const size_t after = row_tokens_ ? 0 : 1;
    const std::string unit = (row_tokens_ ? "B*R = " : "B*T+1 = ") + std::to_string(window + after);
    std::string need;
    if (options_.shuffle) {
        // A window lies inside one shard, at offset k*window.
        size_t windows = 0;
        for (const auto& shard : shards_) windows += windows_in(shard.size());
        order_.reserve(windows);
        shard_order_.reserve(shards_.size());
        windows_per_epoch_ = windows;
        need = "a shuffled batch needs W = " + std::to_string(world) + " windows of " + unit +
               " tokens, each inside one shard, and they hold " + std::to_string(windows);
    } else {
        windows_per_epoch_ = windows_in(n_tokens_);
        need = std::string("one batch needs W*") + (row_tokens_ ? "B*R = " : "B*T+1 = ") +
               std::to_string(world * window + after) + " tokens";
    }
    if (batches_per_epoch() == 0)
        throw std::runtime_error("token shards matching '" + pattern + "' hold " +
                                 std::to_string(n_tokens_) + " tokens, too few: " + need);
    enter_epoch(0);
}

// Each shard's mask, if it has one; all must agree on rows mode, which fixes T.
void Loader::open_masks() {
    for (size_t s = 0; s < shards_.size(); ++s) {
        const std::string path = mask_path(files_[s]);
        std::error_code ec; // an unreadable mask is reported by opening it
        if (std::filesystem::exists(path, ec) || ec) {
            masks_.emplace_back(path, shards_[s].size());
            masked_ = true;
        } else {
            masks_.emplace_back();
        }
    }
    row_tokens_ = masks_[0].row_tokens();
    for (size_t s = 1; s < shards_.size(); ++s)
        if (masks_[s].row_tokens() != row_tokens_)
            throw base::FileError(masks_[s].empty() ? files_[s] : masks_[s].path(),
                                  "holds " + rows_text(masks_[s].row_tokens()) + ", but " +
                                      files_[0] + " holds " + rows_text(row_tokens_) +
                                      " (shards read together must agree)");
    if (row_tokens_ > 0 && options_.seq != row_tokens_ - 1)
        throw base::SettingError("seq", "must be " + std::to_string(row_tokens_ - 1) + " (got " +
                                            std::to_string(options_.seq) + "): the shards hold " +
                                            rows_text(row_tokens_) + ", seq + 1");
}

size_t Loader::window_tokens() const {
    const size_t per_row = row_tokens_ ? size_t(row_tokens_) : size_t(options_.seq);
    return size_t(options_.batch) * per_row;
}

// Windows that start in the first n tokens of a shard (or of the stream) and end in them;
// with partial_last, also one that starts in them and ends past them.
size_t Loader::windows_in(size_t n) const {
    const size_t window = window_tokens();
    const size_t targets = row_tokens_ ? n : (n > 0 ? n - 1 : 0); // what windows cover
    return options_.partial_last ? (targets + window - 1) / window : targets / window;
}

size_t Loader::batches_per_epoch() const {
    const size_t W = size_t(options_.world);
    return options_.partial_last ? (windows_per_epoch_ + W - 1) / W : windows_per_epoch_ / W;
}

void Loader::enter_epoch(uint64_t epoch) {
    state_ = {epoch, 0};
    if (!options_.shuffle) return;
    // Capacities were reserved in the constructor, so this allocates nothing.
    std::mt19937_64 rng(splitmix64(splitmix64(options_.seed) ^ epoch));
    shard_order_.clear();
    for (size_t s = 0; s < shards_.size(); ++s) shard_order_.push_back(s);
    permute(shard_order_.begin(), shard_order_.end(), rng);

    const size_t window = window_tokens();
    order_.clear();
    for (size_t s : shard_order_) {
        const size_t first = order_.size();
        for (size_t k = 0; k < windows_in(shards_[s].size()); ++k)
            order_.push_back(starts_[s] + k * window);
        permute(order_.begin() + ptrdiff_t(first), order_.end(), rng);
    }
}

void Loader::restore(const LoaderState& state) {
    if (state.window >= windows_per_epoch_)
        throw base::SettingError("train_data", pattern_ + ": an epoch of these shards is " +
                                                   std::to_string(windows_per_epoch_) +
                                                   " windows, and the state resumes at window " +
                                                   std::to_string(state.window) +
                                                   ": not the data the run was trained on");
    enter_epoch(state.epoch);
    state_.window = state.window;
    end_epoch_if_short(); // possible when the rank count changed
}

// Fewer than W windows left (partial_last: none): the epoch is over.
void Loader::end_epoch_if_short() {
    const size_t need = options_.partial_last ? 1 : size_t(options_.world);
    if (state_.window + need > windows_per_epoch_) enter_epoch(state_.epoch + 1);
}

void Loader::next(int* inputs, int* targets) {
    const size_t window = size_t(state_.window) + size_t(options_.rank);
    read_window(options_.shuffle ? order_[window] : window * window_tokens(), inputs, targets);
    state_.window += size_t(options_.world);
    end_epoch_if_short();
}

// Calls take(j, token, class) for the n tokens from stream position pos, j in [0, n),
// which may span shards; those past the stream's end are left out.
template <class F> void Loader::read_tokens(size_t pos, size_t n, const F& take) const {
    if (pos >= n_tokens_) return;
    n = std::min(n, n_tokens_ - pos);
    // The last shard starting at or before pos; empty shards share their start with the next.
    size_t s = size_t(std::upper_bound(starts_.begin(), starts_.end(), pos) - starts_.begin()) - 1;
    for (size_t j = 0; j < n; ++s) {
        const Shard& shard = shards_[s];
        const ShardMask& mask = masks_[s];
        for (size_t at = pos + j - starts_[s]; at < shard.size() && j < n; ++at, ++j) {
            const int token = shard[at];
            if (token >= options_.vocab)
                throw base::FileError(shard.path(), "token " + std::to_string(token) +
                                                        " at position " + std::to_string(at) +
                                                        " is >= vocab " +
                                                        std::to_string(options_.vocab));
            take(j, token, mask[at]);
        }
    }
}

// Packed: copies the B*T+1 tokens at stream position `pos`: inputs[j] = token pos+j,
// targets[j] = token pos+j+1, for j in [0, B*T). Rows mode: row b of R = T+1 tokens at
// pos + b*R gives inputs[b*T + j] = its token j and targets[b*T + j] = its token j+1.
// A target whose class is below the lowest scored one is -1. Past the stream's end
// (partial_last only), inputs are 0 and targets -1.
void Loader::read_window(size_t pos, int* inputs, int* targets) const {
    const uint8_t lowest = options_.score_prompts ? kPromptToken : kScoredToken;
    const size_t T = size_t(options_.seq);
    if (options_.partial_last) {
        std::fill_n(inputs, size_t(options_.batch) * T, 0);
        std::fill_n(targets, size_t(options_.batch) * T, -1);
    }
    if (row_tokens_ == 0) {
        const size_t n = size_t(options_.batch) * T + 1;
        read_tokens(pos, n, [&](size_t j, int token, uint8_t c) {
            if (j + 1 < n) inputs[j] = token;
            if (j > 0) targets[j - 1] = c >= lowest ? token : -1;
        });
        return;
    }
    const size_t R = size_t(row_tokens_);
    for (size_t b = 0; b < size_t(options_.batch); ++b) {
        int* in = inputs + b * T;
        int* out = targets + b * T;
        read_tokens(pos + b * R, R, [&](size_t j, int token, uint8_t c) {
            if (j < T) in[j] = token;
            if (j > 0) out[j - 1] = c >= lowest ? token : -1;
        });
    }
}

} // namespace data
