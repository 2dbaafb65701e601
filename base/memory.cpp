#include "base/memory.h"

#include <fstream>
#include <new>
#include <sstream>

#include "base/error.h"

#include <sys/mman.h>

namespace base {

size_t available_memory() {
    std::ifstream in("/proc/meminfo");
    for (std::string line; std::getline(in, line);) {
        std::istringstream fields(line);
        std::string key, unit;
        size_t kib = 0;
        if (fields >> key >> kib >> unit && key == "MemAvailable:" && unit == "kB")
            return kib * 1024;
    }
    return 0;
}

void check_memory(size_t needed, const std::string& setting, const std::string& what) {
    const size_t available = available_memory();
    if (available && needed > available) throw MemoryError(setting, what, needed, available);
}

namespace {

constexpr size_t kHugePage = size_t(2) << 20;

} // namespace

void* allocate_large(size_t bytes) {
    if (bytes < kHugePage) return ::operator new(bytes, std::align_val_t(64));
    void* p = ::operator new(bytes, std::align_val_t(kHugePage));
    // Advice only: where the kernel has no transparent huge pages this fails, harmlessly.
    madvise(p, bytes / kHugePage * kHugePage, MADV_HUGEPAGE);
    return p;
}

void free_large(void* p, size_t bytes) noexcept {
    ::operator delete(p, std::align_val_t(bytes < kHugePage ? 64 : kHugePage));
}

} // namespace base
