// How much memory the machine has available, and a check against it made before a
// large allocation, so that a run that cannot fit fails at once with the sizes; an
// allocator for the large buffers themselves.
#pragma once

#include <cstddef>
#include <new>
#include <string>
#include <vector>

namespace base {

// MemAvailable from /proc/meminfo, in bytes; 0 when it cannot be read.
size_t available_memory();

// Throws base::MemoryError(setting, what, needed, available) when `needed` bytes are
// more than the available memory (never when that is unknown). `what` is the subject
// of "... need N GiB", e.g. "activations and gradients for batch 8 x seq 1024".
void check_memory(size_t needed, const std::string& setting, const std::string& what);

// An allocator for the large, long-lived buffers of a run (parameters, gradients,
// activations, optimizer moments): blocks of 2 MiB or more are aligned to 2 MiB and
// offered to the kernel for transparent huge pages (madvise MADV_HUGEPAGE, which Linux
// honours in its default "madvise" mode), so that the matrix products, which sweep
// hundreds of MiB per step, miss the TLB less; smaller blocks are ordinary. Stateless.
void* allocate_large(size_t bytes);
void free_large(void* p, size_t bytes) noexcept;

template <class T> struct LargeAllocator {
    using value_type = T;
    LargeAllocator() = default;
    template <class U> LargeAllocator(const LargeAllocator<U>&) noexcept {}
    T* allocate(size_t n) {
        if (n > size_t(-1) / sizeof(T)) throw std::bad_array_new_length();
        return static_cast<T*>(allocate_large(n * sizeof(T)));
    }
    void deallocate(T* p, size_t n) noexcept { free_large(p, n * sizeof(T)); }
    template <class U> bool operator==(const LargeAllocator<U>&) const noexcept { return true; }
};

template <class T> using LargeVector = std::vector<T, LargeAllocator<T>>;

} // namespace base
