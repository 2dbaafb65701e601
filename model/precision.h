// The arithmetic a model's passes use. fp32: everything in float. bf16: matrix
// products and attention read bfloat16 inputs and accumulate in float; weights (the
// master copy), LayerNorm statistics, softmax, the loss and all gradients stay float.
#pragma once

#include <optional>
#include <string_view>

namespace model {

enum class Precision { fp32, bf16 };

const char* precision_name(Precision precision); // "fp32", "bf16"
std::optional<Precision> parse_precision(std::string_view name);

// Whether this CPU has native bfloat16 dot products (AVX512_BF16). Without them bf16
// would run on oneDNN's emulation, slower than fp32, so the model refuses it.
bool cpu_has_bf16();

// Throws base::SettingError("precision", ...) if this build or CPU cannot run `precision`.
void check_precision_supported(Precision precision);

} // namespace model
