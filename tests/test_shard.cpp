#include <doctest/doctest.h>

#include "helpers.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "base/error.h"
#include "data/shard.h"

namespace fs = std::filesystem;

namespace {

// A fresh directory under the system temp dir, removed with everything in it.
using TempDir = testing::Workdir;

std::vector<uint16_t> some_tokens(size_t n) {
    std::vector<uint16_t> t(n);
    for (size_t i = 0; i < n; ++i) t[i] = uint16_t(i * 7919 % 50257);
    return t;
}

std::string read_bytes(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_raw(const std::string& path, const std::string& bytes) {
    std::ofstream(path, std::ios::binary).write(bytes.data(), std::streamsize(bytes.size()));
}

int32_t header_int(const std::string& bytes, int index) {
    int32_t v;
    std::memcpy(&v, bytes.data() + index * sizeof(int32_t), sizeof v);
    return v;
}

void set_header_int(std::string& bytes, int index, int32_t value) {
    std::memcpy(bytes.data() + index * sizeof(int32_t), &value, sizeof value);
}

// open(path) throws an Error whose message is one line, starts with the file name and
// contains `what`.
template <class Error, class Open>
void check_rejected_by(const Open& open, const std::string& path, const std::string& what) {
    std::string message = "(no error)";
    try {
        open(path);
    } catch (const Error& e) {
        message = e.what();
    }
    INFO(message);
    CHECK(message.rfind(path + ": ", 0) == 0);
    CHECK(message.find(what) != std::string::npos);
    CHECK(message.find('\n') == std::string::npos);
}

void check_rejected(const std::string& path, const std::string& what) {
    check_rejected_by<std::runtime_error>([](const std::string& p) { data::Shard shard(p); }, path,
                                          what);
}

} // namespace

TEST_CASE("token shard written then opened gives back the tokens") {
    TempDir tmp;
    const auto tokens = some_tokens(1000);
    data::write_shard(tmp / "s.bin", tokens.data(), tokens.size());

    const data::Shard shard(tmp / "s.bin");
    CHECK(shard.path() == tmp / "s.bin");
    REQUIRE(shard.size() == tokens.size());
    CHECK(std::vector<uint16_t>(shard.tokens(), shard.tokens() + shard.size()) == tokens);
    CHECK(shard[999] == tokens[999]);
}

TEST_CASE("token shard file has llm.c's byte layout") {
    TempDir tmp;
    const std::vector<uint16_t> tokens = {0x1234, 0xfffe, 0, 50256};
    data::write_shard(tmp / "s.bin", tokens.data(), tokens.size());

    const std::string bytes = read_bytes(tmp / "s.bin");
    REQUIRE(bytes.size() == 1024 + 2 * tokens.size());
    CHECK(header_int(bytes, 0) == 20240520);
    CHECK(header_int(bytes, 1) == 1);
    CHECK(header_int(bytes, 2) == 4);
    for (int i = 3; i < 256; ++i) CHECK(header_int(bytes, i) == 0);
    const std::vector<uint8_t> body(bytes.begin() + 1024, bytes.end());
    CHECK(body == std::vector<uint8_t>{0x34, 0x12, 0xfe, 0xff, 0x00, 0x00, 0x50, 0xc4});
}

TEST_CASE("token shard with zero tokens opens empty") {
    TempDir tmp;
    data::write_shard(tmp / "s.bin", nullptr, 0);
    CHECK(fs::file_size(tmp / "s.bin") == 1024);
    CHECK(data::Shard(tmp / "s.bin").size() == 0);
}

TEST_CASE("token shard write leaves no .tmp file and replaces an existing shard") {
    TempDir tmp;
    const auto tokens = some_tokens(10);
    data::write_shard(tmp / "s.bin", tokens.data(), 5);
    data::write_shard(tmp / "s.bin", tokens.data(), 10);
    CHECK(data::Shard(tmp / "s.bin").size() == 10);
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(tmp.dir)) names.push_back(e.path().filename());
    CHECK(names == std::vector<std::string>{"s.bin"});
}

TEST_CASE("token shard write into a missing directory fails naming the file") {
    TempDir tmp;
    const auto tokens = some_tokens(10);
    CHECK_THROWS_WITH_AS(data::write_shard(tmp / "no/dir/s.bin", tokens.data(), 10),
                         doctest::Contains((tmp / "no/dir/s.bin").c_str()), std::runtime_error);
}

TEST_CASE("token shard moves keep the mapping valid") {
    TempDir tmp;
    const auto a = some_tokens(100), b = some_tokens(200);
    data::write_shard(tmp / "a.bin", a.data(), a.size());
    data::write_shard(tmp / "b.bin", b.data(), b.size());

    data::Shard first(tmp / "a.bin");
    data::Shard moved(std::move(first));
    CHECK(first.size() == 0);
    CHECK(moved.size() == 100);
    CHECK(moved[99] == a[99]);
    data::Shard other(tmp / "b.bin");
    moved = std::move(other);
    CHECK(moved.path() == tmp / "b.bin");
    CHECK(moved.size() == 200);
    CHECK(moved[199] == b[199]);
}

TEST_CASE("corrupt token shard files are rejected with one-line messages naming the file") {
    TempDir tmp;
    const std::string path = tmp / "s.bin";
    const auto tokens = some_tokens(100);
    data::write_shard(path, tokens.data(), tokens.size());
    std::string good = read_bytes(path);

    SUBCASE("missing") {
        check_rejected(tmp / "absent.bin", "cannot open");
    }
    SUBCASE("empty") {
        write_raw(path, "");
        check_rejected(path, "empty file");
    }
    SUBCASE("shorter than the header") {
        write_raw(path, good.substr(0, 1000));
        check_rejected(path, "too short for a token shard (1000 bytes");
    }
    SUBCASE("wrong magic") {
        set_header_int(good, 0, 7);
        write_raw(path, good);
        check_rejected(path, "bad magic 7 (expected 20240520");
    }
    SUBCASE("an llm.c model file's magic") {
        set_header_int(good, 0, 20240326);
        write_raw(path, good);
        check_rejected(path, "looks like an llm.c model file");
    }
    SUBCASE("unsupported version") {
        set_header_int(good, 1, 2);
        write_raw(path, good);
        check_rejected(path, "unsupported shard version 2");
    }
    SUBCASE("truncated") {
        write_raw(path, good.substr(0, good.size() - 1));
        check_rejected(path,
                       "truncated: header says 100 tokens, so expected 1224 bytes, found 1223");
    }
    SUBCASE("trailing bytes") {
        write_raw(path, good + "ab");
        check_rejected(
            path, "trailing bytes: header says 100 tokens, so expected 1224 bytes, found 1226");
    }
    SUBCASE("a directory") {
        check_rejected(tmp.dir.string(), "not a regular file");
    }
}

namespace {

// As check_rejected, for a mask of a shard of n_tokens.
void check_mask_rejected(const std::string& path, size_t n_tokens, const std::string& what) {
    check_rejected_by<base::FileError>(
        [&](const std::string& p) { data::ShardMask mask(p, n_tokens); }, path, what);
}

} // namespace

TEST_CASE("a shard written with classes gets a mask beside it that reads back") {
    TempDir tmp;
    const auto tokens = some_tokens(12);
    const std::vector<uint8_t> classes = {0, 1, 1, 2, 2, 0, 0, 1, 2, 2, 2, 0};
    data::write_shard(tmp / "s.bin", tokens.data(), tokens.size(), classes.data(), 6);
    CHECK(data::mask_path(tmp / "s.bin") == tmp / "s.bin.mask");

    const data::Shard shard(tmp / "s.bin");
    CHECK(std::vector<uint16_t>(shard.tokens(), shard.tokens() + shard.size()) == tokens);
    const data::ShardMask mask(tmp / "s.bin.mask", shard.size());
    CHECK(!mask.empty());
    CHECK(mask.path() == tmp / "s.bin.mask");
    CHECK(mask.size() == 12);
    CHECK(mask.row_tokens() == 6);
    CHECK(std::vector<uint8_t>(mask.classes(), mask.classes() + mask.size()) == classes);
    CHECK(mask[3] == data::kScoredToken);

    // The layout: int32 header {20261202, 1, n_tokens, row_tokens, 0...}, then the classes.
    const std::string bytes = read_bytes(tmp / "s.bin.mask");
    REQUIRE(bytes.size() == 1024 + 12);
    CHECK(header_int(bytes, 0) == 20261202);
    CHECK(header_int(bytes, 1) == 1);
    CHECK(header_int(bytes, 2) == 12);
    CHECK(header_int(bytes, 3) == 6);
    for (int i = 4; i < 256; ++i) CHECK(header_int(bytes, i) == 0);
    CHECK(bytes.substr(1024) == std::string(classes.begin(), classes.end()));

    // No temporaries are left.
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(tmp.dir)) names.push_back(e.path().filename());
    std::sort(names.begin(), names.end());
    CHECK(names == std::vector<std::string>{"s.bin", "s.bin.mask"});
}

TEST_CASE("an empty mask stands for every token scored, and a plain shard removes an old mask") {
    const data::ShardMask none;
    CHECK(none.empty());
    CHECK(none[12345] == data::kScoredToken);
    CHECK(none.row_tokens() == 0);

    TempDir tmp;
    const auto tokens = some_tokens(4);
    const std::vector<uint8_t> classes(4, data::kPromptToken);
    data::write_shard(tmp / "s.bin", tokens.data(), 4, classes.data(), 0);
    REQUIRE(fs::exists(tmp / "s.bin.mask"));
    data::write_shard(tmp / "s.bin", tokens.data(), 4);
    CHECK(!fs::exists(tmp / "s.bin.mask"));
    CHECK(data::Shard(tmp / "s.bin").size() == 4);

    data::write_shard(tmp / "e.bin", nullptr, 0, nullptr, 0); // an empty shard, masked
    CHECK(data::ShardMask(tmp / "e.bin.mask", 0).size() == 0);
}

TEST_CASE("masks that are not whole rows or hold a class above 2 are not written") {
    TempDir tmp;
    const auto tokens = some_tokens(10);
    std::vector<uint8_t> classes(10, data::kScoredToken);
    CHECK_THROWS_WITH_AS(data::write_shard(tmp / "s.bin", tokens.data(), 10, classes.data(), 4),
                         (tmp / "s.bin.mask" + ": 10 tokens are not whole rows of 4").c_str(),
                         base::FileError);
    classes[7] = 3;
    CHECK_THROWS_WITH_AS(
        data::write_shard(tmp / "s.bin", tokens.data(), 10, classes.data(), 5),
        (tmp / "s.bin.mask" + ": class 3 at position 7 (a class is 0, 1 or 2)").c_str(),
        base::FileError);
    CHECK(fs::is_empty(tmp.dir));
}

TEST_CASE("corrupt masks are rejected with one-line messages naming the mask file") {
    TempDir tmp;
    const std::string path = tmp / "s.bin.mask";
    const std::vector<uint8_t> classes = {0, 1, 2, 2, 2, 0, 0, 1, 2, 2};
    data::write_mask(path, classes.data(), classes.size(), 5);
    std::string good = read_bytes(path);
    CHECK_NOTHROW(data::ShardMask(path, 10));

    SUBCASE("missing") {
        check_mask_rejected(tmp / "absent.mask", 10, "cannot open");
    }
    SUBCASE("empty") {
        write_raw(path, "");
        check_mask_rejected(path, 10, "empty file (a token mask starts with a 1024-byte header)");
    }
    SUBCASE("shorter than the header") {
        write_raw(path, good.substr(0, 100));
        check_mask_rejected(path, 10, "too short for a token mask (100 bytes");
    }
    SUBCASE("wrong magic") {
        set_header_int(good, 0, 7);
        write_raw(path, good);
        check_mask_rejected(path, 10, "bad magic 7 (expected 20261202 for a token mask)");
    }
    SUBCASE("a shard's magic") {
        set_header_int(good, 0, 20240520);
        write_raw(path, good);
        check_mask_rejected(path, 10, "this looks like a token shard, not a mask");
    }
    SUBCASE("unsupported version") {
        set_header_int(good, 1, 2);
        write_raw(path, good);
        check_mask_rejected(path, 10, "unsupported mask version 2 (expected 1)");
    }
    SUBCASE("a count that differs from the shard's") {
        check_mask_rejected(path, 11, "counts 10 tokens, but its shard holds 11");
    }
    SUBCASE("a negative count") {
        set_header_int(good, 2, -1);
        write_raw(path, good);
        check_mask_rejected(path, 10, "counts -1 tokens, but its shard holds 10");
    }
    SUBCASE("a negative row length") {
        set_header_int(good, 3, -5);
        write_raw(path, good);
        check_mask_rejected(path, 10, "negative row length -5");
    }
    SUBCASE("tokens that are not whole rows") {
        set_header_int(good, 3, 3);
        write_raw(path, good);
        check_mask_rejected(path, 10, "10 tokens are not whole rows of 3");
    }
    SUBCASE("truncated") {
        write_raw(path, good.substr(0, good.size() - 1));
        check_mask_rejected(path, 10,
                            "truncated: header says 10 tokens, so expected 1034 bytes, found 1033");
    }
    SUBCASE("trailing bytes") {
        write_raw(path, good + "x");
        check_mask_rejected(
            path, 10, "trailing bytes: header says 10 tokens, so expected 1034 bytes, found 1035");
    }
    SUBCASE("a class above 2") {
        good[1024 + 6] = 3;
        write_raw(path, good);
        check_mask_rejected(path, 10, "class 3 at position 6 (a class is 0, 1 or 2)");
    }
    SUBCASE("a directory") {
        check_mask_rejected(tmp.dir.string(), 10, "not a regular file");
    }
    SUBCASE("a shard opened as a mask and a mask opened as a shard") {
        const auto tokens = some_tokens(10);
        data::write_shard(tmp / "t.bin", tokens.data(), tokens.size());
        check_mask_rejected(tmp / "t.bin", 10, "looks like a token shard, not a mask");
        check_rejected(path, "looks like a token mask, not a shard");
    }
}
