// Hugging Face safetensors files (model/safetensors.h): the 8-byte header length, the
// JSON header (dtypes, shapes, data_offsets) and the data. config.json beside the file
// is fixed to a tiny model (L1 NH1 C4 V8 T4) so that the fuzzer works on the file.
#include <exception>

#include "model/layout.h"
#include "model/safetensors.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static const bool config_written = [] {
        fuzz::write_file("config.json", R"({"model_type": "gpt2", "n_layer": 1, "n_head": 1,
            "n_embd": 4, "vocab_size": 8, "n_positions": 4, "layer_norm_epsilon": 1e-05,
            "activation_function": "gelu_new"})");
        return true;
    }();
    (void)config_written;
    const std::string path = fuzz::write_file("model.safetensors", data, size);
    try {
        const model::ModelFile m = model::read_safetensors(path);
        FUZZ_CHECK(m.params.size() == model::ParamLayout(m.config).total());
    } catch (const std::exception&) {
        // a rejected file
    }
    return 0;
}
