#include "eval/loss.h"

#include <stdexcept>
#include <string>
#include <vector>

#include "base/error.h"

namespace eval {

LossResult loss_over_batches(model::GPT2<float>& model, data::Loader& loader, int max_batches) {
    const int B = loader.options().batch, Tn = loader.options().seq;
    model.reserve(B, Tn, false); // checks the shape first
    const size_t available = loader.batches_per_epoch();
    if (max_batches > 0 && size_t(max_batches) > available)
        throw base::FileError(loader.files().size() == 1
                                  ? loader.files().front()
                                  : loader.files().front() + " (and " +
                                        std::to_string(loader.files().size() - 1) + " more shards)",
                              "holds " + std::to_string(available) + " batches of " +
                                  std::to_string(B) + " x " + std::to_string(Tn) +
                                  ", fewer than the " + std::to_string(max_batches) + " asked for");
    const int n = max_batches > 0 ? max_batches : int(available);

    // As the trainer's validation: each batch's mean weighted by its share of B*T scored
    // targets, rescaled by all / scored, so that unmasked data give the mean of means.
    const int bt = B * Tn;
    std::vector<int> inputs(bt), targets(bt);
    double sum = 0;
    size_t kept = 0;
    for (int i = 0; i < n; ++i) {
        loader.next(inputs.data(), targets.data());
        const double l = model.forward(inputs.data(), targets.data(), B, Tn);
        sum += l * (double(model.targets_kept()) / bt);
        kept += size_t(model.targets_kept());
    }
    if (kept == 0)
        throw base::FileError(loader.pattern(), "no target of the " + std::to_string(n) +
                                                    " batches is scored by the loss masks");
    return {sum / n * (double(bt) * n / double(kept)), n, kept};
}

} // namespace eval
