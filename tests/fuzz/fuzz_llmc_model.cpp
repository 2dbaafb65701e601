// llm.c model files (model/llmc_file.h): the 1024-byte header, then the parameters.
#include <exception>

#include "model/layout.h"
#include "model/llmc_file.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string path = fuzz::write_file("model.bin", data, size);
    try {
        const model::ModelFile m = model::read_llmc(path);
        FUZZ_CHECK(m.params.size() == model::ParamLayout(m.config).total());
    } catch (const std::exception&) {
        // a rejected file
    }
    return 0;
}
