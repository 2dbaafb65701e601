// Mean cross-entropy of a model over consecutive batches of token shards.
#pragma once

#include "data/loader.h"
#include "model/gpt2.h"

namespace eval {

struct LossResult {
    double mean = 0; // mean over all scored targets (unmasked: the mean of batch means)
    int batches = 0;
    size_t tokens = 0; // scored targets
};

// The loader's first max_batches batches (<= 0: every batch of its first epoch, with
// LoaderOptions::partial_last the padded last one too, so every target counts once), from
// where it stands; it should be unshuffled, for one rank: batch i then holds the B*T+1
// tokens at i*B*T (or, in rows mode, the B rows at i*B*(T+1)), and targets that a loss
// mask does not score are left out of the mean. Throws base::FileError naming the shard
// if the shards hold fewer than max_batches batches or a token is outside the model's
// vocabulary, and std::runtime_error if no target of those batches is scored.
LossResult loss_over_batches(model::GPT2<float>& model, data::Loader& loader, int max_batches);

} // namespace eval
