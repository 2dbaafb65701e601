#include <doctest/doctest.h>

#include "helpers.h"
#include <hdf5.h>
#include <sys/wait.h>

#include <algorithm>
#include <bit>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "model/io.h"
#include "model/layout.h"

namespace fs = std::filesystem;

namespace {

// A fresh directory under the system temp dir, removed with everything in it.
using TempDir = testing::Workdir;

// L2 NH2 C16 V64 (Vp128) T8: small, yet with padded wte rows and two layers.
model::Config small_config() {
    return model::make_config(2, 2, 16, 64, 8);
}

// Distinct values everywhere, the padded wte rows included.
std::vector<float> pattern(const model::Config& c) {
    std::vector<float> p(model::ParamLayout(c).total());
    for (size_t i = 0; i < p.size(); ++i) p[i] = 0.001f * float(i) - 3.0f;
    return p;
}

using testing::read_bytes;

void write_raw(const std::string& path, const std::string& bytes) {
    std::ofstream(path, std::ios::binary).write(bytes.data(), std::streamsize(bytes.size()));
}

void set_header_int(std::string& bytes, int index, int32_t value) {
    std::memcpy(bytes.data() + index * sizeof(int32_t), &value, sizeof value);
}

std::string error_of(const std::string& path) {
    try {
        model::read_model(path);
    } catch (const std::runtime_error& e) {
        return e.what();
    }
    return "(no error)";
}

// The message is one line, names the file and contains `what`.
void check_rejected(const std::string& path, const std::string& what) {
    const std::string message = error_of(path);
    INFO(message);
    CHECK(message.rfind(path + ": ", 0) == 0);
    CHECK(message.find(what) != std::string::npos);
    CHECK(message.find('\n') == std::string::npos);
}

// A valid HDF5 model file, opened read-write so a test can damage it.
struct Hdf5Edit {
    hid_t file;
    explicit Hdf5Edit(const std::string& path) {
        const model::Config c = small_config();
        model::write_hdf5(path, c, pattern(c).data());
        file = H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
        REQUIRE(file >= 0);
    }
    ~Hdf5Edit() { H5Fclose(file); }
};

} // namespace

TEST_CASE("llm.c model file written then read gives back the config and parameters") {
    TempDir tmp;
    const auto c = small_config();
    const auto params = pattern(c);
    model::write_llmc(tmp / "m.bin", c, params.data());

    const model::ModelFile m = model::read_llmc(tmp / "m.bin");
    CHECK(m.config == c);
    CHECK(m.params == params);
    CHECK(fs::file_size(tmp / "m.bin") == 1024 + 4 * params.size());
}

TEST_CASE("llm.c model file round-trips to identical bytes") {
    TempDir tmp;
    const auto c = small_config();
    model::write_llmc(tmp / "a.bin", c, pattern(c).data());

    const model::ModelFile m = model::read_model(tmp / "a.bin");
    model::write_model(tmp / "b.bin", m.config, m.params.data());
    CHECK(read_bytes(tmp / "a.bin") == read_bytes(tmp / "b.bin"));
}

TEST_CASE("llm.c model file header is llm.c's version 3 header") {
    TempDir tmp;
    const auto c = small_config();
    model::write_llmc(tmp / "m.bin", c, pattern(c).data());
    const std::string bytes = read_bytes(tmp / "m.bin");
    std::vector<int32_t> header(256);
    std::memcpy(header.data(), bytes.data(), 1024);
    CHECK(std::vector<int32_t>(header.begin(), header.begin() + 8) ==
          std::vector<int32_t>{20240326, 3, 8, 64, 2, 2, 16, 128});
    for (int i = 8; i < 256; ++i) CHECK(header[i] == 0);
}

TEST_CASE("HDF5 model file written then read gives back the config and parameters") {
    TempDir tmp;
    const auto c = small_config();
    const auto params = pattern(c);
    model::write_model(tmp / "m.h5", c, params.data());
    const model::ModelFile m = model::read_model(tmp / "m.h5");
    CHECK(m.config == c);
    CHECK(m.params == params);

    model::write_model(tmp / "m.hdf5", c, params.data());
    CHECK(model::read_model(tmp / "m.hdf5").params == params);
}

TEST_CASE("llm.c model file converted to HDF5 and back is byte-identical") {
    TempDir tmp;
    const auto c = small_config();
    model::write_llmc(tmp / "a.bin", c, pattern(c).data());

    const auto bin = model::read_model(tmp / "a.bin");
    model::write_model(tmp / "m.h5", bin.config, bin.params.data());
    const auto h5 = model::read_model(tmp / "m.h5");
    model::write_model(tmp / "b.bin", h5.config, h5.params.data());
    CHECK(read_bytes(tmp / "a.bin") == read_bytes(tmp / "b.bin"));
}

TEST_CASE("HDF5 model file has Hugging Face tensor names, shapes and config attributes") {
    TempDir tmp;
    const auto c = small_config();
    const auto params = pattern(c);
    const model::ParamLayout layout(c);
    model::write_hdf5(tmp / "m.h5", c, params.data());

    const hid_t file = H5Fopen((tmp / "m.h5").c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
    REQUIRE(file >= 0);
    auto dims_of = [&](const char* name) {
        const hid_t d = H5Dopen2(file, name, H5P_DEFAULT);
        REQUIRE(d >= 0);
        const hid_t s = H5Dget_space(d);
        std::vector<hsize_t> dims(H5Sget_simple_extent_ndims(s));
        H5Sget_simple_extent_dims(s, dims.data(), nullptr);
        H5Sclose(s);
        H5Dclose(d);
        return dims;
    };
    const hsize_t C = 16;
    CHECK(dims_of("wte.weight") == std::vector<hsize_t>{128, C}); // all Vp rows
    CHECK(dims_of("wpe.weight") == std::vector<hsize_t>{8, C});
    CHECK(dims_of("h.0.ln_1.weight") == std::vector<hsize_t>{C});
    CHECK(dims_of("h.1.attn.c_attn.weight") == std::vector<hsize_t>{C, 3 * C});
    CHECK(dims_of("h.1.attn.c_proj.weight") == std::vector<hsize_t>{C, C});
    CHECK(dims_of("h.1.mlp.c_fc.weight") == std::vector<hsize_t>{C, 4 * C});
    CHECK(dims_of("h.1.mlp.c_proj.weight") == std::vector<hsize_t>{4 * C, C});
    CHECK(dims_of("ln_f.bias") == std::vector<hsize_t>{C});

    H5G_info_t info;
    H5Gget_info(file, &info);
    CHECK(info.nlinks == layout.tensors().size());

    // HF's Conv1D weight [i][j] is our linear weight (j, i).
    const model::TensorInfo& qkv = layout.find("h.1.attn.c_attn.weight");
    std::vector<float> hf(C * 3 * C);
    const hid_t d = H5Dopen2(file, "h.1.attn.c_attn.weight", H5P_DEFAULT);
    const hid_t type = H5Dget_type(d);
    CHECK(H5Tequal(type, H5T_IEEE_F32LE) > 0);
    H5Tclose(type);
    REQUIRE(H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, hf.data()) >= 0);
    H5Dclose(d);
    for (size_t i = 0; i < C; ++i)
        for (size_t j = 0; j < 3 * C; ++j)
            REQUIRE(hf[i * 3 * C + j] == params[qkv.offset + j * C + i]);

    auto int_attr = [&](const char* name) {
        int v = -1;
        const hid_t a = H5Aopen(file, name, H5P_DEFAULT);
        H5Aread(a, H5T_NATIVE_INT, &v);
        H5Aclose(a);
        return v;
    };
    CHECK(int_attr("n_layer") == 2);
    CHECK(int_attr("n_head") == 2);
    CHECK(int_attr("n_embd") == 16);
    CHECK(int_attr("vocab_size") == 64);
    CHECK(int_attr("padded_vocab_size") == 128);
    CHECK(int_attr("n_positions") == 8);

    const hid_t a = H5Aopen(file, "format", H5P_DEFAULT);
    const hid_t str = H5Aget_type(a);
    char* format = nullptr;
    REQUIRE(H5Aread(a, str, &format) >= 0);
    CHECK(std::string(format) == "gpt2-cpp model");
    H5free_memory(format);
    H5Tclose(str);
    H5Aclose(a);
    H5Fclose(file);
}

TEST_CASE("llm.c bf16 (version 5) model file is read and widened to float") {
    TempDir tmp;
    const auto c = small_config();
    const size_t n = model::ParamLayout(c).total();
    // Multiples of 1/4 below 64 have at most 8 significant bits: exact in bf16.
    std::vector<float> expected(n);
    std::vector<uint16_t> bf16(n);
    for (size_t i = 0; i < n; ++i) {
        expected[i] = float(int(i % 500) - 250) / 4;
        bf16[i] = uint16_t(std::bit_cast<uint32_t>(expected[i]) >> 16);
    }
    const int32_t header[8] = {20240326,  5,        c.max_seq, c.vocab,
                               c.n_layer, c.n_head, c.n_embd,  c.padded_vocab};
    std::string bytes(1024, '\0');
    std::memcpy(bytes.data(), header, sizeof header);
    bytes.append(reinterpret_cast<const char*>(bf16.data()), n * sizeof(uint16_t));
    write_raw(tmp / "bf16.bin", bytes);

    const model::ModelFile m = model::read_model(tmp / "bf16.bin");
    CHECK(m.config == c);
    CHECK(m.params == expected);
}

TEST_CASE("model file writers leave no .tmp file behind") {
    TempDir tmp;
    const auto c = small_config();
    const auto params = pattern(c);
    model::write_model(tmp / "m.bin", c, params.data());
    model::write_model(tmp / "m.h5", c, params.data());
    model::write_model(tmp / "m.bin", c, params.data()); // overwriting, too
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(tmp.dir)) names.push_back(e.path().filename());
    std::sort(names.begin(), names.end());
    CHECK(names == std::vector<std::string>{"m.bin", "m.h5"});
}

TEST_CASE("model file write into a missing directory fails naming the file") {
    TempDir tmp;
    const auto c = small_config();
    const auto params = pattern(c);
    for (const char* name : {"no/such/dir/m.bin", "no/such/dir/m.h5"})
        CHECK_THROWS_WITH_AS(model::write_model(tmp / name, c, params.data()),
                             doctest::Contains((tmp / name).c_str()), std::runtime_error);
}

TEST_CASE("missing model file is rejected naming the file") {
    TempDir tmp;
    check_rejected(tmp / "absent.bin", "cannot open");
    check_rejected(tmp / "absent.h5", "cannot open");
}

TEST_CASE("model file with an unknown extension is rejected") {
    TempDir tmp;
    check_rejected(tmp / "model.pt", "unknown model file extension");
}

TEST_CASE("corrupt llm.c model files are rejected with one-line messages naming the file") {
    TempDir tmp;
    const auto c = small_config();
    const std::string path = tmp / "m.bin";
    model::write_llmc(path, c, pattern(c).data());
    std::string good = read_bytes(path);

    SUBCASE("empty") {
        write_raw(path, "");
        check_rejected(path, "too short");
    }
    SUBCASE("shorter than the header") {
        write_raw(path, good.substr(0, 100));
        check_rejected(path, "too short");
    }
    SUBCASE("wrong magic") {
        set_header_int(good, 0, 12345);
        write_raw(path, good);
        check_rejected(path, "bad magic 12345 (expected 20240326");
    }
    SUBCASE("a token shard's magic") {
        set_header_int(good, 0, 20240520);
        write_raw(path, good);
        check_rejected(path, "looks like a token shard");
    }
    SUBCASE("unsupported version") {
        set_header_int(good, 1, 4);
        write_raw(path, good);
        check_rejected(path, "unsupported llm.c model version 4");
    }
    SUBCASE("n_head not dividing n_embd") {
        set_header_int(good, 5, 3);
        write_raw(path, good);
        check_rejected(path, "not divisible by n_head 3");
    }
    SUBCASE("truncated") {
        write_raw(path, good.substr(0, good.size() - 4));
        check_rejected(path, "truncated: expected " + std::to_string(good.size()) +
                                 " bytes, found " + std::to_string(good.size() - 4));
    }
    SUBCASE("trailing bytes") {
        write_raw(path, good + "xy");
        check_rejected(path, "trailing bytes: expected " + std::to_string(good.size()) +
                                 " bytes, found " + std::to_string(good.size() + 2));
    }
    SUBCASE("fp32 parameters under a bf16 header") {
        set_header_int(good, 1, 5);
        write_raw(path, good);
        check_rejected(path, "trailing bytes");
    }
}

TEST_CASE("file with an .h5 extension that is not HDF5 is rejected") {
    TempDir tmp;
    write_raw(tmp / "x.h5", "this is not HDF5");
    check_rejected(tmp / "x.h5", "not an HDF5 file");
}

TEST_CASE("HDF5 tensor whose layout stores fewer bytes than its shape needs is rejected") {
    // Found by fuzz_hdf5_model: a compact 4 x 4 dataset with 0 bytes of data, from which
    // HDF5's own read (and h5dump) copies from a null pointer.
    const fs::path file =
        fs::path(FUZZ_CORPUS_DIR) / "fuzz_hdf5_model" / "regression_compact_no_data.h5";
    REQUIRE(fs::exists(file));
    check_rejected(file, "'h.0.attn.c_proj.weight' has 0 bytes of data stored, and its shape "
                         "needs 64");
}

TEST_CASE("HDF5 file in the format without metadata checksums is refused, and h5repack "
          "as the message says makes it readable") {
    TempDir tmp;
    const auto c = small_config();
    const auto params = pattern(c);
    model::write_hdf5(tmp / "m.h5", c, params.data());
    // Superblock version 0, as h5py writes by default.
    REQUIRE(
        testing::run_shell("h5repack --low=0 --high=1 " + (tmp / "m.h5") + " " + (tmp / "old.h5"))
            .status == 0);
    CHECK(read_bytes(tmp / "old.h5")[8] == 0);
    check_rejected(tmp / "old.h5", "(superblock version 0");
    const std::string message = error_of(tmp / "old.h5");
    const std::string fix = "h5repack --low=1 --high=1 " + (tmp / "old.h5") + " NEW.h5";
    REQUIRE(message.find(fix) != std::string::npos);

    std::string command = fix;
    command.replace(command.size() - 6, 6, tmp / "new.h5");
    REQUIRE(testing::run_shell(command).status == 0);
    const model::ModelFile m = model::read_model(tmp / "new.h5");
    CHECK(m.config == c);
    CHECK(m.params == params);
}

TEST_CASE("HDF5 model file missing a tensor is rejected") {
    TempDir tmp;
    {
        Hdf5Edit h5(tmp / "m.h5");
        REQUIRE(H5Ldelete(h5.file, "h.0.ln_1.weight", H5P_DEFAULT) >= 0);
    }
    check_rejected(tmp / "m.h5", "missing tensor 'h.0.ln_1.weight'");
}

TEST_CASE("HDF5 model file missing a config attribute is rejected") {
    TempDir tmp;
    {
        Hdf5Edit h5(tmp / "m.h5");
        REQUIRE(H5Adelete(h5.file, "n_head") >= 0);
    }
    check_rejected(tmp / "m.h5", "missing attribute 'n_head'");
}

TEST_CASE("HDF5 model file with a tensor in our (out, in) shape instead of HF's is rejected") {
    TempDir tmp;
    {
        Hdf5Edit h5(tmp / "m.h5");
        const char* name = "h.1.mlp.c_fc.weight";
        REQUIRE(H5Ldelete(h5.file, name, H5P_DEFAULT) >= 0);
        const hsize_t dims[2] = {64, 16};
        const hid_t space = H5Screate_simple(2, dims, nullptr);
        const hid_t d =
            H5Dcreate2(h5.file, name, H5T_IEEE_F32LE, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        REQUIRE(d >= 0);
        H5Dclose(d);
        H5Sclose(space);
    }
    check_rejected(tmp / "m.h5",
                   "tensor 'h.1.mlp.c_fc.weight' has shape (64, 16), expected (16, 64)");
}

TEST_CASE("HDF5 model file with float64 tensors is read as float") {
    TempDir tmp;
    const auto c = small_config();
    auto params = pattern(c);
    const model::ParamLayout layout(c);
    const model::TensorInfo& t = layout.find("ln_f.weight");
    {
        Hdf5Edit h5(tmp / "m.h5");
        REQUIRE(H5Ldelete(h5.file, t.name.c_str(), H5P_DEFAULT) >= 0);
        std::vector<double> values(t.size);
        for (size_t i = 0; i < t.size; ++i) values[i] = 0.5 + double(i);
        const hsize_t dims[1] = {t.size};
        const hid_t space = H5Screate_simple(1, dims, nullptr);
        const hid_t d = H5Dcreate2(h5.file, t.name.c_str(), H5T_IEEE_F64LE, space, H5P_DEFAULT,
                                   H5P_DEFAULT, H5P_DEFAULT);
        REQUIRE(H5Dwrite(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, values.data()) >= 0);
        H5Dclose(d);
        H5Sclose(space);
        for (size_t i = 0; i < t.size; ++i) params[t.offset + i] = float(values[i]);
    }
    CHECK(model::read_hdf5(tmp / "m.h5").params == params);
}

TEST_CASE("HDF5 model file whose n_layer disagrees with its tensors is rejected") {
    TempDir tmp;
    {
        Hdf5Edit h5(tmp / "m.h5");
        REQUIRE(H5Adelete(h5.file, "n_layer") >= 0);
        const int64_t one = 1;
        const hid_t space = H5Screate(H5S_SCALAR);
        const hid_t attr =
            H5Acreate2(h5.file, "n_layer", H5T_STD_I64LE, space, H5P_DEFAULT, H5P_DEFAULT);
        REQUIRE(H5Awrite(attr, H5T_NATIVE_INT64, &one) >= 0);
        H5Aclose(attr);
        H5Sclose(space);
    }
    check_rejected(tmp / "m.h5", "is not a parameter of the config L1 NH2 C16");
}

TEST_CASE("HDF5 model file with one damaged byte of tensor data fails its checksum") {
    TempDir tmp;
    const model::Config c = small_config();
    const std::vector<float> p = pattern(c);
    model::write_hdf5(tmp / "m.h5", c, p.data());
    // The bytes of one value of wte, found in the file, then changed in one bit.
    std::string bytes = read_bytes(tmp / "m.h5");
    const float probe[2] = {p[100], p[101]};
    const size_t at = bytes.find(std::string(reinterpret_cast<const char*>(probe), sizeof probe));
    REQUIRE(at != std::string::npos);
    bytes[at] = char(bytes[at] ^ 0x01);
    write_raw(tmp / "m.h5", bytes);
    check_rejected(tmp / "m.h5", "cannot read tensor 'wte.weight' (checksum mismatch");
}

TEST_CASE("a model file written on a full disk is one error, and the old file stays, with no "
          "temporary") {
    // A file size limit makes writes fail as a full disk does (EFBIG instead of ENOSPC),
    // also at HDF5's close, which once crashed the program at exit.
    TempDir tmp;
    const model::Config c = small_config();
    model::write_llmc(tmp / "in.bin", c, pattern(c).data());
    const uintmax_t size = fs::file_size(tmp / "in.bin");
    for (const char* name : {"out.h5", "out.bin", "out.safetensors"})
        for (uintmax_t limit : {size / 4, size - 2048}) {
            CAPTURE(name);
            CAPTURE(limit);
            write_raw(tmp / name, "old");
            const std::string cmd = "sh -c 'trap \"\" XFSZ; ulimit -f " +
                                    std::to_string(limit / 1024) + "; exec " + GPT2_BINARY +
                                    " convert " + (tmp / "in.bin") + " " + (tmp / name) + "' 2>&1";
            FILE* pipe = popen(cmd.c_str(), "r");
            REQUIRE(pipe);
            std::string out;
            char buf[4096];
            while (size_t n = fread(buf, 1, sizeof buf, pipe)) out.append(buf, n);
            const int status = pclose(pipe);
            INFO(out);
            CHECK(WIFEXITED(status));
            CHECK(WEXITSTATUS(status) == 1);
            CHECK(testing::count_lines(out) == 1);
            CHECK(out.rfind("gpt2: error: " + (tmp / name) + ": ", 0) == 0);
            CHECK(read_bytes(tmp / name) == "old");
            CHECK(!fs::exists(tmp / (std::string(name) + ".tmp")));
        }
}
