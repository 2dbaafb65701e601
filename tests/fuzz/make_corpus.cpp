// Writes the binary seed inputs of tests/fuzz/corpus (model files and shards of a tiny
// model, valid and damaged) with the libraries' own writers, so that the seeds follow
// the formats exactly. Usage: make_corpus CORPUS_DIR. The text seeds are written by hand.
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "data/shard.h"
#include "model/config.h"
#include "model/hdf5_file.h"
#include "model/layout.h"
#include "model/llmc_file.h"
#include "model/safetensors.h"

namespace fs = std::filesystem;

namespace {

std::string read(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write(const fs::path& p, const std::string& bytes) {
    fs::create_directories(p.parent_path());
    std::ofstream(p, std::ios::binary) << bytes;
}

// The model file at `from`, whole and cut short, moved into `dir`.
void whole_and_cut(const fs::path& from, const fs::path& dir, const std::string& name, size_t cut) {
    const std::string bytes = read(from);
    write(dir / name, bytes);
    write(dir / ("truncated_" + name), bytes.substr(0, cut));
    fs::remove(from);
}

} // namespace

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: %s CORPUS_DIR\n", argv[0]);
        return 2;
    }
    const fs::path out = argv[1], tmp = out / "tmp";
    fs::create_directories(tmp);

    // L1 NH1 C4 V8 T4, as in fuzz_safetensors' config.json; Vp = V keeps it small.
    model::Config c = model::make_config(1, 1, 4, 8, 4);
    c.padded_vocab = 8;
    std::vector<float> params(model::ParamLayout(c).total());
    for (size_t i = 0; i < params.size(); ++i) params[i] = float(int(i % 17) - 8) / 16.0f;

    // llm.c: v3, v5 (bf16: the top half of each float), a shard's header.
    model::write_llmc((tmp / "m.bin").string(), c, params.data());
    std::string v3 = read(tmp / "m.bin");
    whole_and_cut(tmp / "m.bin", out / "fuzz_llmc_model", "v3.bin", 1500);
    std::string v5 = v3.substr(0, 1024);
    v5[4] = 5;
    for (float p : params) {
        uint32_t u;
        std::memcpy(&u, &p, 4);
        const uint16_t h = uint16_t(u >> 16);
        v5.append(reinterpret_cast<const char*>(&h), 2);
    }
    write(out / "fuzz_llmc_model" / "v5.bin", v5);

    // Shards: some tokens, none, cut short, a bad version.
    const std::vector<uint16_t> tokens = {50256, 464, 3797, 3332, 319, 262, 2603, 13, 0, 65535};
    data::write_shard((tmp / "s.bin").string(), tokens.data(), tokens.size());
    std::string shard = read(tmp / "s.bin");
    whole_and_cut(tmp / "s.bin", out / "fuzz_shard", "ten.bin", 1030);
    data::write_shard((tmp / "s.bin").string(), tokens.data(), 0);
    whole_and_cut(tmp / "s.bin", out / "fuzz_shard", "empty.bin", 1000);
    shard[4] = 2;
    write(out / "fuzz_shard" / "version2.bin", shard);
    write(out / "fuzz_shard" / "model_header.bin", v3.substr(0, 1024));
    write(out / "fuzz_llmc_model" / "shard_header.bin", shard.substr(0, 1024));

    // safetensors (its config.json is the target's own), HDF5.
    model::write_safetensors((tmp / "m.safetensors").string(), c, params.data());
    whole_and_cut(tmp / "m.safetensors", out / "fuzz_safetensors", "f32.safetensors", 2000);
    model::write_hdf5((tmp / "m.h5").string(), c, params.data());
    whole_and_cut(tmp / "m.h5", out / "fuzz_hdf5_model", "tiny.h5", 4096);
    fs::remove_all(tmp);
    return 0;
}
