#include <algorithm>
#include <cmath>
#include <numbers>
#include <sstream>
#include <stdexcept>

#include "base/error.h"
#include "optim/optim.h"

namespace optim {

double Schedule::at(int step) const {
    if (step < warmup) return lr * (step + 1) / warmup;
    const double lr_min = lr * final_fraction;
    switch (kind) {
    case Kind::constant:
        return lr;
    case Kind::cosine: {
        if (step >= total) return lr_min;
        const double r = double(step - warmup) / (total - warmup);
        return lr_min + 0.5 * (1.0 + std::cos(std::numbers::pi * r)) * (lr - lr_min);
    }
    case Kind::wsd: {
        if (step >= total) return lr_min;
        const int d = std::max(warmup, total - int(std::lround(decay_fraction * total)));
        if (step < d) return lr;
        return lr - (lr - lr_min) * (step - d + 1) / (total - d);
    }
    case Kind::linear: // total - 1 - warmup > step - warmup >= 0 below
        if (step >= total - 1) return lr_min;
        return lr - (lr - lr_min) * (step - warmup) / (total - 1 - warmup);
    }
    return lr;
}

void Schedule::validate() const {
    auto require = [](bool ok, const char* setting, const std::string& range, double got) {
        std::ostringstream what;
        what << "must be " << range << ", got " << got;
        if (!ok) throw base::SettingError(setting, what.str());
    };
    require(std::isfinite(lr) && lr >= 0, "lr", "at least 0", lr);
    require(warmup >= 0, "warmup", "at least 0", warmup);
    require(kind == Kind::constant || total >= 1, "total",
            std::string("at least 1 for the ") + name(kind) + " schedule", total);
    require(final_fraction >= 0 && final_fraction <= 1, "final_fraction", "in [0, 1]",
            final_fraction);
    require(decay_fraction > 0 && decay_fraction <= 1, "decay_fraction", "in (0, 1]",
            decay_fraction);
}

Schedule::Kind Schedule::parse(const std::string& s) {
    for (Kind k : {Kind::constant, Kind::cosine, Kind::wsd, Kind::linear})
        if (s == name(k)) return k;
    throw base::SettingError("kind", "unknown schedule '" + s +
                                         "' (expected constant, cosine, wsd or linear)");
}

const char* Schedule::name(Kind kind) {
    switch (kind) {
    case Kind::constant:
        return "constant";
    case Kind::cosine:
        return "cosine";
    case Kind::wsd:
        return "wsd";
    case Kind::linear:
        return "linear";
    }
    return "?";
}

std::string Schedule::describe() const {
    std::ostringstream out;
    out << name(kind) << " lr " << lr << " warmup " << warmup;
    if (kind != Kind::constant) out << " steps " << total << " final x" << final_fraction;
    if (kind == Kind::wsd) out << " decay " << decay_fraction;
    return out.str();
}

} // namespace optim
