// Children's Book Test files (eval/cbt.h): numbered context lines, then a question line
// "N query\tanswer\t\tcand1|cand2|..."; every example's answer must be a candidate.
#include <algorithm>
#include <exception>

#include "eval/cbt.h"
#include "eval/detokenize.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string path = fuzz::write_file("cbt.txt", data, size);
    try {
        for (const eval::CbtExample& ex : eval::read_cbt(path)) {
            FUZZ_CHECK(std::find(ex.candidates.begin(), ex.candidates.end(), ex.answer) !=
                       ex.candidates.end());
            for (const auto& c : ex.candidates)
                (void)eval::detokenize(eval::fill_cbt_query(ex.query, c), eval::Detokenizer::cbt);
        }
    } catch (const std::exception&) {
        // a rejected file
    }
    return 0;
}
