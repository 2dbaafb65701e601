// The outlier guard (as llm.c's -sl and -sg): flags a training step whose loss or
// gradient norm jumps far above its recent values, so that the step's update can be
// skipped instead of letting one bad batch wreck the weights.
//
// For a new value x and the window of the last `size` values kept (oldest first):
//   z = (x - mean) / std      population std over the window, x itself not included
// The window must be full before anything is judged; until then every value enters it
// and z is unknown. x is an outlier when z > threshold (a threshold of 0 flags nothing).
// An outlier stays out of the window, so that a spike does not widen the spread and make
// the detector lenient for the next `size` steps; but the kAdmitInARow-th outlier in a
// row and any after it enter, so that a lasting change of level is learned instead of
// skipping every step from then on. A window without spread (std 0) gives z = 0.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

namespace train {

class OutlierDetector {
public:
    static constexpr size_t kWindow = 128; // llm.c's
    static constexpr int64_t kAdmitInARow = 3;

    explicit OutlierDetector(double threshold = 0, size_t size = kWindow);

    struct Verdict {
        std::optional<double> z; // unknown until the window is full
        bool outlier = false;
    };
    // Judges x against the window, then keeps it in the window or not (see above).
    Verdict add(double x);

    // What a checkpoint holds for an exact resume.
    struct State {
        std::vector<double> window; // oldest first, at most `size` values
        int64_t outliers_in_a_row = 0;
    };
    State state() const;
    // Throws std::invalid_argument for a state this detector cannot have had.
    void restore(const State& state);

private:
    // The i-th oldest kept value (i < count_).
    double kept(size_t i) const { return ring_[(oldest_ + i) % size_]; }
    void keep(double x);

    double threshold_;
    size_t size_;
    // The window as a ring of `size` slots allocated once: the training step allocates
    // nothing. count_ values kept, the oldest at slot oldest_.
    std::vector<double> ring_;
    size_t oldest_ = 0, count_ = 0;
    int64_t in_a_row_ = 0;
};

} // namespace train
