#include "eval/loss.h"

#include <stdexcept>
#include <string>
#include <vector>

#include "base/error.h"

namespace eval {

LossResult shard_loss(model::GPT2<float>& model, const data::Shard& shard, int B, int Tn,
                      int max_batches) {
    model.reserve(B, Tn, false); // checks the shape first
    const size_t batch_tokens = size_t(B) * Tn;
    const size_t available = shard.size() < 1 ? 0 : (shard.size() - 1) / batch_tokens;
    if (available == 0)
        throw base::FileError(
            shard.path(), std::to_string(shard.size()) + " tokens are fewer than one batch of " +
                              std::to_string(B) + " x " + std::to_string(Tn) + " + 1");
    if (max_batches > 0 && size_t(max_batches) > available)
        throw base::FileError(shard.path(), "holds " + std::to_string(available) + " batches of " +
                                                std::to_string(B) + " x " + std::to_string(Tn) +
                                                ", fewer than the " + std::to_string(max_batches) +
                                                " asked for");
    const int n = max_batches > 0 ? max_batches : int(available);

    const int vocab = model.config().vocab;
    std::vector<int> tokens(batch_tokens + 1);
    double sum = 0;
    for (int i = 0; i < n; ++i) {
        const size_t start = size_t(i) * batch_tokens;
        for (size_t j = 0; j <= batch_tokens; ++j) {
            tokens[j] = shard[start + j];
            if (tokens[j] >= vocab)
                throw base::FileError(shard.path(), "token " + std::to_string(tokens[j]) +
                                                        " at position " +
                                                        std::to_string(start + j) +
                                                        " is outside the model's vocabulary of " +
                                                        std::to_string(vocab));
        }
        sum += model.forward(tokens.data(), tokens.data() + 1, B, Tn);
    }
    return {sum / n, n, size_t(n) * batch_tokens};
}

} // namespace eval
