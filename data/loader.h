// Batches of B x T inputs and targets streamed from token shards.
//
// The stream is the concatenation of the shards a glob matches, in sorted path order
// (paths ending in ".mask" are masks, not shards: see data/shard.h). Without shuffling,
// batch i of an epoch on rank r of W reads the B*T+1 tokens starting at token
// (i*W + r)*B*T of the stream (inputs: the first B*T; targets: shifted by one), crossing
// shard boundaries as needed; so W ranks of batch B together see exactly what one rank
// of batch W*B sees. An epoch holds (n_tokens - 1) / (W*B*T) batches. (In the terms of
// LoaderState: window k is the B*T+1 tokens from k*B*T, and batch i starts at window i*W.)
//
// With shuffling, the unit is a window of B*T+1 tokens at offset k*B*T inside one shard;
// each epoch permutes the shard order and the windows inside each shard, reproducibly
// from (seed, epoch), and batch i on rank r takes window i*W + r of that order. An epoch
// holds (number of windows) / W batches; shards shorter than B*T+1 contribute none.
//
// Masks: a target whose token has class kNotTarget, or kPromptToken unless
// score_prompts, is -1. Shards whose masks say rows of R tokens (written one example per
// row) need T = R-1, and are read in rows mode: window k is the B rows of R tokens at
// k*B*R, and row b of it, at p = k*B*R + b*R, gives inputs tokens [p, p+T) and targets
// tokens [p+1, p+T], so no token is shared between rows. An epoch then holds
// n_tokens / (W*B*R) batches; shuffled, the windows of B*R tokens lie at offsets k*B*R
// inside one shard. Every shard must be in the same mode (a shard without a mask is a
// packed stream).
//
// For evaluation (partial_last, unshuffled), the epoch also holds the window that the
// stream's end cuts short, and W ranks get ceil(windows / W) batches: what lies past the
// stream's end (tokens, whole rows, or a whole window for a rank left without one) is
// padding, input 0 and target -1, so every token of the shards is scored exactly once.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "data/shard.h"

namespace data {

// The shards a glob matches, in sorted path order, masks left out. Throws
// std::runtime_error if it matches none.
std::vector<std::string> shard_files(const std::string& pattern);

struct LoaderOptions {
    int batch = 4; // B
    int seq = 64;  // T
    int rank = 0;  // r in [0, world)
    int world = 1; // W
    bool shuffle = false;
    uint64_t seed = 1337;
    int vocab = 50257;          // token ids must be below this
    bool score_prompts = false; // masked shards: prompt tokens are targets too
    bool partial_last = false;  // evaluation: the cut-short last window too, padded
};

// Where the loader stands, independent of the rank count: the next batch of epoch
// `epoch` starts at window `window` (rank r reads window + r). A window is B*T tokens
// (plus the one target after them), or B rows of R = T+1 tokens in rows mode; an epoch
// holds windows_per_epoch() of them, and
// ends when fewer than W remain. So a position saved by W ranks restores on W' ranks
// (same B and T), which continue exactly where the W ranks stopped.
struct LoaderState {
    uint64_t epoch = 0;
    uint64_t window = 0;
    bool operator==(const LoaderState&) const = default;
};

class Loader {
public:
    // Throws std::runtime_error if the glob matches nothing, a shard or mask is bad, the
    // shards disagree on rows mode, or they hold less than one batch;
    // std::invalid_argument (base::SettingError) for bad options, and for a seq that is
    // not the rows' R-1.
    Loader(const std::string& pattern, const LoaderOptions& options);

    // Fills inputs (B*T) and targets (B*T) with this rank's next batch and advances,
    // moving to the next epoch after the last batch of one. Throws std::runtime_error
    // naming the shard if a token id is >= vocab.
    void next(int* inputs, int* targets);

    LoaderState state() const { return state_; }
    // Throws base::SettingError("train_data") if the window is not in the epoch; starts the next
    // epoch if fewer than W windows are left from it.
    void restore(const LoaderState& state);

    const LoaderOptions& options() const { return options_; }
    const std::vector<std::string>& files() const { return files_; }
    const std::string& pattern() const { return pattern_; } // the glob given
    size_t num_tokens() const { return n_tokens_; }
    size_t batches_per_epoch() const;
    size_t windows_per_epoch() const { return windows_per_epoch_; }
    // Whether some shard has a mask, and the masks' row length (0: packed streams).
    bool masked() const { return masked_; }
    int row_tokens() const { return row_tokens_; }

private:
    void enter_epoch(uint64_t epoch);
    void end_epoch_if_short();
    size_t window_tokens() const; // B*T, or B*R in rows mode
    size_t windows_in(size_t n_tokens) const;
    void open_masks();
    template <class F> void read_tokens(size_t pos, size_t n, const F& take) const;
    void read_window(size_t pos, int* inputs, int* targets) const;

    LoaderOptions options_;
    std::string pattern_;
    std::vector<std::string> files_;
    std::vector<Shard> shards_;
    std::vector<ShardMask> masks_; // empty for a shard without one
    bool masked_ = false;
    int row_tokens_ = 0;
    std::vector<size_t> starts_; // starts_[s]: stream position of shard s's first token; (S+1)
    size_t n_tokens_ = 0;
    size_t windows_per_epoch_ = 0;
    LoaderState state_;
    // Shuffle mode: the epoch's windows as stream positions, and its shard order (scratch).
    std::vector<size_t> order_;
    std::vector<size_t> shard_order_;
};

} // namespace data
