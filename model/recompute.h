// What the backward pass recomputes instead of keeping from the forward pass: less
// memory for a little more arithmetic, with bit-identical results.
#pragma once

namespace model {

// off:  every layer keeps its activations.
// gelu: no layer keeps its GELU output fch_gelu (L x (B,T,4C)); one shared (B,T,4C)
//       buffer, which backward refills with gelu(fch) before each layer's fcproj backward.
// all:  gelu, and no layer keeps its ln1 and ln2 outputs (2L x (B,T,C)); one shared
//       (B,T,C) buffer, which backward refills from the LayerNorm's input and its kept
//       mean and rstd before each product that reads them.
enum class Recompute { off, gelu, all };

inline const char* recompute_name(Recompute r) {
    return r == Recompute::off ? "off" : r == Recompute::gelu ? "gelu" : "all";
}

} // namespace model
