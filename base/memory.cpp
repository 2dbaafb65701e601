#include "base/memory.h"

#include <fstream>
#include <sstream>

#include "base/error.h"

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

} // namespace base
