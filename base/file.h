// Reading whole files and writing files so that a crash never leaves a damaged one.
// Failures throw base::FileError naming the file.
#pragma once

#include <functional>
#include <string>

namespace base {

// The bytes of a file.
std::string read_file(const std::string& path);

// Calls write(tmp) with tmp = path + ".tmp", flushes tmp to disk and renames it over
// path; on any failure tmp is removed and path is left as it was.
void write_atomically(const std::string& path,
                      const std::function<void(const std::string& tmp)>& write);

// strerror(errno), for the problem part of an error.
std::string errno_text();

} // namespace base
