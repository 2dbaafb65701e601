#include "model/precision.h"

#include "base/error.h"
#include "model/matmul.h"

namespace model {

const char* precision_name(Precision precision) {
    return precision == Precision::bf16 ? "bf16" : "fp32";
}

std::optional<Precision> parse_precision(std::string_view name) {
    if (name == "fp32") return Precision::fp32;
    if (name == "bf16") return Precision::bf16;
    return std::nullopt;
}

bool cpu_has_bf16() {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512bf16");
#else
    return false;
#endif
}

void check_precision_supported(Precision precision) {
    if (precision == Precision::fp32) return;
    if (!matmul_has_bf16())
        throw base::SettingError("precision", "bf16 needs the oneDNN build (this one uses " +
                                                  std::string(matmul_backend()) + ")");
    if (!cpu_has_bf16())
        throw base::SettingError("precision",
                                 "bf16 needs a CPU with AVX512_BF16 (native bfloat16 dot "
                                 "products); this one has none, use fp32");
}

} // namespace model
