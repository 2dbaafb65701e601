#include "train/mpi_communicator.h"

#include <algorithm>
#include <climits>
#include <cstdlib>

namespace train {

namespace {

// MPI counts are ints: big buffers go in pieces of at most this many elements.
constexpr size_t kChunk = size_t(1) << 30;

int as_int(size_t n, const char* what) {
    if (n > size_t(INT_MAX))
        throw std::runtime_error(std::string("MPI: ") + what + " of " + std::to_string(n) +
                                 " elements exceeds MPI's int counts");
    return int(n);
}

// The ranks on this machine, in job-rank order. GPT2_RANKS_PER_NODE=k instead groups k
// consecutive ranks as one machine, so that tests on one machine go through the paths of
// several.
MPI_Comm split_by_machine(int rank) {
    MPI_Comm node = MPI_COMM_NULL;
    if (const char* k = std::getenv("GPT2_RANKS_PER_NODE"); k && std::atoi(k) > 0)
        check_mpi(MPI_Comm_split(MPI_COMM_WORLD, rank / std::atoi(k), rank, &node),
                  "MPI_Comm_split");
    else
        check_mpi(
            MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &node),
            "MPI_Comm_split_type");
    return node;
}

} // namespace

MpiCommunicator::MpiCommunicator() {
    int provided = 0;
    // Only the main thread calls MPI, outside OpenMP regions.
    check_mpi(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
    // Errors come back as codes (turned into exceptions) instead of killing the job with
    // MPI's own message.
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    split_machines();
    const bool alike = same_ranks_per_machine(); // a collective: before the test below
    // Shared memory pays when a machine runs several ranks.
    if (node_size_ > 1 && alike) reducer_ = std::make_unique<SharedMemoryReducer>(node_, cross_);
}

MpiCommunicator::~MpiCommunicator() {
    wait_all_quietly();
    reducer_.reset(); // its window goes before the communicators it uses
    MPI_Comm_free(&cross_);
    MPI_Comm_free(&node_);
    MPI_Finalize();
}

// node_: the ranks sharing this machine; cross_: the ranks with the same place on theirs.
void MpiCommunicator::split_machines() {
    node_ = split_by_machine(rank_);
    int node_rank = 0;
    MPI_Comm_rank(node_, &node_rank);
    MPI_Comm_size(node_, &node_size_);
    check_mpi(MPI_Comm_split(MPI_COMM_WORLD, node_rank, rank_, &cross_), "MPI_Comm_split");
    nodes_ = node_rank == 0 ? 1 : 0;
    check_mpi(MPI_Allreduce(MPI_IN_PLACE, &nodes_, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD),
              "MPI_Allreduce");
}

bool MpiCommunicator::same_ranks_per_machine() const {
    int sizes[2] = {node_size_, -node_size_}; // max and -min over machines
    check_mpi(MPI_Allreduce(MPI_IN_PLACE, sizes, 2, MPI_INT, MPI_MAX, MPI_COMM_WORLD),
              "MPI_Allreduce");
    return sizes[0] == -sizes[1];
}

std::string MpiCommunicator::describe() const {
    std::string d = std::to_string(size_) + " ranks on " + std::to_string(nodes_) + " machine" +
                    (nodes_ > 1 ? "s" : "");
    if (reducer_)
        return d + " (" + std::to_string(node_size_) +
               " per machine, shared memory inside a machine" +
               (nodes_ > 1 ? ", MPI across)" : ")");
    return d + " (MPI collectives)";
}

void MpiCommunicator::allreduce_sum(float* data, size_t n) {
    if (reducer_) return reducer_->allreduce_sum(data, n);
    for (size_t done = 0; done < n; done += kChunk)
        check_mpi(MPI_Allreduce(MPI_IN_PLACE, data + done, int(std::min(kChunk, n - done)),
                                MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD),
                  "MPI_Allreduce");
}

double MpiCommunicator::allreduce_sum(double value) {
    check_mpi(MPI_Allreduce(MPI_IN_PLACE, &value, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD),
              "MPI_Allreduce");
    return value;
}

void MpiCommunicator::start_allreduce_sum(float* data, size_t n) {
    // Through shared memory the reduction is the CPU's work either way: do it now.
    if (reducer_) return reducer_->allreduce_sum(data, n);
    for (size_t done = 0; done < n; done += kChunk) {
        MPI_Request r;
        check_mpi(MPI_Iallreduce(MPI_IN_PLACE, data + done, int(std::min(kChunk, n - done)),
                                 MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, &r),
                  "MPI_Iallreduce");
        requests_.push_back(r);
    }
}

void MpiCommunicator::progress() {
    if (requests_.empty()) return;
    int done = 0;
    check_mpi(MPI_Testall(int(requests_.size()), requests_.data(), &done, MPI_STATUSES_IGNORE),
              "MPI_Testall");
    if (done) requests_.clear();
}

void MpiCommunicator::wait_all() {
    if (requests_.empty()) return;
    const int rc = MPI_Waitall(int(requests_.size()), requests_.data(), MPI_STATUSES_IGNORE);
    requests_.clear();
    check_mpi(rc, "MPI_Waitall");
}

void MpiCommunicator::reduce_scatter_sum(float* data, std::span<const size_t> offsets) {
    set_counts(offsets);
    if (reducer_ && nodes_ == 1) return reducer_->reduce_scatter_sum(data, offsets);
    const size_t mine = offsets[rank_ + 1] - offsets[rank_];
    if (scratch_.size() < mine) scratch_.resize(mine); // once, on the first step
    check_mpi(MPI_Reduce_scatter(data + offsets[0], scratch_.data(), counts_.data(), MPI_FLOAT,
                                 MPI_SUM, MPI_COMM_WORLD),
              "MPI_Reduce_scatter");
    std::copy(scratch_.begin(), scratch_.begin() + ptrdiff_t(mine), data + offsets[rank_]);
}

void MpiCommunicator::allgather(float* data, std::span<const size_t> offsets) {
    set_counts(offsets);
    if (reducer_ && nodes_ == 1) return reducer_->allgather(data, offsets);
    check_mpi(MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, data + offsets[0], counts_.data(),
                             displs_.data(), MPI_FLOAT, MPI_COMM_WORLD),
              "MPI_Allgatherv");
}

void MpiCommunicator::scatter(const float* full, float* part, std::span<const size_t> offsets) {
    set_counts(offsets);
    check_mpi(MPI_Scatterv(rank_ == 0 ? full + offsets[0] : nullptr, counts_.data(), displs_.data(),
                           MPI_FLOAT, part, counts_[rank_], MPI_FLOAT, 0, MPI_COMM_WORLD),
              "MPI_Scatterv");
}

void MpiCommunicator::gather(const float* part, float* full, std::span<const size_t> offsets) {
    set_counts(offsets);
    check_mpi(MPI_Gatherv(part, counts_[rank_], MPI_FLOAT, rank_ == 0 ? full + offsets[0] : nullptr,
                          counts_.data(), displs_.data(), MPI_FLOAT, 0, MPI_COMM_WORLD),
              "MPI_Gatherv");
}

void MpiCommunicator::broadcast(void* data, size_t bytes) {
    auto* p = static_cast<char*>(data);
    for (size_t done = 0; done < bytes; done += kChunk)
        check_mpi(
            MPI_Bcast(p + done, int(std::min(kChunk, bytes - done)), MPI_BYTE, 0, MPI_COMM_WORLD),
            "MPI_Bcast");
}

// Where every rank is on one machine. GPT2_SHARED_BUFFERS=0 says no, so that tests on one
// machine also go through the copying paths, and a user can keep /dev/shm for other jobs.
bool MpiCommunicator::may_share() {
    const char* env = std::getenv("GPT2_SHARED_BUFFERS");
    int wanted = reducer_ && nodes_ == 1 && !(env && std::string(env) == "0");
    check_mpi(MPI_Allreduce(MPI_IN_PLACE, &wanted, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD),
              "MPI_Allreduce");
    return wanted;
}

float* MpiCommunicator::shared_floats(size_t n) {
    return may_share() ? reducer_->shared_buffer(n) : nullptr;
}

float* MpiCommunicator::shared_floats_each(size_t n) {
    return may_share() ? reducer_->shared_segment(n) : nullptr;
}

void MpiCommunicator::sync_shared() {
    if (reducer_) reducer_->sync();
}

bool MpiCommunicator::any_failed(bool failed, std::string& message) {
    int first = failed ? rank_ : size_;
    check_mpi(MPI_Allreduce(MPI_IN_PLACE, &first, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD),
              "MPI_Allreduce");
    if (first == size_) return false;
    std::string text = rank_ == first ? message : std::string();
    unsigned long length = text.size();
    check_mpi(MPI_Bcast(&length, 1, MPI_UNSIGNED_LONG, first, MPI_COMM_WORLD), "MPI_Bcast");
    text.resize(length);
    check_mpi(
        MPI_Bcast(text.data(), as_int(length, "an error message"), MPI_CHAR, first, MPI_COMM_WORLD),
        "MPI_Bcast");
    message = size_ > 1 ? "rank " + std::to_string(first) + ": " + text : text;
    return true;
}

bool MpiCommunicator::any(bool flag) {
    int v = flag ? 1 : 0;
    check_mpi(MPI_Allreduce(MPI_IN_PLACE, &v, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD),
              "MPI_Allreduce");
    return v != 0;
}

void MpiCommunicator::abort_job(int exit_code) {
    MPI_Abort(MPI_COMM_WORLD, exit_code);
    std::_Exit(exit_code); // MPI_Abort should not return, but is not declared so
}

// counts_ and displs_ for a partition; allocated once per distinct rank count.
void MpiCommunicator::set_counts(std::span<const size_t> offsets) {
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

void MpiCommunicator::wait_all_quietly() {
    if (!requests_.empty())
        MPI_Waitall(int(requests_.size()), requests_.data(), MPI_STATUSES_IGNORE);
    requests_.clear();
}

} // namespace train
