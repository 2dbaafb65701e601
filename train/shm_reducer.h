// Sums float buffers over the ranks of one machine through an MPI shared-memory window,
// for MpiCommunicator when a machine runs several ranks.
//
// Each rank owns one slot of the window, kSlot floats (16 MB, small enough for a
// container's /dev/shm); longer buffers go through in chunks of one slot. For each chunk
// every rank copies into its slot the slices the other ranks sum, then rank q of the
// machine sums slice q of all slots (its own values read from its data), adding them in
// rank order, so that every element is summed once and all ranks read back the same
// bits. Across machines, the ranks holding the same slice all-reduce it with MPI before
// every rank copies all slices out.
//
// Where a buffer can live in shared memory for good (gradients, and ZeRO-1's parameters,
// on one machine), shared_buffer() and shared_segment() allocate it in windows of its
// own, and the reductions of a segment read the others' segments without copies.
//
// Every method is a collective over the machine's ranks (allreduce_sum also over the
// ranks with the same place on the other machines).
#pragma once

#include <cstddef>
#include <span>
#include <vector>

#include "train/mpi_api.h"

namespace train {

class SharedMemoryReducer {
public:
    // node: this machine's ranks, in job-rank order. cross: the ranks with the same place
    // on every machine. Every machine must run the same number of ranks, else the slices
    // would not line up. Both communicators must outlive the reducer.
    SharedMemoryReducer(MPI_Comm node, MPI_Comm cross);
    ~SharedMemoryReducer();
    SharedMemoryReducer(const SharedMemoryReducer&) = delete;
    SharedMemoryReducer& operator=(const SharedMemoryReducer&) = delete;

    // In-place sum over every rank of the job.
    void allreduce_sum(float* data, size_t n);
    // As Communicator's, only where this machine is the whole job (its rank r is the
    // job's rank r, and `offsets` has ranks + 1 entries).
    void reduce_scatter_sum(float* data, std::span<const size_t> offsets);
    void allgather(float* data, std::span<const size_t> offsets);

    // Memory for n floats that every rank of the machine maps (rank 0 of the machine
    // holds it), or null where the file system behind MPI's shared windows has too little
    // room: tmpfs hands out its pages only when they are first written, and running out
    // then would end a rank with SIGBUS rather than an error. At most one per reducer.
    float* shared_buffer(size_t n);
    // As shared_buffer, n floats for each rank: this rank's, or null. allreduce_sum and
    // reduce_scatter_sum on this rank's segment read the other ranks' segments in place
    // instead of copying through the window's slots. At most one per reducer.
    float* shared_segment(size_t n);
    // Makes every rank's writes to the slots, the shared buffer and the segments visible
    // to the others, then waits for all.
    void sync();

private:
    void copy_but(const float* chunk, size_t k, size_t lo, size_t hi);
    template <class Source> void sum_sources(float* out, size_t lo, size_t hi, Source source) const;
    // In the slotted reductions: rank q's chunk, this rank's own read from its data.
    const float* from_slot(int q, const float* own) const {
        return q == rank_ ? own : slots_[size_t(q)];
    }
    bool is_segment(const float* data) const {
        return !segments_.empty() && data == segments_[size_t(rank_)];
    }
    void sum_segments(size_t lo, size_t hi);
    bool allocate(MPI_Win& window, size_t n, int holder);
    static float* base_of(MPI_Win window, int q);
    size_t slice(size_t k, int q) const;

    static constexpr size_t kSlot = size_t(1) << 22;

    MPI_Comm node_, cross_;
    int rank_ = 0, ranks_ = 1, machines_ = 1; // rank_ and ranks_ on this machine
    MPI_Win window_ = MPI_WIN_NULL;
    MPI_Win buffer_window_ = MPI_WIN_NULL;  // shared_buffer()'s
    MPI_Win segment_window_ = MPI_WIN_NULL; // shared_segment()'s
    std::vector<float*> segments_;          // every rank's segment, by rank on the machine
    std::vector<float*> slots_; // every rank's slot of the window, by rank on the machine
};

} // namespace train
