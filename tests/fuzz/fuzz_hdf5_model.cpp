// HDF5 model files (model/hdf5_file.h): the input is written to a file and opened as a
// model, through HDF5's own parser (not instrumented: the coverage guiding the fuzzer
// is ours) and our checks of the config attributes and datasets.
#include <exception>

#include "model/hdf5_file.h"
#include "model/layout.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string path = fuzz::write_file("model.h5", data, size);
    try {
        const model::ModelFile m = model::read_hdf5(path);
        FUZZ_CHECK(m.params.size() == model::ParamLayout(m.config).total());
    } catch (const std::exception&) {
        // a rejected file
    }
    return 0;
}
