#include "base/file.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "base/error.h"

namespace base {

namespace fs = std::filesystem;

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

std::string temporary_path(const std::string& path) {
    return path + ".tmp";
}

bool is_temporary(const std::string& path) {
    return path.ends_with(".tmp");
}

namespace {

// fsync of a file or folder opened read-only; false with errno set on failure.
bool sync_path(const std::string& path, int flags) {
    const int fd = ::open(path.c_str(), O_RDONLY | flags);
    if (fd < 0) return false;
    const bool ok = ::fsync(fd) == 0;
    const int saved = errno;
    ::close(fd);
    errno = saved;
    return ok;
}

} // namespace

void write_atomically(const std::string& path,
                      const std::function<void(const std::string&)>& write) {
    const std::string tmp = temporary_path(path);
    try {
        write(tmp);
        // Data on disk before the rename makes it visible, so a crash leaves either the
        // old file or the complete new one.
        if (!sync_path(tmp, 0))
            throw FileError(path, "cannot flush " + tmp + " (" + errno_text() + ")");
        std::error_code ec;
        fs::rename(tmp, path, ec);
        if (ec) throw FileError(path, "cannot rename " + tmp + " to it (" + ec.message() + ")");
    } catch (...) {
        std::error_code ignored;
        fs::remove(tmp, ignored);
        throw;
    }
    // The rename itself is durable once the folder is flushed. The new file is in place
    // whatever happens here, so a failure only leaves its durability to the system.
    const fs::path dir = fs::path(path).parent_path();
    sync_path(dir.empty() ? "." : dir.string(), O_DIRECTORY);
}

FileLock::FileLock(const std::string& path) {
    fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd_ < 0) throw FileError(path, "cannot create lock file (" + errno_text() + ")");
    if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
        const bool busy = errno == EWOULDBLOCK;
        const std::string why = errno_text();
        char buf[32] = {};
        const ssize_t n = ::pread(fd_, buf, sizeof buf - 1, 0);
        ::close(fd_);
        fd_ = -1;
        if (!busy) throw FileError(path, "cannot lock (" + why + ")");
        const std::string pid = n > 0 ? std::string(buf, size_t(n)) : "";
        const size_t end = pid.find_first_not_of("0123456789");
        throw FileError(path, "held by pid " +
                                  (pid.empty() || end == 0 ? "unknown" : pid.substr(0, end)));
    }
    const std::string pid = std::to_string(::getpid()) + "\n";
    if (::ftruncate(fd_, 0) != 0 || ::pwrite(fd_, pid.data(), pid.size(), 0) < 0) {
        // The lock holds without the pid; only the message of a second process suffers.
    }
}

FileLock::~FileLock() {
    if (fd_ >= 0) ::close(fd_); // releases the lock
}

} // namespace base
