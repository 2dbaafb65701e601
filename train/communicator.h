// How ranks of a data-parallel job talk. The training loop sees only this interface;
// the single-process implementation makes every collective a copy or a no-op, so the
// loop has no #ifdef MPI and runs in tests without mpirun.
//
// Every method is a collective: all ranks call it, in the same order, with the same
// sizes. A rank that fails must say so through any_failed() before the next
// collective, so that all ranks stop together instead of waiting on each other.
#pragma once

#include <cstddef>
#include <exception>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>

namespace train {

class Communicator {
public:
    virtual ~Communicator() = default;
    virtual int rank() const = 0;
    virtual int size() const = 0;
    bool is_root() const { return rank() == 0; }
    virtual int machines() const = 0; // how many machines the ranks run on
    // e.g. "4 ranks on 2 machines (2 per machine, shared memory inside a machine)"
    virtual std::string describe() const = 0;

    // In-place sum over ranks.
    virtual void allreduce_sum(float* data, size_t n) = 0;
    virtual double allreduce_sum(double value) = 0;
    double allreduce_mean(double value) { return allreduce_sum(value) / size(); }

    // Non-blocking in-place sums: start any number, call progress() now and then to
    // move them along, and wait_all() before reading the results.
    virtual void start_allreduce_sum(float* data, size_t n) = 0;
    // Whether started reductions move on while this rank computes (MPI's own
    // non-blocking collectives); false where the CPU must do them (shared memory), in
    // which case starting them early only adds synchronisation.
    virtual bool reduces_in_background() const = 0;
    virtual void progress() = 0;
    virtual void wait_all() = 0;

    // Sharded buffers: `offsets` has size()+1 entries and rank r owns
    // [offsets[r], offsets[r+1]) of a full-length buffer.
    // reduce_scatter_sum: this rank's part of data becomes the sum over ranks (the rest
    // of data is left as it was). allgather: every rank's part is copied to all.
    virtual void reduce_scatter_sum(float* data, std::span<const size_t> offsets) = 0;
    virtual void allgather(float* data, std::span<const size_t> offsets) = 0;
    // scatter: root's full buffer -> each rank's part (`part` holds only that part).
    // gather: each rank's part -> root's full buffer (ignored on other ranks).
    virtual void scatter(const float* full, float* part, std::span<const size_t> offsets) = 0;
    virtual void gather(const float* part, float* full, std::span<const size_t> offsets) = 0;

    // Root's bytes to every rank.
    virtual void broadcast(void* data, size_t bytes) = 0;

    // Memory for n floats that every rank maps, where all ranks run on one machine whose
    // shared-memory file system has room for it; null otherwise (always, for one
    // process). At most one such buffer, valid while the communicator lives.
    virtual float* shared_floats(size_t n) = 0;
    // The same with n floats for each rank: this rank's. allreduce_sum and
    // reduce_scatter_sum on it read the other ranks' in place, without copies.
    virtual float* shared_floats_each(size_t n) = 0;
    // Makes every rank's writes to the memory of shared_floats() and shared_floats_each()
    // visible to all ranks, then waits for all of them.
    virtual void sync_shared() = 0;

    // Every rank learns whether any rank failed; if so, `message` becomes the first
    // failing rank's message, prefixed with "rank R: " when there are several ranks.
    virtual bool any_failed(bool failed, std::string& message) = 0;
    // True on every rank if `flag` is true on any.
    virtual bool any(bool flag) = 0;

    // Ends every rank of the job at once, without unwinding: for a rank that failed alone
    // while the others may be waiting in a collective. Not a collective itself.
    [[noreturn]] virtual void abort_job(int exit_code) = 0;
};

// One process: rank 0 of 1.
class SingleProcess final : public Communicator {
public:
    int rank() const override { return 0; }
    int size() const override { return 1; }
    int machines() const override { return 1; }
    std::string describe() const override { return "1 rank"; }
    void allreduce_sum(float*, size_t) override {}
    double allreduce_sum(double value) override { return value; }
    void start_allreduce_sum(float*, size_t) override {}
    bool reduces_in_background() const override { return false; }
    void progress() override {}
    void wait_all() override {}
    void reduce_scatter_sum(float*, std::span<const size_t>) override {}
    void allgather(float*, std::span<const size_t>) override {}
    void scatter(const float* full, float* part, std::span<const size_t> offsets) override;
    void gather(const float* part, float* full, std::span<const size_t> offsets) override;
    void broadcast(void*, size_t) override {}
    float* shared_floats(size_t) override { return nullptr; }
    float* shared_floats_each(size_t) override { return nullptr; }
    void sync_shared() override {}
    bool any_failed(bool failed, std::string&) override { return failed; }
    bool any(bool flag) override { return flag; }
    [[noreturn]] void abort_job(int exit_code) override;
};

// An error every rank has agreed on (through any_failed) and throws at the same point,
// so the job can end cleanly; only the root reports it.
class JobError : public std::runtime_error {
public:
    JobError(const std::string& message, bool report)
        : std::runtime_error(message), report_(report) {}
    bool report() const { return report_; }

private:
    bool report_;
};

// Runs fn on every rank; if it throws on any, every rank throws a JobError with the
// first failing rank's message. Wrap each stretch of work that touches no other rank
// in it, so that no rank goes on to a collective that another has left. One process
// has no one to agree with: its exception goes on as it was, type and all.
template <class F> void agreed(Communicator& comm, F&& fn) {
    bool failed = false;
    std::string message;
    std::exception_ptr error;
    try {
        fn();
    } catch (const std::exception& e) {
        failed = true;
        message = e.what();
        error = std::current_exception();
    }
    if (!comm.any_failed(failed, message)) return;
    if (comm.size() == 1) std::rethrow_exception(error);
    throw JobError(message, comm.is_root());
}

// MPI when the process was started by mpirun (or another MPI launcher), else a
// SingleProcess. The MPI implementation finalizes MPI when destroyed.
std::unique_ptr<Communicator> make_communicator();

} // namespace train
