// Small RAII and helpers over HDF5's C API, shared by model files and checkpoints.
// Every failure throws base::FileError as "PATH: what went wrong".
#pragma once

#include <hdf5.h>

#include <cstdint>
#include <string>
#include <vector>

namespace model::h5 {

static_assert(sizeof(hid_t) == sizeof(int64_t), "model/io.h passes HDF5 ids as int64_t");

// Owns an HDF5 id and closes it with the matching H5?close.
class Id {
public:
    Id(hid_t id, herr_t (*close)(hid_t)) : id_(id), close_(close) {}
    ~Id() {
        if (id_ >= 0) close_(id_);
    }
    Id(const Id&) = delete;
    Id& operator=(const Id&) = delete;
    Id(Id&& o) noexcept : id_(o.id_), close_(o.close_) { o.id_ = -1; }
    operator hid_t() const { return id_; }
    bool ok() const { return id_ >= 0; }
    // Closes now; false if HDF5 reports a failure (the id is given up either way).
    bool close() {
        const hid_t id = id_;
        id_ = -1;
        return id < 0 || close_(id) >= 0;
    }

private:
    hid_t id_;
    herr_t (*close_)(hid_t);
};

// HDF5 prints its whole error stack to stderr by default; we report one line instead.
// Every use of HDF5 starts with one (the first also turns off HDF5's exit handler).
class Quiet {
public:
    Quiet();
    ~Quiet();
    Quiet(const Quiet&) = delete;
    Quiet& operator=(const Quiet&) = delete;

private:
    H5E_auto2_t func_ = nullptr;
    void* data_ = nullptr;
};

// What HDF5's error stack says went wrong, as one phrase: the innermost message and
// the system's reason when there is one ("write failed (No space left on device)").
std::string error_text();

// `path` opened for reading. A file whose superblock is older than version 2 is refused
// before HDF5 parses it: that format has no checksums on its metadata, and libhdf5 1.10
// reads out of bounds on some damaged files of it (tests/fuzz/fuzz_hdf5_model found one),
// while from version 2 on HDF5 verifies each object header's checksum before parsing it.
// FileError "not an HDF5 file" when there is no superblock.
Id open_file(const std::string& path);

// A new file at `tmp` for writing `path` (the name in errors), in the HDF5 1.8 format,
// whose object headers carry checksums. close_file closes it, checking the close, where
// HDF5 writes most of the file; FileError on failure. On an error in between, close the
// datasets and groups first (their Ids go out of scope), then the file: a file left open
// with unwritten data would be flushed again when the library shuts down at exit.
Id create_file(const std::string& tmp, const std::string& path);
void close_file(Id& file, const std::string& path);

// Scalar attributes on a file, group or dataset (integers as int64, text as UTF-8).
void write_attr(hid_t loc, const char* name, int64_t value, const std::string& path);
void write_attr(hid_t loc, const char* name, double value, const std::string& path);
void write_attr(hid_t loc, const char* name, const std::string& value, const std::string& path);
int64_t read_int(hid_t loc, const char* name, const std::string& path);
double read_double(hid_t loc, const char* name, const std::string& path);
std::string read_string(hid_t loc, const char* name, const std::string& path);

// float32 datasets, chunked with HDF5's Fletcher-32 checksum, which every read (ours,
// h5py's) verifies; reading checks the shape, converts any numeric type to float and
// reports a checksum mismatch as a damaged tensor.
void write_floats(hid_t loc, const std::string& name, const std::vector<hsize_t>& dims,
                  const float* data, const std::string& path);
void read_floats(hid_t loc, const std::string& name, const std::vector<hsize_t>& dims, float* dst,
                 const std::string& path);

std::string shape_text(const std::vector<hsize_t>& dims);

} // namespace model::h5
