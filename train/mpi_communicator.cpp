// Communicator over MPI_COMM_WORLD, and the choice between it and a single process.
// The C API only: without these, OpenMPI and MPICH also pull in their C++ bindings.
#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>

#include <algorithm>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "train/communicator.h"

namespace train {

void SingleProcess::scatter(const float* full, float* part, std::span<const size_t> offsets) {
    std::copy(full + offsets[0], full + offsets[1], part);
}

void SingleProcess::gather(const float* part, float* full, std::span<const size_t> offsets) {
    std::copy(part, part + (offsets[1] - offsets[0]), full + offsets[0]);
}

void SingleProcess::abort_job(int exit_code) {
    std::fflush(nullptr); // _Exit does not flush stdio
    std::_Exit(exit_code);
}

namespace {

// MPI counts are ints: big buffers go in pieces of at most this many elements.
constexpr size_t kChunk = size_t(1) << 30;

void check(int rc, const char* what) {
    if (rc == MPI_SUCCESS) return;
    char text[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, text, &len);
    throw std::runtime_error(std::string("MPI: ") + what + " failed: " + std::string(text, size_t(len)));
}

int as_int(size_t n, const char* what) {
    if (n > size_t(INT_MAX))
        throw std::runtime_error(std::string("MPI: ") + what + " of " + std::to_string(n) +
                                 " elements exceeds MPI's int counts");
    return int(n);
}

class MpiCommunicator final : public Communicator {
public:
    MpiCommunicator() {
        int provided = 0;
        // Only the main thread calls MPI, outside OpenMP regions.
        check(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
        MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
        MPI_Comm_size(MPI_COMM_WORLD, &size_);
        // Errors come back as codes (turned into exceptions) instead of killing the job
        // with MPI's own message.
        MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
        // Ranks that share a machine, and ranks with the same place on their machines.
        // GPT2_RANKS_PER_NODE=k instead groups k consecutive ranks as one machine, so
        // that tests on one machine go through the paths of several.
        if (const char* k = std::getenv("GPT2_RANKS_PER_NODE"); k && std::atoi(k) > 0)
            check(MPI_Comm_split(MPI_COMM_WORLD, rank_ / std::atoi(k), rank_, &node_), "MPI_Comm_split");
        else
            check(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &node_),
                  "MPI_Comm_split_type");
        MPI_Comm_rank(node_, &node_rank_);
        MPI_Comm_size(node_, &node_size_);
        check(MPI_Comm_split(MPI_COMM_WORLD, node_rank_, rank_, &cross_), "MPI_Comm_split");
        nodes_ = node_rank_ == 0 ? 1 : 0;
        check(MPI_Allreduce(MPI_IN_PLACE, &nodes_, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD), "MPI_Allreduce");
        int sizes[2] = {node_size_, -node_size_};
        check(MPI_Allreduce(MPI_IN_PLACE, sizes, 2, MPI_INT, MPI_MAX, MPI_COMM_WORLD), "MPI_Allreduce");
        // Shared memory pays when a machine runs several ranks, and the scheme below
        // needs the same number on every machine (else the slices would not line up).
        if (node_size_ > 1 && sizes[0] == -sizes[1]) {
            float* mine = nullptr;
            check(MPI_Win_allocate_shared(MPI_Aint(kSlot * sizeof(float)), sizeof(float), MPI_INFO_NULL, node_,
                                          &mine, &window_),
                  "MPI_Win_allocate_shared");
            slots_.resize(size_t(node_size_));
            for (int q = 0; q < node_size_; ++q) {
                MPI_Aint bytes = 0;
                int unit = 0;
                check(MPI_Win_shared_query(window_, q, &bytes, &unit, &slots_[q]), "MPI_Win_shared_query");
            }
            check(MPI_Win_lock_all(MPI_MODE_NOCHECK, window_), "MPI_Win_lock_all");
        }
    }
    ~MpiCommunicator() override {
        wait_all_quietly();
        if (window_ != MPI_WIN_NULL) {
            MPI_Win_unlock_all(window_);
            MPI_Win_free(&window_);
        }
        MPI_Comm_free(&cross_);
        MPI_Comm_free(&node_);
        MPI_Finalize();
    }

    int rank() const override { return rank_; }
    int size() const override { return size_; }
    std::string describe() const override {
        std::string d = std::to_string(size_) + " ranks on " + std::to_string(nodes_) + " machine" +
                        (nodes_ > 1 ? "s" : "");
        if (!slots_.empty())
            return d + " (" + std::to_string(node_size_) + " per machine, shared memory inside a machine" +
                   (nodes_ > 1 ? ", MPI across)" : ")");
        return d + " (MPI collectives)";
    }

    void allreduce_sum(float* data, size_t n) override {
        if (!slots_.empty()) return shared_allreduce(data, n);
        for (size_t done = 0; done < n; done += kChunk)
            check(MPI_Allreduce(MPI_IN_PLACE, data + done, int(std::min(kChunk, n - done)), MPI_FLOAT,
                                MPI_SUM, MPI_COMM_WORLD),
                  "MPI_Allreduce");
    }
    double allreduce_sum(double value) override {
        check(MPI_Allreduce(MPI_IN_PLACE, &value, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD), "MPI_Allreduce");
        return value;
    }

    bool reduces_in_background() const override { return slots_.empty(); }
    void start_allreduce_sum(float* data, size_t n) override {
        // Through shared memory the reduction is the CPU's work either way: do it now.
        if (!slots_.empty()) return shared_allreduce(data, n);
        for (size_t done = 0; done < n; done += kChunk) {
            MPI_Request r;
            check(MPI_Iallreduce(MPI_IN_PLACE, data + done, int(std::min(kChunk, n - done)), MPI_FLOAT,
                                 MPI_SUM, MPI_COMM_WORLD, &r),
                  "MPI_Iallreduce");
            requests_.push_back(r);
        }
    }
    void progress() override {
        if (requests_.empty()) return;
        int done = 0;
        check(MPI_Testall(int(requests_.size()), requests_.data(), &done, MPI_STATUSES_IGNORE), "MPI_Testall");
        if (done) requests_.clear();
    }
    void wait_all() override {
        if (requests_.empty()) return;
        const int rc = MPI_Waitall(int(requests_.size()), requests_.data(), MPI_STATUSES_IGNORE);
        requests_.clear();
        check(rc, "MPI_Waitall");
    }

    void reduce_scatter_sum(float* data, std::span<const size_t> offsets) override {
        counts(offsets);
        if (!slots_.empty() && nodes_ == 1) return shared_reduce_scatter(data, offsets);
        const size_t mine = offsets[rank_ + 1] - offsets[rank_];
        if (scratch_.size() < mine) scratch_.resize(mine); // once, on the first step
        check(MPI_Reduce_scatter(data + offsets[0], scratch_.data(), counts_.data(), MPI_FLOAT, MPI_SUM,
                                 MPI_COMM_WORLD),
              "MPI_Reduce_scatter");
        std::copy(scratch_.begin(), scratch_.begin() + ptrdiff_t(mine), data + offsets[rank_]);
    }
    void allgather(float* data, std::span<const size_t> offsets) override {
        counts(offsets);
        if (!slots_.empty() && nodes_ == 1) return shared_allgather(data, offsets);
        check(MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, data + offsets[0], counts_.data(),
                             displs_.data(), MPI_FLOAT, MPI_COMM_WORLD),
              "MPI_Allgatherv");
    }
    void scatter(const float* full, float* part, std::span<const size_t> offsets) override {
        counts(offsets);
        check(MPI_Scatterv(rank_ == 0 ? full + offsets[0] : nullptr, counts_.data(), displs_.data(), MPI_FLOAT,
                           part, counts_[rank_], MPI_FLOAT, 0, MPI_COMM_WORLD),
              "MPI_Scatterv");
    }
    void gather(const float* part, float* full, std::span<const size_t> offsets) override {
        counts(offsets);
        check(MPI_Gatherv(part, counts_[rank_], MPI_FLOAT, rank_ == 0 ? full + offsets[0] : nullptr,
                          counts_.data(), displs_.data(), MPI_FLOAT, 0, MPI_COMM_WORLD),
              "MPI_Gatherv");
    }

    void broadcast(void* data, size_t bytes) override {
        auto* p = static_cast<char*>(data);
        for (size_t done = 0; done < bytes; done += kChunk)
            check(MPI_Bcast(p + done, int(std::min(kChunk, bytes - done)), MPI_BYTE, 0, MPI_COMM_WORLD),
                  "MPI_Bcast");
    }

    bool any_failed(bool failed, std::string& message) override {
        int first = failed ? rank_ : size_;
        check(MPI_Allreduce(MPI_IN_PLACE, &first, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD), "MPI_Allreduce");
        if (first == size_) return false;
        std::string text = rank_ == first ? message : std::string();
        unsigned long length = text.size();
        check(MPI_Bcast(&length, 1, MPI_UNSIGNED_LONG, first, MPI_COMM_WORLD), "MPI_Bcast");
        text.resize(length);
        check(MPI_Bcast(text.data(), as_int(length, "an error message"), MPI_CHAR, first, MPI_COMM_WORLD),
              "MPI_Bcast");
        message = size_ > 1 ? "rank " + std::to_string(first) + ": " + text : text;
        return true;
    }
    bool any(bool flag) override {
        int v = flag ? 1 : 0;
        check(MPI_Allreduce(MPI_IN_PLACE, &v, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD), "MPI_Allreduce");
        return v != 0;
    }

    [[noreturn]] void abort_job(int exit_code) override {
        MPI_Abort(MPI_COMM_WORLD, exit_code);
        std::_Exit(exit_code); // MPI_Abort should not return, but is not declared so
    }

private:
    // Through the shared window, kSlot floats at a time: every rank copies its chunk
    // into its slot; rank q of the machine sums slice q of all slots (in rank order, so
    // every element is computed once and all ranks get the same bits) and, across
    // machines, all-reduces that slice with the ranks holding the same slice elsewhere;
    // then every rank copies all slices back out.
    void shared_allreduce(float* data, size_t n) {
        for (size_t c = 0; c < n; c += kSlot) {
            const size_t k = std::min(kSlot, n - c);
            std::memcpy(slots_[node_rank_], data + c, k * sizeof(float));
            node_sync();
            const size_t lo = slice(k, node_rank_), hi = slice(k, node_rank_ + 1);
            sum_slots(slots_[node_rank_], lo, hi);
            if (nodes_ > 1)
                check(MPI_Allreduce(MPI_IN_PLACE, slots_[node_rank_] + lo, int(hi - lo), MPI_FLOAT, MPI_SUM, cross_),
                      "MPI_Allreduce");
            node_sync();
            for (int q = 0; q < node_size_; ++q) {
                const size_t a = slice(k, q), b = slice(k, q + 1);
                std::memcpy(data + c + a, slots_[q] + a, (b - a) * sizeof(float));
            }
            node_sync(); // before the slots take the next chunk
        }
    }
    // One machine: rank r sums its part [offsets[r], offsets[r+1]) of all slots into data.
    void shared_reduce_scatter(float* data, std::span<const size_t> offsets) {
        const size_t n0 = offsets[0], n1 = offsets[size_];
        for (size_t c = n0; c < n1; c += kSlot) {
            const size_t k = std::min(kSlot, n1 - c);
            std::memcpy(slots_[rank_], data + c, k * sizeof(float));
            node_sync();
            const size_t lo = std::clamp(offsets[rank_], c, c + k) - c;
            const size_t hi = std::clamp(offsets[rank_ + 1], c, c + k) - c;
            sum_slots(data + c, lo, hi);
            node_sync();
        }
    }
    void shared_allgather(float* data, std::span<const size_t> offsets) {
        const size_t n0 = offsets[0], n1 = offsets[size_];
        for (size_t c = n0; c < n1; c += kSlot) {
            const size_t k = std::min(kSlot, n1 - c);
            auto part = [&](int q) {
                return std::pair{std::clamp(offsets[q], c, c + k) - c, std::clamp(offsets[q + 1], c, c + k) - c};
            };
            const auto [lo, hi] = part(rank_);
            std::memcpy(slots_[rank_] + lo, data + c + lo, (hi - lo) * sizeof(float));
            node_sync();
            for (int q = 0; q < size_; ++q) {
                const auto [a, b] = part(q);
                if (q != rank_) std::memcpy(data + c + a, slots_[q] + a, (b - a) * sizeof(float));
            }
            node_sync();
        }
    }
    // out[i] = slot_0[i] + slot_1[i] + ... for i in [lo, hi).
    void sum_slots(float* out, size_t lo, size_t hi) const {
        const float* const* s = slots_.data();
        const int m = node_size_;
#pragma omp parallel for simd schedule(static)
        for (size_t i = lo; i < hi; ++i) {
            float acc = s[0][i];
            for (int q = 1; q < m; ++q) acc += s[q][i];
            out[i] = acc;
        }
    }
    // Slice q of k elements among the machine's ranks, 16-float aligned.
    size_t slice(size_t k, int q) const {
        return q == node_size_ ? k : std::min(k, k / size_t(node_size_) * size_t(q) / 16 * 16);
    }
    // Makes every rank's writes to the window visible to the others, then waits for all.
    void node_sync() {
        MPI_Win_sync(window_);
        check(MPI_Barrier(node_), "MPI_Barrier");
        MPI_Win_sync(window_);
    }

    // counts_ and displs_ for a partition; allocated once per distinct rank count.
    void counts(std::span<const size_t> offsets) {
        if (offsets.size() != size_t(size_) + 1)
            throw std::logic_error("MPI: a partition needs ranks + 1 offsets");
        as_int(offsets[size_] - offsets[0], "a sharded buffer");
        counts_.resize(size_t(size_));
        displs_.resize(size_t(size_));
        for (int r = 0; r < size_; ++r) {
            counts_[r] = int(offsets[r + 1] - offsets[r]);
            displs_[r] = int(offsets[r] - offsets[0]);
        }
    }
    void wait_all_quietly() {
        if (!requests_.empty()) MPI_Waitall(int(requests_.size()), requests_.data(), MPI_STATUSES_IGNORE);
        requests_.clear();
    }

    // Floats per rank in the shared window (16 MB, small enough for a container's
    // /dev/shm): big buffers go through it in chunks.
    static constexpr size_t kSlot = size_t(1) << 22;

    int rank_ = 0, size_ = 1;
    MPI_Comm node_ = MPI_COMM_NULL, cross_ = MPI_COMM_NULL;
    int node_rank_ = 0, node_size_ = 1, nodes_ = 1;
    MPI_Win window_ = MPI_WIN_NULL;
    std::vector<float*> slots_; // every rank's slot of the window, by rank on the machine; empty = unused
    std::vector<MPI_Request> requests_;
    std::vector<int> counts_, displs_;
    std::vector<float> scratch_;
};

// Set by mpirun (OpenMPI), or by PMIx/PMI launchers such as srun and MPICH's.
bool launched_by_mpi() {
    for (const char* var : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE"})
        if (std::getenv(var)) return true;
    return false;
}

} // namespace

std::unique_ptr<Communicator> make_communicator() {
    if (launched_by_mpi()) return std::make_unique<MpiCommunicator>();
    return std::make_unique<SingleProcess>();
}

void run_with_communicator(const std::function<void(Communicator&)>& body) {
    auto comm = make_communicator();
    try {
        body(*comm);
    } catch (const JobError&) {
        throw; // every rank throws it here; the communicator then shuts down cleanly
    } catch (const std::exception& e) {
        if (comm->size() == 1) throw;
        // Only this rank knows: the others may be waiting in a collective. Take them down.
        std::fprintf(stderr, "gpt2: error: rank %d: %s\n", comm->rank(), e.what());
        std::fflush(stderr);
        comm->abort_job(1);
    }
}

} // namespace train
