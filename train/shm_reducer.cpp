#include "train/shm_reducer.h"

#include <sys/statvfs.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <utility>

namespace train {

namespace {

// Rank q's part [offsets[q], offsets[q+1]) clipped to the chunk [c, c+k), relative to c.
std::pair<size_t, size_t> part_in_chunk(std::span<const size_t> offsets, int q, size_t c,
                                        size_t k) {
    return {std::clamp(offsets[q], c, c + k) - c, std::clamp(offsets[q + 1], c, c + k) - c};
}

// Whether the file system behind Open MPI's shared windows (its osc_sm_backing_directory,
// /dev/shm unless set in the environment) has `bytes` free beside a margin for others.
bool room_for(size_t bytes) {
    const char* dir = std::getenv("OMPI_MCA_osc_sm_backing_directory");
    struct statvfs fs {};
    if (statvfs(dir && *dir ? dir : "/dev/shm", &fs) != 0) return false;
    const double margin = double(size_t(256) << 20);
    return double(fs.f_bavail) * double(fs.f_frsize) >= double(bytes) * 1.25 + margin;
}

} // namespace

SharedMemoryReducer::SharedMemoryReducer(MPI_Comm node, MPI_Comm cross)
    : node_(node), cross_(cross) {
    MPI_Comm_rank(node_, &rank_);
    MPI_Comm_size(node_, &ranks_);
    MPI_Comm_size(cross_, &machines_); // one rank per machine, as all machines are alike
    float* mine = nullptr;
    check_mpi(MPI_Win_allocate_shared(MPI_Aint(kSlot * sizeof(float)), sizeof(float), MPI_INFO_NULL,
                                      node_, &mine, &window_),
              "MPI_Win_allocate_shared");
    slots_.resize(size_t(ranks_));
    for (int q = 0; q < ranks_; ++q) slots_[size_t(q)] = base_of(window_, q);
    check_mpi(MPI_Win_lock_all(MPI_MODE_NOCHECK, window_), "MPI_Win_lock_all");
}

SharedMemoryReducer::~SharedMemoryReducer() {
    for (MPI_Win* w : {&segment_window_, &buffer_window_, &window_}) {
        if (*w == MPI_WIN_NULL) continue;
        MPI_Win_unlock_all(*w);
        MPI_Win_free(w);
    }
}

// A window of n floats held by rank `holder` of the machine, or n for each rank if holder
// is -1. False, and no window, where the file system has no room for it.
bool SharedMemoryReducer::allocate(MPI_Win& window, size_t n, int holder) {
    if (window != MPI_WIN_NULL) throw std::logic_error("shared memory: allocated already");
    const size_t all = holder < 0 ? n * size_t(ranks_) : n;
    int room = rank_ == 0 && room_for(all * sizeof(float)); // rank 0 speaks for the machine
    check_mpi(MPI_Bcast(&room, 1, MPI_INT, 0, node_), "MPI_Bcast");
    if (!room) return false;
    const size_t mine = holder < 0 || holder == rank_ ? n : 0;
    float* base = nullptr;
    check_mpi(MPI_Win_allocate_shared(MPI_Aint(mine * sizeof(float)), sizeof(float), MPI_INFO_NULL,
                                      node_, &base, &window),
              "MPI_Win_allocate_shared");
    check_mpi(MPI_Win_lock_all(MPI_MODE_NOCHECK, window), "MPI_Win_lock_all");
    return true;
}

// Where rank q's part of window starts, in this process.
float* SharedMemoryReducer::base_of(MPI_Win window, int q) {
    MPI_Aint bytes = 0;
    int unit = 0;
    float* base = nullptr;
    check_mpi(MPI_Win_shared_query(window, q, &bytes, &unit, &base), "MPI_Win_shared_query");
    return base;
}

float* SharedMemoryReducer::shared_buffer(size_t n) {
    return allocate(buffer_window_, n, 0) ? base_of(buffer_window_, 0) : nullptr;
}

float* SharedMemoryReducer::shared_segment(size_t n) {
    if (!allocate(segment_window_, n, -1)) return nullptr;
    segments_.resize(size_t(ranks_));
    for (int q = 0; q < ranks_; ++q) segments_[size_t(q)] = base_of(segment_window_, q);
    return segments_[size_t(rank_)];
}

void SharedMemoryReducer::allreduce_sum(float* data, size_t n) {
    if (is_segment(data)) {
        sum_segments(slice(n, rank_), slice(n, rank_ + 1));
        for (int q = 0; q < ranks_; ++q) {
            const size_t a = slice(n, q), b = slice(n, q + 1);
            if (q != rank_)
                std::memcpy(data + a, segments_[size_t(q)] + a, (b - a) * sizeof(float));
        }
        sync(); // no rank writes its segment again while another reads it
        return;
    }
    for (size_t c = 0; c < n; c += kSlot) {
        const size_t k = std::min(kSlot, n - c);
        const size_t lo = slice(k, rank_), hi = slice(k, rank_ + 1);
        copy_but(data + c, k, lo, hi); // the others' slices; this rank sums its own from data
        sync();
        sum_sources(slots_[rank_], lo, hi, [&](int q) { return from_slot(q, data + c); });
        if (machines_ > 1)
            check_mpi(MPI_Allreduce(MPI_IN_PLACE, slots_[rank_] + lo, int(hi - lo), MPI_FLOAT,
                                    MPI_SUM, cross_),
                      "MPI_Allreduce");
        sync();
        for (int q = 0; q < ranks_; ++q) {
            const size_t a = slice(k, q), b = slice(k, q + 1);
            std::memcpy(data + c + a, slots_[q] + a, (b - a) * sizeof(float));
        }
        sync(); // before the slots take the next chunk
    }
}

// Rank r sums its part of every rank's slot, its own values read from data, into its own
// data; nothing is copied back.
void SharedMemoryReducer::reduce_scatter_sum(float* data, std::span<const size_t> offsets) {
    if (is_segment(data)) return sum_segments(offsets[rank_], offsets[rank_ + 1]);
    const size_t n0 = offsets[0], n1 = offsets[ranks_];
    for (size_t c = n0; c < n1; c += kSlot) {
        const size_t k = std::min(kSlot, n1 - c);
        const auto [lo, hi] = part_in_chunk(offsets, rank_, c, k);
        copy_but(data + c, k, lo, hi);
        sync();
        sum_sources(data + c, lo, hi, [&](int q) { return from_slot(q, data + c); });
        sync();
    }
}

// [lo, hi) of this rank's segment becomes the sum of that range of every rank's segment,
// read in place; the syncs around it let every rank's segment be final before, and keep
// each segment unchanged until every rank has read it.
void SharedMemoryReducer::sum_segments(size_t lo, size_t hi) {
    sync();
    sum_sources(segments_[size_t(rank_)], lo, hi,
                [&](int q) -> const float* { return segments_[size_t(q)]; });
    sync();
}

// This rank's slot gets chunk (k elements) but [lo, hi), the part only this rank reads.
void SharedMemoryReducer::copy_but(const float* chunk, size_t k, size_t lo, size_t hi) {
    std::memcpy(slots_[rank_], chunk, lo * sizeof(float));
    std::memcpy(slots_[rank_] + hi, chunk + hi, (k - hi) * sizeof(float));
}

void SharedMemoryReducer::allgather(float* data, std::span<const size_t> offsets) {
    const size_t n0 = offsets[0], n1 = offsets[ranks_];
    for (size_t c = n0; c < n1; c += kSlot) {
        const size_t k = std::min(kSlot, n1 - c);
        const auto [lo, hi] = part_in_chunk(offsets, rank_, c, k);
        std::memcpy(slots_[rank_] + lo, data + c + lo, (hi - lo) * sizeof(float));
        sync();
        for (int q = 0; q < ranks_; ++q) {
            const auto [a, b] = part_in_chunk(offsets, q, c, k);
            if (q != rank_) std::memcpy(data + c + a, slots_[q] + a, (b - a) * sizeof(float));
        }
        sync();
    }
}

// out[i] = source(0)[i] + source(1)[i] + ... for i in [lo, hi), always in this order.
template <class Source>
void SharedMemoryReducer::sum_sources(float* out, size_t lo, size_t hi, Source source) const {
    // In blocks that stay in L1, one source at a time, so that each pass is one vectorised
    // stream (a loop over the sources inside the loop over elements was not vectorised and
    // ran at a fifth of the speed). The sum builds up in out, unless out is a source that
    // a later pass reads (source 2 or above): then in acc, copied out at the end.
    constexpr size_t kBlock = 2048;
    const int m = ranks_;
    bool in_place = true;
    for (int q = 2; q < m; ++q) in_place = in_place && out != source(q);
#pragma omp parallel for schedule(static)
    for (size_t b0 = lo; b0 < hi; b0 += kBlock) {
        const size_t n = std::min(hi, b0 + kBlock) - b0;
        alignas(64) float acc[kBlock];
        float* sum = in_place ? out + b0 : acc;
        const float* s0 = source(0) + b0;
        if (m == 1) {
            std::memmove(sum, s0, n * sizeof(float));
        } else {
            const float* s1 = source(1) + b0;
#pragma omp simd
            for (size_t i = 0; i < n; ++i) sum[i] = s0[i] + s1[i];
        }
        for (int q = 2; q < m; ++q) {
            const float* sq = source(q) + b0;
#pragma omp simd
            for (size_t i = 0; i < n; ++i) sum[i] += sq[i];
        }
        if (!in_place) std::memcpy(out + b0, acc, n * sizeof(float));
    }
}

// Start of slice q of k elements among the machine's ranks, 16-float aligned.
size_t SharedMemoryReducer::slice(size_t k, int q) const {
    return q == ranks_ ? k : std::min(k, k / size_t(ranks_) * size_t(q) / 16 * 16);
}

// Makes every rank's writes to any of the windows visible to the others, then waits for all.
void SharedMemoryReducer::sync() {
    const auto memory_sync = [&] {
        for (MPI_Win w : {window_, buffer_window_, segment_window_})
            if (w != MPI_WIN_NULL) MPI_Win_sync(w);
    };
    memory_sync();
    check_mpi(MPI_Barrier(node_), "MPI_Barrier");
    memory_sync();
}

} // namespace train
