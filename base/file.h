// Reading whole files, writing files so that a crash never leaves a damaged one, and
// locking a folder for one process. Failures throw base::FileError naming the file.
#pragma once

#include <functional>
#include <string>

namespace base {

// The bytes of a file.
std::string read_file(const std::string& path);

// Where write_atomically writes path first: path + ".tmp", so that a temporary left by a
// killed process is recognised by its name (see is_temporary) and can be removed.
std::string temporary_path(const std::string& path);
bool is_temporary(const std::string& path);

// Calls write(tmp) with tmp = temporary_path(path), flushes tmp to disk, renames it over
// path and flushes the folder; on any failure tmp is removed and path is left as it was.
// write must report its own failures (a full disk) by throwing.
void write_atomically(const std::string& path,
                      const std::function<void(const std::string& tmp)>& write);

// An exclusive lock on a file (created if missing), held until destroyed: flock, so the
// kernel releases it when the process dies, however it dies. The holder's pid is written
// into the file; a second process trying to take the lock gets a FileError(path, "held by
// pid N").
class FileLock {
public:
    explicit FileLock(const std::string& path);
    ~FileLock();
    FileLock(const FileLock&) = delete;
    FileLock& operator=(const FileLock&) = delete;

private:
    int fd_ = -1;
};

// strerror(errno), for the problem part of an error.
std::string errno_text();

} // namespace base
