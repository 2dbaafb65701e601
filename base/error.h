// The errors that every library reports, typed so that the program can word them as
// "gpt2: error: <file or option>: <what is wrong>" while the libraries know nothing
// of its option names.
#pragma once

#include <cstddef>
#include <stdexcept>
#include <string>

namespace base {

// Something is wrong with a file (or folder, or glob) that is read or written.
// what() is "PATH: PROBLEM", or "PATH:LINE: PROBLEM" when the line is known.
class FileError : public std::runtime_error {
public:
    FileError(const std::string& path, const std::string& problem, size_t line = 0)
        : std::runtime_error(path + (line ? ":" + std::to_string(line) : "") + ": " + problem),
          path_(path), problem_(problem), line_(line) {}

    const std::string& path() const noexcept { return path_; }
    const std::string& problem() const noexcept { return problem_; }
    size_t line() const noexcept { return line_; } // 1-based; 0 when not about one line

private:
    std::string path_, problem_;
    size_t line_;
};

// A setting given to a library is out of its range, or two settings disagree.
// setting() is the library's own name for it: the field of its options struct
// ("stride", "grad_clip"), which the program maps to its own option name. what() is
// "SETTING: PROBLEM".
class SettingError : public std::invalid_argument {
public:
    SettingError(const std::string& setting, const std::string& problem)
        : std::invalid_argument(setting + ": " + problem), setting_(setting), problem_(problem) {}

    const std::string& setting() const noexcept { return setting_; }
    const std::string& problem() const noexcept { return problem_; }

private:
    std::string setting_, problem_;
};

} // namespace base
