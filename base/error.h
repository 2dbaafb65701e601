// The errors that every library reports, typed so that the program can word them as
// "gpt2: error: <file or option>: <what is wrong>" while the libraries know nothing
// of its option names.
#pragma once

#include <cstddef>
#include <cstdio>
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
// ("stride", "grad_clip"), which the program maps to its own option name. The problem
// may name other settings as {name} ("resume it with {resume}"), which the program shows
// as their options too. what() is "SETTING: PROBLEM".
class SettingError : public std::invalid_argument {
public:
    SettingError(const std::string& setting, const std::string& problem)
        : std::invalid_argument(setting + ": " + problem), setting_(setting), problem_(problem) {}

    const std::string& setting() const noexcept { return setting_; }
    const std::string& problem() const noexcept { return problem_; }

private:
    std::string setting_, problem_;
};

// A computation would need more memory than the machine has available. what() says
// what the memory is for and how much is needed and available; setting() is the
// library's name for the setting that scales it ("batch"), for the program to name.
class MemoryError : public std::runtime_error {
public:
    MemoryError(const std::string& setting, const std::string& what, size_t needed,
                size_t available)
        : std::runtime_error(what + " need " + gib(needed) + " of memory, and " + gib(available) +
                             " is available"),
          setting_(setting), needed_(needed), available_(available) {}

    const std::string& setting() const noexcept { return setting_; }
    size_t needed() const noexcept { return needed_; }
    size_t available() const noexcept { return available_; }

    static std::string gib(size_t bytes) {
        char text[32];
        std::snprintf(text, sizeof text, "%.2f GiB", double(bytes) / double(1ull << 30));
        return text;
    }

private:
    std::string setting_;
    size_t needed_, available_;
};

} // namespace base
