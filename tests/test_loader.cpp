#include <doctest/doctest.h>

#include "helpers.h"

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "base/error.h"
#include "data/loader.h"
#include "data/shard.h"

namespace fs = std::filesystem;

namespace {

// A fresh directory under the system temp dir, removed with everything in it.
struct TempDir : testing::Workdir {
    std::string glob() const { return (dir / "shard_*.bin").string(); }
};

// The token at stream position p; unique while streams stay below kPeriod tokens.
constexpr int kPeriod = 50000;

// Shards shard_00.bin, shard_01.bin, ... of the given sizes whose concatenation holds
// token p % kPeriod at stream position p. Returns each shard's first stream position.
std::vector<size_t> write_stream(const TempDir& tmp, const std::vector<size_t>& sizes) {
    std::vector<size_t> starts;
    size_t p = 0;
    for (size_t s = 0; s < sizes.size(); ++s) {
        starts.push_back(p);
        std::vector<uint16_t> tokens(sizes[s]);
        for (auto& t : tokens) t = uint16_t(p++ % kPeriod);
        data::write_shard(
            tmp / ("shard_" + std::string(s < 10 ? "0" : "") + std::to_string(s) + ".bin"),
            tokens.data(), tokens.size());
    }
    return starts;
}

struct Batch {
    std::vector<int> inputs, targets;
    bool operator==(const Batch&) const = default;
};

Batch next_batch(data::Loader& loader) {
    const size_t n = size_t(loader.options().batch) * size_t(loader.options().seq);
    Batch b{std::vector<int>(n), std::vector<int>(n)};
    loader.next(b.inputs.data(), b.targets.data());
    return b;
}

std::vector<Batch> next_batches(data::Loader& loader, size_t count) {
    std::vector<Batch> batches;
    for (size_t i = 0; i < count; ++i) batches.push_back(next_batch(loader));
    return batches;
}

// The batch a loader must produce when reading B*T+1 stream tokens from `pos`.
Batch stream_batch(size_t pos, size_t n) {
    Batch b{std::vector<int>(n), std::vector<int>(n)};
    for (size_t j = 0; j < n; ++j) {
        b.inputs[j] = int((pos + j) % kPeriod);
        b.targets[j] = int((pos + j + 1) % kPeriod);
    }
    return b;
}

data::LoaderOptions options(int batch, int seq, int rank = 0, int world = 1, bool shuffle = false) {
    data::LoaderOptions o;
    o.batch = batch;
    o.seq = seq;
    o.rank = rank;
    o.world = world;
    o.shuffle = shuffle;
    return o;
}

// Sizes chosen so windows cross shard boundaries, and one shard is shorter than B*T+1 = 9.
const std::vector<size_t> kSizes = {50, 3, 37, 100};
constexpr size_t kStreamTokens = 190;

} // namespace

TEST_CASE("loader without shuffling reads batch i of rank r at (i*W + r)*B*T") {
    TempDir tmp;
    write_stream(tmp, kSizes);
    const int B = 2, T = 4, W = 2;
    for (int r = 0; r < W; ++r) {
        data::Loader loader(tmp.glob(), options(B, T, r, W));
        CHECK(loader.files().size() == kSizes.size());
        CHECK(loader.files()[0] == tmp / "shard_00.bin");
        CHECK(loader.num_tokens() == kStreamTokens);
        REQUIRE(loader.batches_per_epoch() == (kStreamTokens - 1) / (W * B * T));
        for (size_t i = 0; i < loader.batches_per_epoch(); ++i) {
            CAPTURE(r);
            CAPTURE(i);
            CHECK(next_batch(loader) == stream_batch((i * W + size_t(r)) * B * T, B * T));
        }
    }
}

TEST_CASE("W ranks of batch B see what one rank of batch W*B sees") {
    TempDir tmp;
    write_stream(tmp, kSizes);
    const int B = 2, T = 3;
    for (int W : {2, 3}) {
        CAPTURE(W);
        data::Loader whole(tmp.glob(), options(W * B, T));
        std::vector<data::Loader> ranks;
        for (int r = 0; r < W; ++r) ranks.emplace_back(tmp.glob(), options(B, T, r, W));
        REQUIRE(ranks[0].batches_per_epoch() == whole.batches_per_epoch());

        // Two epochs and a bit, to cover the wraparound.
        for (size_t i = 0; i < 2 * whole.batches_per_epoch() + 3; ++i) {
            CAPTURE(i);
            Batch joined;
            for (auto& rank : ranks) {
                const Batch b = next_batch(rank);
                joined.inputs.insert(joined.inputs.end(), b.inputs.begin(), b.inputs.end());
                joined.targets.insert(joined.targets.end(), b.targets.begin(), b.targets.end());
            }
            CHECK(joined == next_batch(whole));
        }
    }
}

TEST_CASE(
    "loader restarts the stream at token 0 after batches_per_epoch batches and counts the epoch") {
    TempDir tmp;
    write_stream(tmp, kSizes);
    data::Loader loader(tmp.glob(), options(3, 5));
    const size_t n = loader.batches_per_epoch();
    CHECK(loader.state() == data::LoaderState{0, 0});
    const Batch first = next_batch(loader);
    CHECK(first == stream_batch(0, 15));
    CHECK(loader.state() == data::LoaderState{0, 1});
    next_batches(loader, n - 1);
    CHECK(loader.state() == data::LoaderState{1, 0});
    CHECK(next_batch(loader) == first);
    next_batches(loader, n - 1);
    CHECK(loader.state() == data::LoaderState{2, 0});
}

TEST_CASE(
    "shuffled loader visits every window once per epoch, reproducibly from the seed and epoch") {
    TempDir tmp;
    const auto starts = write_stream(tmp, kSizes);
    const int B = 2, T = 4, W = 2;
    const size_t bt = B * T;

    // Every window: offset k*B*T inside a shard with k < (size-1)/(B*T); shard 1 has none.
    std::multiset<int> windows;
    for (size_t s = 0; s < kSizes.size(); ++s)
        for (size_t k = 0; k < (kSizes[s] - 1) / bt; ++k) windows.insert(int(starts[s] + k * bt));
    REQUIRE(windows.size() == 22);

    auto shard_of = [&](int pos) {
        return int(std::upper_bound(starts.begin(), starts.end(), size_t(pos)) - starts.begin()) -
               1;
    };

    // Each epoch's window starts in order: batch i, rank r -> element i*W + r.
    auto epochs = [&](uint64_t seed, size_t count) {
        std::vector<data::Loader> ranks;
        for (int r = 0; r < W; ++r) {
            auto o = options(B, T, r, W, true);
            o.seed = seed;
            ranks.emplace_back(tmp.glob(), o);
        }
        REQUIRE(ranks[0].batches_per_epoch() == windows.size() / W);
        std::vector<std::vector<int>> order(count);
        for (auto& epoch : order)
            for (size_t i = 0; i < ranks[0].batches_per_epoch(); ++i)
                for (auto& rank : ranks) {
                    const Batch b = next_batch(rank);
                    // A window is contiguous and inside one shard.
                    CHECK(b == stream_batch(size_t(b.inputs[0]), bt));
                    CHECK(shard_of(b.inputs[0]) == shard_of(b.inputs[0] + int(bt)));
                    epoch.push_back(b.inputs[0]);
                }
        return order;
    };

    const auto a = epochs(1337, 3);
    for (const auto& epoch : a) {
        CHECK(std::multiset<int>(epoch.begin(), epoch.end()) == windows);
        // Shards are permuted as wholes: each shard's windows come in one run.
        std::set<int> done;
        for (size_t j = 0; j < epoch.size(); ++j) {
            const int s = shard_of(epoch[j]);
            if (j > 0 && s != shard_of(epoch[j - 1]))
                CHECK(done.insert(shard_of(epoch[j - 1])).second);
            CHECK(done.count(s) == 0);
        }
    }
    CHECK(a[0] != a[1]);
    CHECK(a[1] != a[2]);
    CHECK(epochs(1337, 3) == a);
    CHECK(epochs(1338, 1)[0] != a[0]);
}

TEST_CASE("loader restored from a saved state continues exactly as an uninterrupted one") {
    TempDir tmp;
    write_stream(tmp, kSizes);
    for (bool shuffle : {false, true}) {
        const auto o = options(2, 4, 1, 2, shuffle);
        data::Loader probe(tmp.glob(), o);
        const size_t n = probe.batches_per_epoch();
        // Saved mid-epoch, at the last batch, on a boundary, and in a later epoch; each
        // resumed run crosses at least one epoch boundary.
        for (size_t k : {size_t(0), size_t(3), n - 1, n, 2 * n + 5}) {
            CAPTURE(shuffle);
            CAPTURE(k);
            data::Loader original(tmp.glob(), o);
            next_batches(original, k);
            const data::LoaderState saved = original.state();
            const auto expected = next_batches(original, n + 2);

            data::Loader resumed(tmp.glob(), o);
            resumed.restore(saved);
            CHECK(resumed.state() == saved);
            CHECK(next_batches(resumed, n + 2) == expected);

            // Restoring also rewinds a loader that has moved on.
            original.restore(saved);
            CHECK(next_batches(original, n + 2) == expected);
        }
    }
}

TEST_CASE("loader rejects an empty glob, bad tokens, too few tokens, bad options and restores "
          "beyond the epoch") {
    TempDir tmp;

    SUBCASE("a glob matching nothing") {
        CHECK_THROWS_WITH_AS(data::Loader(tmp.glob(), options(2, 4)),
                             ("no token shards match '" + tmp.glob() + "'").c_str(),
                             std::runtime_error);
    }
    SUBCASE("a token id >= vocab, naming the shard and the position in it") {
        std::vector<uint16_t> tokens(40, 1);
        data::write_shard(tmp / "shard_00.bin", tokens.data(), tokens.size());
        tokens[23] = 7;
        data::write_shard(tmp / "shard_01.bin", tokens.data(), tokens.size());
        auto o = options(2, 4);
        o.vocab = 7;
        data::Loader loader(tmp.glob(), o); // tokens are checked as they are read
        next_batches(loader, 5);            // stream [0, 41): all of shard_00
        CHECK_THROWS_WITH_AS(
            next_batches(loader, 5),
            doctest::Contains((tmp / "shard_01.bin" + ": token 7 at position 23").c_str()),
            std::runtime_error);
    }
    SUBCASE("fewer tokens than one batch needs") {
        write_stream(tmp, {5, 12}); // 17 = W*B*T + 1 tokens for W*B*T = 16
        CHECK_NOTHROW(data::Loader(tmp.glob(), options(2, 4, 0, 2)));
        const std::string message = "shards matching '" + tmp.glob() + "' hold 17 tokens";
        CHECK_THROWS_WITH_AS(data::Loader(tmp.glob(), options(2, 4, 1, 3)),
                             doctest::Contains(message.c_str()), std::runtime_error);
        CHECK_THROWS_WITH_AS(data::Loader(tmp.glob(), options(2, 4, 1, 3)),
                             doctest::Contains("25 tokens"), std::runtime_error);
        // Shuffled windows may not cross shards: only shard_01 holds one window of 9.
        CHECK_NOTHROW(data::Loader(tmp.glob(), options(2, 4, 0, 1, true)));
        CHECK_THROWS_WITH_AS(data::Loader(tmp.glob(), options(2, 4, 0, 2, true)),
                             doctest::Contains("windows of B*T+1 = 9 tokens"), std::runtime_error);
    }
    SUBCASE("bad options") {
        write_stream(tmp, {1000});
        auto bad = [&](auto change) {
            auto o = options(2, 4);
            change(o);
            CHECK_THROWS_AS(data::Loader(tmp.glob(), o), std::invalid_argument);
        };
        bad([](auto& o) { o.batch = 0; });
        bad([](auto& o) { o.seq = 0; });
        bad([](auto& o) { o.world = 0; });
        bad([](auto& o) { o.rank = -1; });
        bad([](auto& o) { o.rank = 2, o.world = 2; });
        bad([](auto& o) { o.vocab = 0; });
    }
    SUBCASE("restoring a batch beyond the epoch") {
        write_stream(tmp, kSizes);
        data::Loader loader(tmp.glob(), options(2, 4));
        const uint64_t n = loader.batches_per_epoch();
        CHECK_NOTHROW(loader.restore({3, n - 1}));
        CHECK_THROWS_AS(loader.restore({0, n}), std::invalid_argument);
        CHECK(loader.state() == data::LoaderState{3, n - 1}); // a failed restore changes nothing
    }
}

TEST_CASE("a position saved by W ranks restores on W' ranks, which go on with the next windows") {
    TempDir tmp;
    write_stream(tmp, kSizes);
    const int B = 1, T = 4; // windows of 4 tokens: 47 per epoch without shuffling
    for (bool shuffle : {false, true}) {
        CAPTURE(shuffle);
        // One rank reads the windows in order; its sequence is the reference.
        data::Loader single(tmp.glob(), options(B, T, 0, 1, shuffle));
        const size_t windows = single.windows_per_epoch();
        std::vector<Batch> stream;
        for (size_t i = 0; i < 2 * windows; ++i) stream.push_back(next_batch(single));

        // 2 ranks take 5 batches (10 windows), then 3 ranks continue from there.
        std::vector<data::Loader> two;
        for (int r = 0; r < 2; ++r) two.emplace_back(tmp.glob(), options(B, T, r, 2, shuffle));
        for (int i = 0; i < 5; ++i)
            for (int r = 0; r < 2; ++r) CHECK(next_batch(two[r]) == stream[size_t(i * 2 + r)]);
        const data::LoaderState saved = two[0].state();
        CHECK(saved == data::LoaderState{0, 10});
        CHECK(two[1].state() == saved);

        std::vector<data::Loader> three;
        for (int r = 0; r < 3; ++r) {
            three.emplace_back(tmp.glob(), options(B, T, r, 3, shuffle));
            three[r].restore(saved);
        }
        // Windows 10, 11, 12, then 13, 14, 15, ... while 3 windows remain in the epoch.
        size_t at = 10;
        for (; at + 3 <= windows; at += 3)
            for (int r = 0; r < 3; ++r) CHECK(next_batch(three[r]) == stream[at + size_t(r)]);
        // The epoch's last windows (fewer than 3) are skipped; epoch 1 starts afresh.
        CHECK(three[0].state() == data::LoaderState{1, 0});
        for (int r = 0; r < 3; ++r) CHECK(next_batch(three[r]) == stream[windows + size_t(r)]);
    }
}

namespace {

// Class of stream position p in the masked streams below: 0, 1, 2, 0, 1, 2, ...
uint8_t class_at(size_t p) {
    return uint8_t(p % 3);
}

// As write_stream, with a mask beside each shard: class_at(p) for stream position p, and
// row_tokens in every mask's header.
void write_masked_stream(const TempDir& tmp, const std::vector<size_t>& sizes, int row_tokens) {
    size_t p = 0;
    for (size_t s = 0; s < sizes.size(); ++s) {
        std::vector<uint16_t> tokens(sizes[s]);
        std::vector<uint8_t> classes(sizes[s]);
        for (size_t i = 0; i < sizes[s]; ++i, ++p) {
            tokens[i] = uint16_t(p % kPeriod);
            classes[i] = class_at(p);
        }
        data::write_shard(tmp / ("shard_0" + std::to_string(s) + ".bin"), tokens.data(),
                          tokens.size(), classes.data(), row_tokens);
    }
}

// Target token p, or -1 when its class is below the lowest scored one.
int masked_target(size_t p, bool score_prompts) {
    return class_at(p) >= (score_prompts ? 1 : 2) ? int(p % kPeriod) : -1;
}

// The batch a rows-mode loader must give for the window at stream position pos: row b
// of R = T+1 tokens starts at pos + b*R.
Batch rows_batch(size_t pos, size_t B, size_t T, bool score_prompts) {
    Batch b{std::vector<int>(B * T), std::vector<int>(B * T)};
    for (size_t row = 0; row < B; ++row)
        for (size_t j = 0; j < T; ++j) {
            const size_t p = pos + row * (T + 1) + j;
            b.inputs[row * T + j] = int(p % kPeriod);
            b.targets[row * T + j] = masked_target(p + 1, score_prompts);
        }
    return b;
}

} // namespace

TEST_CASE("masked shards make targets of class 0, and of class 1 unless prompts are scored, -1") {
    TempDir tmp;
    write_masked_stream(tmp, kSizes, 0);
    const int B = 2, T = 4;
    for (bool score_prompts : {false, true}) {
        CAPTURE(score_prompts);
        auto o = options(B, T);
        o.score_prompts = score_prompts;
        data::Loader loader(tmp.glob(), o);
        CHECK(loader.masked());
        CHECK(loader.row_tokens() == 0);
        REQUIRE(loader.batches_per_epoch() == (kStreamTokens - 1) / (B * T));
        for (size_t i = 0; i < loader.batches_per_epoch(); ++i) {
            CAPTURE(i);
            Batch expected = stream_batch(i * B * T, B * T);
            for (size_t j = 0; j < B * T; ++j)
                expected.targets[j] = masked_target(i * B * T + j + 1, score_prompts);
            CHECK(next_batch(loader) == expected);
        }
    }
}

TEST_CASE("a mask on some shards only masks those; shards without one are all scored") {
    TempDir tmp;
    write_stream(tmp, {20, 20});
    std::vector<uint8_t> classes(20, data::kNotTarget);
    data::write_mask(data::mask_path(tmp / "shard_01.bin"), classes.data(), classes.size(), 0);
    data::Loader loader(tmp.glob(), options(1, 38));
    CHECK(loader.masked());
    CHECK(loader.files().size() == 2); // the glob matches no .mask
    Batch expected = stream_batch(0, 38);
    for (size_t j = 19; j < 38; ++j) expected.targets[j] = -1;
    CHECK(next_batch(loader) == expected);
}

TEST_CASE("a glob that matches masks reads only the shards, and plain shards are unmasked") {
    TempDir tmp;
    write_masked_stream(tmp, {30, 30}, 0);
    data::Loader masked((tmp.dir / "shard_*").string(), options(2, 4));
    CHECK(masked.files() == std::vector<std::string>{tmp / "shard_00.bin", tmp / "shard_01.bin"});
    CHECK(masked.num_tokens() == 60);

    TempDir plain;
    write_stream(plain, {30, 30});
    data::Loader loader(plain.glob(), options(2, 4));
    CHECK(!loader.masked());
    CHECK(loader.row_tokens() == 0);
}

TEST_CASE("rows mode reads B rows of T+1 tokens per window, sharing no token between rows") {
    TempDir tmp;
    const int B = 2, T = 4, R = T + 1;
    // 3 shards of 4, 1 and 6 rows: 55 tokens, 5 windows of B*R = 10.
    write_masked_stream(tmp, {20, 5, 30}, R);
    for (bool score_prompts : {false, true}) {
        for (int W : {1, 2}) {
            for (int r = 0; r < W; ++r) {
                CAPTURE(score_prompts);
                CAPTURE(W);
                CAPTURE(r);
                auto o = options(B, T, r, W);
                o.score_prompts = score_prompts;
                data::Loader loader(tmp.glob(), o);
                CHECK(loader.masked());
                CHECK(loader.row_tokens() == R);
                CHECK(loader.windows_per_epoch() == 55 / (B * R));
                REQUIRE(loader.batches_per_epoch() == 55 / (W * B * R));
                for (size_t epoch = 0; epoch < 2; ++epoch)
                    for (size_t i = 0; i < loader.batches_per_epoch(); ++i) {
                        CAPTURE(i);
                        const size_t window = i * size_t(W) + size_t(r);
                        CHECK(next_batch(loader) ==
                              rows_batch(window * B * R, B, T, score_prompts));
                    }
                CHECK(loader.state() == data::LoaderState{2, 0});
            }
        }
    }
}

TEST_CASE("shuffled rows mode visits each window of B*R tokens inside a shard once per epoch") {
    TempDir tmp;
    const int B = 2, T = 3, R = T + 1;
    // Windows of 8 tokens: shard 0 (24 tokens) has 3, shard 1 (4) none, shard 2 (20) 2.
    write_masked_stream(tmp, {24, 4, 20}, R);
    const std::multiset<int> windows = {0, 8, 16, 28, 36};
    auto o = options(B, T, 0, 1, true);
    data::Loader loader(tmp.glob(), o);
    REQUIRE(loader.batches_per_epoch() == windows.size());
    std::vector<std::vector<int>> epochs(3);
    for (auto& epoch : epochs) {
        for (size_t i = 0; i < windows.size(); ++i) {
            const Batch b = next_batch(loader);
            const size_t pos = size_t(b.inputs[0]);
            CHECK(b == rows_batch(pos, B, T, false));
            epoch.push_back(int(pos));
        }
        CHECK(std::multiset<int>(epoch.begin(), epoch.end()) == windows);
    }
    CHECK((epochs[0] != epochs[1] || epochs[1] != epochs[2]));

    // Restoring a saved position continues exactly.
    data::Loader original(tmp.glob(), o), resumed(tmp.glob(), o);
    next_batches(original, 7);
    resumed.restore(original.state());
    CHECK(next_batches(resumed, 6) == next_batches(original, 6));
}

TEST_CASE("rows mode needs seq = R-1, and every shard in the same mode") {
    TempDir tmp;
    SUBCASE("a seq that is not the rows' R-1") {
        write_masked_stream(tmp, {90}, 9);
        CHECK_NOTHROW(data::Loader(tmp.glob(), options(2, 8)));
        try {
            data::Loader(tmp.glob(), options(2, 16));
            FAIL("no error");
        } catch (const base::SettingError& e) {
            CHECK(e.setting() == "seq");
            CHECK(std::string(e.problem()) ==
                  "must be 8 (got 16): the shards hold one example per row of 9 tokens, seq + 1");
        }
    }
    SUBCASE("rows of another length") {
        write_masked_stream(tmp, {90}, 9);
        std::vector<uint16_t> tokens(90, 1);
        std::vector<uint8_t> classes(90, data::kScoredToken);
        data::write_shard(tmp / "shard_01.bin", tokens.data(), 90, classes.data(), 10);
        CHECK_THROWS_WITH_AS(data::Loader(tmp.glob(), options(2, 8)),
                             (tmp / "shard_01.bin.mask" +
                              ": holds one example per row of 10 tokens, but " +
                              tmp / "shard_00.bin" +
                              " holds one example per row of 9 tokens (shards read "
                              "together must agree)")
                                 .c_str(),
                             base::FileError);
    }
    SUBCASE("a shard without a mask is a packed stream") {
        write_masked_stream(tmp, {90}, 9);
        std::vector<uint16_t> tokens(90, 1);
        data::write_shard(tmp / "shard_01.bin", tokens.data(), tokens.size());
        CHECK_THROWS_WITH_AS(data::Loader(tmp.glob(), options(2, 8)),
                             doctest::Contains((tmp / "shard_01.bin: holds a packed stream, but " +
                                                tmp / "shard_00.bin holds one example per row")
                                                   .c_str()),
                             base::FileError);
    }
    SUBCASE("too few rows for a batch") {
        write_masked_stream(tmp, {27}, 9);
        CHECK_NOTHROW(data::Loader(tmp.glob(), options(3, 8)));
        CHECK_THROWS_WITH_AS(data::Loader(tmp.glob(), options(4, 8)),
                             doctest::Contains("hold 27 tokens, too few: one batch needs W*B*R = "
                                               "36 tokens"),
                             std::runtime_error);
    }
    SUBCASE("a bad mask names its file") {
        write_masked_stream(tmp, {90}, 9);
        std::vector<uint8_t> classes(80, data::kScoredToken);
        data::write_mask(tmp / "shard_00.bin.mask", classes.data(), classes.size(), 0);
        CHECK_THROWS_WITH_AS(
            data::Loader(tmp.glob(), options(2, 8)),
            (tmp / "shard_00.bin.mask" + ": counts 80 tokens, but its shard holds 90").c_str(),
            base::FileError);
    }
}

TEST_CASE("partial_last: W ranks together read every target of the stream once, padded past "
          "its end") {
    TempDir tmp;
    const auto padded = [](Batch b, size_t pos, size_t stream_tokens) {
        // Input j reads token pos + j, target j token pos + j + 1: past the end, 0 and -1.
        for (size_t j = 0; j < b.inputs.size(); ++j) {
            if (pos + j >= stream_tokens) b.inputs[j] = 0;
            if (pos + j + 1 >= stream_tokens) b.targets[j] = -1;
        }
        return b;
    };
    SUBCASE("packed: 189 targets, windows of B*T = 8") {
        write_stream(tmp, kSizes);
        const int B = 2, T = 4;
        for (int W : {1, 2, 3}) {
            std::vector<int> seen(kStreamTokens, 0); // how often each target token was read
            for (int r = 0; r < W; ++r) {
                CAPTURE(W);
                CAPTURE(r);
                auto o = options(B, T, r, W);
                o.partial_last = true;
                data::Loader loader(tmp.glob(), o);
                CHECK(loader.windows_per_epoch() == 24); // ceil(189 / 8)
                REQUIRE(loader.batches_per_epoch() == (24 + size_t(W) - 1) / size_t(W));
                for (size_t i = 0; i < loader.batches_per_epoch(); ++i) {
                    CAPTURE(i);
                    const size_t pos = (i * size_t(W) + size_t(r)) * B * T;
                    const Batch b = next_batch(loader);
                    CHECK(b == padded(stream_batch(pos, B * T), pos, kStreamTokens));
                    for (int t : b.targets)
                        if (t >= 0) ++seen[size_t(t)];
                }
                CHECK(loader.state() == data::LoaderState{1, 0}); // the epoch is over
            }
            CHECK(seen[0] == 0);
            CHECK(std::count(seen.begin() + 1, seen.end(), 1) == kStreamTokens - 1);
        }
    }
    SUBCASE("rows: 11 rows of R = 5, windows of B = 2 rows, the last holding one") {
        const int B = 2, T = 4, R = T + 1;
        write_masked_stream(tmp, {20, 5, 30}, R);
        for (int W : {1, 2}) {
            for (int r = 0; r < W; ++r) {
                CAPTURE(W);
                CAPTURE(r);
                auto o = options(B, T, r, W);
                o.partial_last = true, o.score_prompts = true;
                data::Loader loader(tmp.glob(), o);
                CHECK(loader.windows_per_epoch() == 6); // ceil(55 / 10)
                REQUIRE(loader.batches_per_epoch() == size_t(6 / W));
                for (size_t i = 0; i < loader.batches_per_epoch(); ++i) {
                    CAPTURE(i);
                    const size_t window = i * size_t(W) + size_t(r);
                    Batch expected = rows_batch(window * B * R, B, T, true);
                    if (window == 5) { // row 11 does not exist
                        std::fill(expected.inputs.begin() + T, expected.inputs.end(), 0);
                        std::fill(expected.targets.begin() + T, expected.targets.end(), -1);
                    }
                    CHECK(next_batch(loader) == expected);
                }
            }
        }
    }
    SUBCASE("a rank past the last window gets padding only, and shuffling is refused") {
        write_stream(tmp, {10}); // 9 targets: 2 windows of B*T = 8
        auto o = options(2, 4, 2, 3);
        o.partial_last = true;
        data::Loader loader(tmp.glob(), o);
        REQUIRE(loader.batches_per_epoch() == 1);
        const Batch b = next_batch(loader);
        CHECK(b.targets == std::vector<int>(8, -1));
        CHECK(b.inputs == std::vector<int>(8, 0));
        o.shuffle = true;
        CHECK_THROWS_AS(data::Loader(tmp.glob(), o), std::invalid_argument);
    }
}
