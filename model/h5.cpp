#include "model/h5.h"

#include <algorithm>
#include <cstdio>
#include <stdexcept>

#include "base/error.h"
#include "base/file.h"

namespace model::h5 {

namespace {

[[noreturn]] void fail(const std::string& path, const std::string& what) {
    throw base::FileError(path, what);
}

void write_scalar(hid_t loc, const char* name, hid_t file_type, hid_t mem_type, const void* value,
                  const std::string& path) {
    Id space(H5Screate(H5S_SCALAR), H5Sclose);
    Id attr(H5Acreate2(loc, name, file_type, space, H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
    if (!attr.ok() || H5Awrite(attr, mem_type, value) < 0)
        fail(path, std::string("cannot write attribute '") + name + "' (" + error_text() + ")");
}

Id open_attr(hid_t loc, const char* name, const std::string& path) {
    const htri_t exists = H5Aexists(loc, name);
    if (exists < 0)
        fail(path, std::string("cannot read attribute '") + name + "' (" + error_text() + ")");
    if (exists == 0) fail(path, std::string("missing attribute '") + name + "'");
    return Id(H5Aopen(loc, name, H5P_DEFAULT), H5Aclose);
}

template <class T>
T read_scalar(hid_t loc, const char* name, hid_t mem_type, bool integer_only, const char* what,
              const std::string& path) {
    Id attr = open_attr(loc, name, path);
    Id space(H5Aget_space(attr), H5Sclose);
    Id type(H5Aget_type(attr), H5Tclose);
    const H5T_class_t cls = H5Tget_class(type);
    T value{};
    if (H5Sget_simple_extent_npoints(space) != 1 ||
        (cls != H5T_INTEGER && (integer_only || cls != H5T_FLOAT)) ||
        H5Aread(attr, mem_type, &value) < 0)
        fail(path, std::string("attribute '") + name + "' is not a single " + what);
    return value;
}

herr_t collect_error(unsigned, const H5E_error2_t* e, void* out) {
    if (e->desc) static_cast<std::vector<std::string>*>(out)->push_back(e->desc);
    return 0;
}

// The chunk shape of a dataset: whole rows, about kChunkElements floats a chunk (HDF5
// keeps a chunk under 4 GiB; checksums are per chunk).
constexpr hsize_t kChunkElements = hsize_t(1) << 22;

std::vector<hsize_t> chunk_shape(const std::vector<hsize_t>& dims) {
    std::vector<hsize_t> chunk = dims;
    hsize_t row = 1;
    for (size_t i = 1; i < dims.size(); ++i) row *= dims[i];
    chunk[0] = std::clamp<hsize_t>(kChunkElements / std::max<hsize_t>(row, 1), 1, dims[0]);
    return chunk;
}

} // namespace

std::string error_text() {
    std::vector<std::string> stack; // innermost first
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, collect_error, &stack);
    for (const std::string& d : stack)
        if (d.find("checksum") != std::string::npos)
            return "checksum mismatch: the data are damaged";
    // The file drivers quote the system's reason: "..., error message = 'No space left on
    // device', ...".
    for (const std::string& d : stack) {
        const std::string key = "error message = '";
        const size_t at = d.find(key);
        if (at == std::string::npos) continue;
        const size_t end = d.find('\'', at + key.size());
        return d.substr(at + key.size(), end == std::string::npos ? end : end - at - key.size());
    }
    return stack.empty() ? "unknown HDF5 error" : stack.front();
}

Id open_file(const std::string& path) {
    // The superblock starts at 0 or at a power of two from 512 on (after a user block),
    // with the 8-byte signature and then its version.
    std::FILE* f = std::fopen(path.c_str(), "rb");
    if (!f) fail(path, "cannot open (" + base::errno_text() + ")");
    static constexpr unsigned char kSignature[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
    int version = -1;
    for (long at = 0; version < 0 && at < (1L << 40); at = at ? at * 2 : 512) {
        unsigned char head[9];
        if (std::fseek(f, at, SEEK_SET) != 0 || std::fread(head, 1, 9, f) != 9) break;
        if (std::equal(kSignature, kSignature + 8, head)) version = head[8];
    }
    std::fclose(f);
    if (version < 0) fail(path, "not an HDF5 file");
    if (version < 2)
        fail(path, "HDF5 file without metadata checksums (superblock version " +
                       std::to_string(version) +
                       ": h5py's default, and gpt2's before 2026-12-02), which gpt2 does not "
                       "parse; 'h5repack --low=1 --high=1 " +
                       path + " NEW.h5' rewrites it with checksums");
    Id file(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose);
    if (!file.ok()) fail(path, "cannot open as HDF5 (" + error_text() + ")");
    return file;
}

Id create_file(const std::string& tmp, const std::string& path) {
    Id fapl(H5Pcreate(H5P_FILE_ACCESS), H5Pclose);
    H5Pset_libver_bounds(fapl, H5F_LIBVER_V18, H5F_LIBVER_V18);
    Id file(H5Fcreate(tmp.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl), H5Fclose);
    if (!file.ok()) fail(path, "cannot create " + tmp + " (" + error_text() + ")");
    return file;
}

void close_file(Id& file, const std::string& path) {
    if (H5Fflush(file, H5F_SCOPE_GLOBAL) < 0 || !file.close())
        fail(path, "write failed (" + error_text() + ")");
}

Quiet::Quiet() {
    // HDF5 1.10 crashes at exit (in H5F__close_cb, from its atexit handler) for a file
    // whose close failed, as on a full disk. Every file we open is closed by its Id, so
    // the library needs no handler: this turns it off, if it is still the first call.
    H5dont_atexit();
    H5Eget_auto2(H5E_DEFAULT, &func_, &data_);
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
}

Quiet::~Quiet() {
    H5Eset_auto2(H5E_DEFAULT, func_, data_);
}

void write_attr(hid_t loc, const char* name, int64_t value, const std::string& path) {
    write_scalar(loc, name, H5T_STD_I64LE, H5T_NATIVE_INT64, &value, path);
}

void write_attr(hid_t loc, const char* name, double value, const std::string& path) {
    write_scalar(loc, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &value, path);
}

// Variable-length UTF-8, so h5py reads it as a str rather than bytes.
void write_attr(hid_t loc, const char* name, const std::string& value, const std::string& path) {
    Id type(H5Tcopy(H5T_C_S1), H5Tclose);
    H5Tset_size(type, H5T_VARIABLE);
    H5Tset_cset(type, H5T_CSET_UTF8);
    const char* text = value.c_str();
    write_scalar(loc, name, type, type, &text, path);
}

int64_t read_int(hid_t loc, const char* name, const std::string& path) {
    return read_scalar<int64_t>(loc, name, H5T_NATIVE_INT64, true, "integer", path);
}

double read_double(hid_t loc, const char* name, const std::string& path) {
    return read_scalar<double>(loc, name, H5T_NATIVE_DOUBLE, false, "number", path);
}

std::string read_string(hid_t loc, const char* name, const std::string& path) {
    Id attr = open_attr(loc, name, path);
    Id type(H5Aget_type(attr), H5Tclose);
    if (H5Tget_class(type) != H5T_STRING)
        fail(path, std::string("attribute '") + name + "' is not text");
    if (H5Tis_variable_str(type) > 0) {
        char* text = nullptr; // read with the file's own type: HDF5 will not convert the charset
        if (H5Aread(attr, type, &text) < 0 || !text)
            fail(path, std::string("cannot read attribute '") + name + "'");
        std::string value(text);
        H5free_memory(text);
        return value;
    }
    std::string value(H5Tget_size(type), '\0');
    if (H5Aread(attr, type, value.data()) < 0)
        fail(path, std::string("cannot read attribute '") + name + "'");
    value.resize(std::min(value.size(), value.find('\0')));
    return value;
}

void write_floats(hid_t loc, const std::string& name, const std::vector<hsize_t>& dims,
                  const float* data, const std::string& path) {
    Id space(H5Screate_simple(int(dims.size()), dims.data(), nullptr), H5Sclose);
    Id dcpl(H5Pcreate(H5P_DATASET_CREATE), H5Pclose);
    hsize_t n = 1;
    for (hsize_t d : dims) n *= d;
    if (n > 0 && !dims.empty()) {
        const std::vector<hsize_t> chunk = chunk_shape(dims);
        if (H5Pset_chunk(dcpl, int(chunk.size()), chunk.data()) < 0 || H5Pset_fletcher32(dcpl) < 0)
            fail(path, "cannot set up tensor '" + name + "' (" + error_text() + ")");
    }
    Id dset(H5Dcreate2(loc, name.c_str(), H5T_IEEE_F32LE, space, H5P_DEFAULT, dcpl, H5P_DEFAULT),
            H5Dclose);
    if (!dset.ok() || H5Dwrite(dset, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0)
        fail(path, "cannot write tensor '" + name + "' (" + error_text() + ")");
}

void read_floats(hid_t loc, const std::string& name, const std::vector<hsize_t>& dims, float* dst,
                 const std::string& path) {
    const htri_t exists = H5Lexists(loc, name.c_str(), H5P_DEFAULT);
    if (exists < 0) fail(path, "cannot read tensor '" + name + "' (" + error_text() + ")");
    if (exists == 0) fail(path, "missing tensor '" + name + "'");
    Id dset(H5Dopen2(loc, name.c_str(), H5P_DEFAULT), H5Dclose);
    if (!dset.ok()) fail(path, "'" + name + "' is not a dataset (" + error_text() + ")");
    Id space(H5Dget_space(dset), H5Sclose);
    const int rank = H5Sget_simple_extent_ndims(space);
    std::vector<hsize_t> found(std::max(rank, 0));
    H5Sget_simple_extent_dims(space, found.data(), nullptr);
    if (found != dims)
        fail(path, "tensor '" + name + "' has shape " + shape_text(found) + ", expected " +
                       shape_text(dims));
    Id type(H5Dget_type(dset), H5Tclose);
    const H5T_class_t cls = H5Tget_class(type);
    if (cls != H5T_FLOAT && cls != H5T_INTEGER) fail(path, "tensor '" + name + "' is not numeric");
    // A corrupt type size would have HDF5 allocate (and clear) size x elements bytes.
    const size_t size = H5Tget_size(type);
    if (size == 0 || size > 8)
        fail(path, "tensor '" + name + "' has " + std::to_string(size) +
                       "-byte elements, not a number of at most 8 bytes");
    // A damaged layout message can leave a compact or contiguous dataset with less data
    // than its shape needs, and HDF5 then copies from nothing (a crash). Chunked data may
    // be compressed, so its stored size says nothing.
    Id plist(H5Dget_create_plist(dset), H5Pclose);
    const H5D_layout_t layout = plist.ok() ? H5Pget_layout(plist) : H5D_LAYOUT_ERROR;
    if (layout == H5D_COMPACT || layout == H5D_CONTIGUOUS) {
        const hssize_t points = H5Sget_simple_extent_npoints(space);
        const hsize_t needed = hsize_t(std::max<hssize_t>(points, 0)) * size;
        const hsize_t stored = H5Dget_storage_size(dset);
        if (stored < needed)
            fail(path, "tensor '" + name + "' has " + std::to_string(stored) +
                           " bytes of data stored, and its shape needs " + std::to_string(needed));
    }
    if (H5Dread(dset, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, dst) < 0)
        fail(path, "cannot read tensor '" + name + "' (" + error_text() + ")");
}

std::string shape_text(const std::vector<hsize_t>& dims) {
    std::string s = "(";
    for (size_t i = 0; i < dims.size(); ++i) s += (i ? ", " : "") + std::to_string(dims[i]);
    return s + ")";
}

} // namespace model::h5
