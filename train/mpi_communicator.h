// Communicator over MPI_COMM_WORLD. Where every machine runs the same number of ranks, more
// than one, the float sums go through shared memory inside a machine (SharedMemoryReducer);
// otherwise every collective is MPI's own.
#pragma once

#include <memory>
#include <span>
#include <string>
#include <vector>

#include "train/communicator.h"
#include "train/mpi_api.h"
#include "train/shm_reducer.h"

namespace train {

class MpiCommunicator final : public Communicator {
public:
    // Initialises MPI, which the destructor finalizes: at most one per process.
    MpiCommunicator();
    ~MpiCommunicator() override;
    MpiCommunicator(const MpiCommunicator&) = delete;
    MpiCommunicator& operator=(const MpiCommunicator&) = delete;

    int rank() const override { return rank_; }
    int size() const override { return size_; }
    int machines() const override { return nodes_; }
    std::string describe() const override;

    void allreduce_sum(float* data, size_t n) override;
    double allreduce_sum(double value) override;
    void start_allreduce_sum(float* data, size_t n) override;
    bool reduces_in_background() const override { return !reducer_; }
    void progress() override;
    void wait_all() override;
    void reduce_scatter_sum(float* data, std::span<const size_t> offsets) override;
    void allgather(float* data, std::span<const size_t> offsets) override;
    void scatter(const float* full, float* part, std::span<const size_t> offsets) override;
    void gather(const float* part, float* full, std::span<const size_t> offsets) override;
    void broadcast(void* data, size_t bytes) override;
    float* shared_floats(size_t n) override;
    float* shared_floats_each(size_t n) override;
    void sync_shared() override;
    bool any_failed(bool failed, std::string& message) override;
    bool any(bool flag) override;
    [[noreturn]] void abort_job(int exit_code) override;

private:
    void split_machines();
    bool same_ranks_per_machine() const;
    void set_counts(std::span<const size_t> offsets);
    void wait_all_quietly();
    bool may_share();

    int rank_ = 0, size_ = 1;
    MPI_Comm node_ = MPI_COMM_NULL, cross_ = MPI_COMM_NULL;
    int node_size_ = 1, nodes_ = 1;
    std::unique_ptr<SharedMemoryReducer> reducer_; // null: MPI's collectives only
    std::vector<MPI_Request> requests_;
    std::vector<int> counts_, displs_;
    std::vector<float> scratch_;
};

} // namespace train
