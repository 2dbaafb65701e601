#include "base/file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "base/error.h"

namespace base {

std::string errno_text() {
    return std::strerror(errno);
}

std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw FileError(path, "cannot open (" + errno_text() + ")");
    std::ostringstream s;
    s << in.rdbuf();
    if (in.bad()) throw FileError(path, "read failed");
    return s.str();
}

void write_atomically(const std::string& path,
                      const std::function<void(const std::string&)>& write) {
    const std::string tmp = path + ".tmp";
    try {
        write(tmp);
        // Data on disk before the rename makes it visible, so a crash leaves either the
        // old file or the complete new one.
        const int fd = ::open(tmp.c_str(), O_RDONLY);
        if (fd < 0 || ::fsync(fd) != 0) {
            const std::string why = errno_text();
            if (fd >= 0) ::close(fd);
            throw FileError(path, "cannot flush " + tmp + " (" + why + ")");
        }
        ::close(fd);
        std::error_code ec;
        std::filesystem::rename(tmp, path, ec);
        if (ec) throw FileError(path, "cannot rename " + tmp + " to it (" + ec.message() + ")");
    } catch (...) {
        std::error_code ignored;
        std::filesystem::remove(tmp, ignored);
        throw;
    }
}

} // namespace base
