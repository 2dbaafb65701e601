#include "train/parallel.h"

#include "base/error.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <new>
#include <stdexcept>
#include <utility>

namespace train {

namespace {

using clock = std::chrono::steady_clock;

double since(clock::time_point t0) {
    return std::chrono::duration<double>(clock::now() - t0).count();
}

} // namespace

std::vector<size_t> partition(size_t n, int ranks) {
    std::vector<size_t> offsets(size_t(ranks) + 1, n);
    for (int r = 0; r < ranks; ++r)
        offsets[r] = std::min(n, n / size_t(ranks) * size_t(r) / 16 * 16);
    return offsets;
}

namespace {

// Options with zero = -1 resolved: ZeRO-1 on one machine, where the ranks share their
// parameters and gradients (broadcast_params) and it is the fastest mode; across
// machines plain data parallelism, whose reduction can overlap backward.
ParallelOptions resolved(ParallelOptions o, const Communicator& comm) {
    if (o.zero == -1) o.zero = comm.size() > 1 && comm.machines() == 1 ? 1 : 0;
    if (o.zero != 0 && o.zero != 1)
        throw base::SettingError("zero", "must be auto, 0 or 1, got " + std::to_string(o.zero));
    return o;
}

} // namespace

DataParallel::DataParallel(Communicator& comm, model::GPT2<float>& gpt,
                           const optim::AdamWConfig& config, const ParallelOptions& options)
    : comm_(comm), gpt_(gpt), options_(resolved(options, comm)),
      offsets_(options_.zero ? partition(gpt.num_params(), comm.size())
                             : std::vector<size_t>{0, gpt.num_params()}),
      adam_(gpt.layout(), config, offsets_[options_.zero ? comm.rank() : 0],
            offsets_[options_.zero ? comm.rank() + 1 : 1]) {
    if (!gpt.grads()) gpt.allocate_grads();
    overlapping_ =
        options_.overlap && options_.zero == 0 && comm.size() > 1 && comm.reduces_in_background();
    if (!overlapping_) return;
    buckets_.resize(size_t(gpt.config().n_layer) + 1);
    for (const auto& t : gpt.layout().tensors())
        buckets_[size_t(t.layer + 1)].push_back({t.offset, t.size});
    gpt.set_backward_hook([this](int layer) { on_block_done(layer); });
}

DataParallel::~DataParallel() {
    if (overlapping_) gpt_.set_backward_hook({});
    try {
        if (shared_) gpt_.use_params_at(nullptr);
        if (shared_grads_) gpt_.use_grads_at(nullptr);
    } catch (const std::bad_alloc&) {
        // The model goes on reading the communicator's memory, valid while it lives.
    }
}

void DataParallel::broadcast_params() {
    const size_t n = gpt_.num_params();
    if (!placed_ && comm_.size() > 1) {
        placed_ = true;
        // Under ZeRO-1 one copy of the parameters, each rank updating its part.
        if (options_.zero == 1) {
            if (float* shared = comm_.shared_floats(n)) {
                if (comm_.is_root()) std::copy_n(std::as_const(gpt_).params(), n, shared);
                gpt_.use_params_at(shared); // read only after sync_shared() below
                shared_ = true;
            }
        }
        // Each rank's gradients where the others read them: the reduction then sums in
        // place instead of copying through the window's slots.
        if (float* mine = comm_.shared_floats_each(n)) {
            gpt_.use_grads_at(mine);
            shared_grads_ = true;
        }
    }
    if (shared_) {
        comm_.sync_shared();
        (void)gpt_.params(); // mutable access: what the model derived from them is stale
    } else {
        comm_.broadcast(gpt_.params(), n * sizeof(float));
    }
}

const char* DataParallel::describe() const {
    if (options_.zero == 1) {
        if (shared_ && shared_grads_)
            return "ZeRO-1 (optimizer moments sharded; parameters and gradients shared)";
        if (shared_) return "ZeRO-1 (optimizer moments sharded; reduce-scatter, parameters shared)";
        return "ZeRO-1 (optimizer moments sharded; reduce-scatter, all-gather)";
    }
    if (shared_grads_) return "gradients shared, all-reduced after backward";
    return overlapping_ ? "gradients all-reduced in buckets during backward"
                        : "gradients all-reduced after backward";
}

// Block `layer` (or, for -1, everything else) has its final gradients: start summing
// them, and give the reductions already under way a chance to move.
void DataParallel::on_block_done(int layer) {
    if (!armed_) return;
    const auto t0 = clock::now();
    if (layer == gpt_.config().n_layer - 1) hook_seconds_ = 0;
    float* grads = gpt_.grads();
    for (const Range& r : buckets_[size_t(layer + 1)])
        comm_.start_allreduce_sum(grads + r.offset, r.size);
    comm_.progress();
    if (layer == -1) armed_ = false;
    hook_seconds_ += since(t0);
}

double DataParallel::step(float lr, double grad_clip, int micro_batches, double rescale) {
    const double norm = reduce(micro_batches, rescale);
    if (std::isfinite(norm)) update(lr, grad_clip);
    return norm;
}

double DataParallel::reduce(int micro_batches, double rescale) {
    const auto t0 = clock::now();
    comm_seconds_ = overlapping_ ? hook_seconds_ : 0;
    float* grads = gpt_.grads();
    const size_t n = gpt_.num_params();
    const int W = comm_.size();
    // grads hold a sum over ranks and micro-batches: the mean's norm is theirs / (K W)
    // (times rescale), and AdamW applies that factor with the clipping factor as it reads
    // them.
    mean_ = 1.0 / (double(micro_batches) * W) * rescale;
    if (options_.zero == 0) {
        if (overlapping_)
            comm_.wait_all();
        else
            comm_.allreduce_sum(grads, n);
        comm_seconds_ += since(t0);
        norm_ = optim::grad_norm(grads, n) * mean_;
    } else {
        comm_.reduce_scatter_sum(grads, offsets_);
        norm_ = std::sqrt(comm_.allreduce_sum(
                    optim::grad_sum_squares(grads + begin(), end() - begin()))) *
                mean_;
        comm_seconds_ += since(t0);
    }
    return norm_;
}

void DataParallel::update(float lr, double grad_clip) {
    adam_.step(gpt_.params(), gpt_.grads(), lr,
               float(optim::clip_factor(norm_, grad_clip) * mean_));
    if (options_.zero == 1) {
        const auto t1 = clock::now();
        if (shared_)
            comm_.sync_shared(); // every part updated in place
        else
            comm_.allgather(gpt_.params(), offsets_);
        comm_seconds_ += since(t1);
    }
}

std::array<std::span<const float>, 2> DataParallel::full_moments(std::vector<float>& m_buf,
                                                                 std::vector<float>& v_buf) {
    if (options_.zero == 0) {
        if (!comm_.is_root()) return {};
        return {adam_.m(), adam_.v()};
    }
    if (comm_.is_root()) m_buf.resize(gpt_.num_params()), v_buf.resize(gpt_.num_params());
    comm_.gather(adam_.m().data(), m_buf.data(), offsets_);
    comm_.gather(adam_.v().data(), v_buf.data(), offsets_);
    if (!comm_.is_root()) return {};
    return {m_buf, v_buf};
}

void DataParallel::scatter_moments(const float* m, const float* v, int64_t t) {
    adam_.set_t(t);
    if (options_.zero == 0) {
        if (comm_.is_root()) {
            std::copy(m, m + gpt_.num_params(), adam_.m().begin());
            std::copy(v, v + gpt_.num_params(), adam_.v().begin());
        }
        comm_.broadcast(adam_.m().data(), adam_.m().size_bytes());
        comm_.broadcast(adam_.v().data(), adam_.v().size_bytes());
        return;
    }
    comm_.scatter(m, adam_.m().data(), offsets_);
    comm_.scatter(v, adam_.v().data(), offsets_);
}

} // namespace train
