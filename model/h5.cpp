#include "model/h5.h"

#include <algorithm>
#include <stdexcept>

#include "base/error.h"

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
        fail(path, std::string("cannot write attribute '") + name + "'");
}

Id open_attr(hid_t loc, const char* name, const std::string& path) {
    if (H5Aexists(loc, name) <= 0) fail(path, std::string("missing attribute '") + name + "'");
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

} // namespace

Quiet::Quiet() {
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
    Id dset(
        H5Dcreate2(loc, name.c_str(), H5T_IEEE_F32LE, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
        H5Dclose);
    if (!dset.ok() || H5Dwrite(dset, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0)
        fail(path, "cannot write tensor '" + name + "'");
}

void read_floats(hid_t loc, const std::string& name, const std::vector<hsize_t>& dims, float* dst,
                 const std::string& path) {
    if (H5Lexists(loc, name.c_str(), H5P_DEFAULT) <= 0) fail(path, "missing tensor '" + name + "'");
    Id dset(H5Dopen2(loc, name.c_str(), H5P_DEFAULT), H5Dclose);
    if (!dset.ok()) fail(path, "'" + name + "' is not a dataset");
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
    if (const size_t size = H5Tget_size(type); size == 0 || size > 8)
        fail(path, "tensor '" + name + "' has " + std::to_string(size) +
                       "-byte elements, not a number of at most 8 bytes");
    if (H5Dread(dset, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, dst) < 0)
        fail(path, "cannot read tensor '" + name + "'");
}

std::string shape_text(const std::vector<hsize_t>& dims) {
    std::string s = "(";
    for (size_t i = 0; i < dims.size(); ++i) s += (i ? ", " : "") + std::to_string(dims[i]);
    return s + ")";
}

} // namespace model::h5
