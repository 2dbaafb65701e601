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
    }
    ~MpiCommunicator() override {
        wait_all_quietly();
        MPI_Finalize();
    }

    int rank() const override { return rank_; }
    int size() const override { return size_; }

    void allreduce_sum(float* data, size_t n) override {
        for (size_t done = 0; done < n; done += kChunk)
            check(MPI_Allreduce(MPI_IN_PLACE, data + done, int(std::min(kChunk, n - done)), MPI_FLOAT,
                                MPI_SUM, MPI_COMM_WORLD),
                  "MPI_Allreduce");
    }
    double allreduce_sum(double value) override {
        check(MPI_Allreduce(MPI_IN_PLACE, &value, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD), "MPI_Allreduce");
        return value;
    }

    void start_allreduce_sum(float* data, size_t n) override {
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
        const size_t mine = offsets[rank_ + 1] - offsets[rank_];
        if (scratch_.size() < mine) scratch_.resize(mine); // once, on the first step
        check(MPI_Reduce_scatter(data + offsets[0], scratch_.data(), counts_.data(), MPI_FLOAT, MPI_SUM,
                                 MPI_COMM_WORLD),
              "MPI_Reduce_scatter");
        std::copy(scratch_.begin(), scratch_.begin() + ptrdiff_t(mine), data + offsets[rank_]);
    }
    void allgather(float* data, std::span<const size_t> offsets) override {
        counts(offsets);
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

    [[noreturn]] void abort_job(int code) { MPI_Abort(MPI_COMM_WORLD, code); std::_Exit(code); }

private:
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

    int rank_ = 0, size_ = 1;
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
        auto* mpi = dynamic_cast<MpiCommunicator*>(comm.get());
        if (!mpi || mpi->size() == 1) throw;
        // Only this rank knows: the others may be waiting in a collective. Take them down.
        std::fprintf(stderr, "gpt2: error: rank %d: %s\n", mpi->rank(), e.what());
        std::fflush(stderr);
        mpi->abort_job(1);
    }
}

} // namespace train
