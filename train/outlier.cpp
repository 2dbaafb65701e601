#include "train/outlier.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace train {

OutlierDetector::OutlierDetector(double threshold, size_t size)
    : threshold_(threshold), size_(size) {
    if (!(threshold >= 0) || size < 2)
        throw std::invalid_argument("OutlierDetector needs a threshold >= 0 and a window of 2+");
}

OutlierDetector::Verdict OutlierDetector::add(double x) {
    Verdict v;
    if (window_.size() == size_) {
        // Two passes over a short window: no running sums to drift.
        double mean = 0, var = 0;
        for (double w : window_) mean += w;
        mean /= double(size_);
        for (double w : window_) var += (w - mean) * (w - mean);
        const double std = std::sqrt(var / double(size_));
        v.z = std > 0 ? (x - mean) / std : 0.0;
        v.outlier = threshold_ > 0 && *v.z > threshold_;
    }
    in_a_row_ = v.outlier ? in_a_row_ + 1 : 0;
    if (!v.outlier || in_a_row_ >= kAdmitInARow) {
        window_.push_back(x);
        if (window_.size() > size_) window_.pop_front();
    }
    return v;
}

OutlierDetector::State OutlierDetector::state() const {
    return {{window_.begin(), window_.end()}, in_a_row_};
}

void OutlierDetector::restore(const State& s) {
    const bool finite =
        std::all_of(s.window.begin(), s.window.end(), [](double x) { return std::isfinite(x); });
    if (s.window.size() > size_ || !finite || s.outliers_in_a_row < 0)
        throw std::invalid_argument("not a state of this outlier detector");
    window_.assign(s.window.begin(), s.window.end());
    in_a_row_ = s.outliers_in_a_row;
}

} // namespace train
