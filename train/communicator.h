// How ranks of a data-parallel job talk. The training loop sees only this interface;
// the single-process implementation makes every collective a no-op, so the loop has
// no #ifdef MPI and runs in tests without mpirun.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

namespace train {

class Communicator {
public:
    virtual ~Communicator() = default;
    virtual int rank() const = 0;
    virtual int size() const = 0;
    bool is_root() const { return rank() == 0; }

    // In-place mean over ranks of n floats.
    virtual void allreduce_mean(float* data, size_t n) = 0;
    // Mean over ranks of one number (losses, norms).
    virtual double allreduce_mean(double value) = 0;
    // Every rank learns whether any rank failed, and the first failing rank's message;
    // call it before each collective that a failure could leave unmatched.
    virtual bool any_failed(bool failed, std::string& message) = 0;
};

// One process: rank 0 of 1.
class SingleProcess final : public Communicator {
public:
    int rank() const override { return 0; }
    int size() const override { return 1; }
    void allreduce_mean(float*, size_t) override {}
    double allreduce_mean(double value) override { return value; }
    bool any_failed(bool failed, std::string&) override { return failed; }
};

} // namespace train
