// How much memory the machine has available, and a check against it made before a
// large allocation, so that a run that cannot fit fails at once with the sizes.
#pragma once

#include <cstddef>
#include <string>

namespace base {

// MemAvailable from /proc/meminfo, in bytes; 0 when it cannot be read.
size_t available_memory();

// Throws base::MemoryError(setting, what, needed, available) when `needed` bytes are
// more than the available memory (never when that is unknown). `what` is the subject
// of "... need N GiB", e.g. "activations and gradients for batch 8 x seq 1024".
void check_memory(size_t needed, const std::string& setting, const std::string& what);

} // namespace base
