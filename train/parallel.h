// Data-parallel optimizer steps: every rank has run forward and backward on its own
// micro-batches; this averages the gradients over ranks (all at once, or in buckets
// that overlap the backward pass, or as ZeRO-1's reduce-scatter), takes the global
// norm, clips, and applies AdamW. With one rank it is the plain single-process step.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <vector>

#include "model/gpt2.h"
#include "optim/optim.h"
#include "train/communicator.h"

namespace train {

struct ParallelOptions {
    // -1 (auto): 1 where all ranks run on one machine, else 0.
    // 0: every rank holds all of AdamW's moments and updates every parameter.
    // 1: ZeRO-1: rank r holds the moments of its 1/W of the flat buffer; gradients are
    //    reduce-scattered, each rank updates its part, parameters are all-gathered (or,
    //    on one machine, shared: see broadcast_params()).
    int zero = -1;
    // Without ZeRO: start reducing each block's gradients as soon as backward has
    // finished it (MPI_Iallreduce per tensor), instead of one reduction afterwards.
    // Applies where the communicator reduces in the background (one rank per machine);
    // through shared memory one reduction after backward is faster.
    bool overlap = true;
};

class DataParallel {
public:
    // Installs a backward hook on gpt (removed by the destructor). Allocates all it needs.
    DataParallel(Communicator& comm, model::GPT2<float>& gpt, const optim::AdamWConfig& config,
                 const ParallelOptions& options);
    ~DataParallel();
    DataParallel(const DataParallel&) = delete;
    DataParallel& operator=(const DataParallel&) = delete;

    // The root's parameters to every rank (collective). With every rank on one machine,
    // the first call moves the gradients into memory the ranks share (where there is
    // room; see Communicator::shared_floats), so that their reduction reads them in
    // place; under ZeRO-1 the parameters too: each rank then updates its part in place
    // and no all-gather follows. Until destruction, write the parameters only through this class or
    // on the root before a call. The destructor gives the model its own copies back (if
    // memory allows; else the model must not outlive the communicator).
    void broadcast_params();

    // Call just before the backward pass of a step's last micro-batch; with overlap on
    // (and several ranks, no ZeRO) that backward then starts the reductions.
    void arm() { armed_ = overlapping_; }

    // After every micro-batch's backward (gpt's grads hold their sum on each rank):
    // averages over ranks and micro-batches, times rescale (for passes whose losses were
    // divided by more than they scored), clips that gradient to grad_clip (0 = off) and
    // applies AdamW with lr. Returns its norm before clipping, the same on every rank; if
    // it is not finite, nothing is updated.
    double step(float lr, double grad_clip, int micro_batches, double rescale = 1.0);
    // step() in two halves, for a caller that decides between them whether to update:
    // reduce() sums the gradients over ranks and returns the norm of their mean times
    // rescale; update() then clips and applies AdamW. A step without update() leaves
    // weights, moments and Adam's t as they were.
    double reduce(int micro_batches, double rescale = 1.0);
    void update(float lr, double grad_clip);

    // Seconds this rank spent in communication calls during the last step() (and the
    // reductions the backward hook started before it).
    double comm_seconds() const { return comm_seconds_; }
    // The part of comm_seconds() spent inside backward (starting the bucket reductions).
    double comm_seconds_in_backward() const { return hook_seconds_; }

    // How gradients are reduced, for logs: "ZeRO-1 (...)", "gradients all-reduced in
    // buckets during backward" or "gradients all-reduced after backward".
    const char* describe() const;
    int zero() const { return options_.zero; } // the ZeRO stage in use: 0 or 1

    // This rank's part of the flat buffer whose moments it holds: [begin, end).
    size_t begin() const { return adam_.begin(); }
    size_t end() const { return adam_.end(); }
    const optim::AdamW& adam() const { return adam_; }

    // Checkpoints (collective). full_moments: on the root, views of the moments of
    // every parameter (its own, or gathered into m_buf and v_buf under ZeRO-1); empty
    // elsewhere. scatter_moments: the root's full m and v to every rank's part.
    std::array<std::span<const float>, 2> full_moments(std::vector<float>& m_buf,
                                                       std::vector<float>& v_buf);
    void scatter_moments(const float* m, const float* v, int64_t t);

private:
    void on_block_done(int layer);

    struct Range {
        size_t offset, size;
    };
    Communicator& comm_;
    model::GPT2<float>& gpt_;
    ParallelOptions options_;
    std::vector<size_t> offsets_; // partition of the flat buffer: {0, n} without ZeRO
    optim::AdamW adam_;
    bool overlapping_ = false, armed_ = false;
    bool placed_ = false;       // broadcast_params() has chosen where the buffers live
    bool shared_ = false;       // the parameters live in the communicator's shared memory
    bool shared_grads_ = false; // each rank's gradients do
    std::vector<std::vector<Range>> buckets_; // [layer + 1]: tensors of block layer; [0]: the rest
    double comm_seconds_ = 0, hook_seconds_ = 0;
    double mean_ = 1, norm_ = 0; // reduce()'s averaging factor and norm, for update()
};

// The ZeRO-1 partition of n elements over `ranks`: ranks+1 offsets, parts as equal as
// 16-element (64-byte) alignment allows.
std::vector<size_t> partition(size_t n, int ranks);

} // namespace train
