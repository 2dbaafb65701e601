#include "train/outlier.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace train {

OutlierDetector::OutlierDetector(double threshold, size_t size)
    : threshold_(threshold), size_(size) {
    if (!(threshold >= 0) || size < 2)
        throw std::invalid_argument("OutlierDetector needs a threshold >= 0 and a window of 2+");
    ring_.assign(size_, 0.0);
}

void OutlierDetector::keep(double x) {
    if (count_ < size_) {
        ring_[(oldest_ + count_++) % size_] = x;
    } else { // the newest replaces the oldest
        ring_[oldest_] = x;
        oldest_ = (oldest_ + 1) % size_;
    }
}

OutlierDetector::Verdict OutlierDetector::add(double x) {
    Verdict v;
    if (count_ == size_) {
        // Two passes over a short window, oldest first: no running sums to drift, and the
        // same order after a resume.
        double mean = 0, var = 0;
        for (size_t i = 0; i < size_; ++i) mean += kept(i);
        mean /= double(size_);
        for (size_t i = 0; i < size_; ++i) var += (kept(i) - mean) * (kept(i) - mean);
        const double std = std::sqrt(var / double(size_));
        v.z = std > 0 ? (x - mean) / std : 0.0;
        v.outlier = threshold_ > 0 && *v.z > threshold_;
    }
    in_a_row_ = v.outlier ? in_a_row_ + 1 : 0;
    if (!v.outlier || in_a_row_ >= kAdmitInARow) keep(x);
    return v;
}

OutlierDetector::State OutlierDetector::state() const {
    State s{{}, in_a_row_};
    for (size_t i = 0; i < count_; ++i) s.window.push_back(kept(i));
    return s;
}

void OutlierDetector::restore(const State& s) {
    const bool finite =
        std::all_of(s.window.begin(), s.window.end(), [](double x) { return std::isfinite(x); });
    if (s.window.size() > size_ || !finite || s.outliers_in_a_row < 0)
        throw std::invalid_argument("not a state of this outlier detector");
    oldest_ = count_ = 0;
    for (double x : s.window) keep(x);
    in_a_row_ = s.outliers_in_a_row;
}

} // namespace train
