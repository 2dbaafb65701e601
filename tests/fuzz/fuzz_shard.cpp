// llm.c token shards (data/shard.h): the 1024-byte header, then uint16 tokens.
#include <exception>

#include "data/shard.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string path = fuzz::write_file("tokens.bin", data, size);
    try {
        const data::Shard shard(path);
        FUZZ_CHECK(data::kShardHeaderBytes + shard.size() * 2 == size);
        unsigned sum = 0; // every mapped token must be readable
        for (size_t i = 0; i < shard.size(); ++i) sum += shard[i];
        (void)sum;
    } catch (const std::exception&) {
        // a rejected file
    }
    return 0;
}
