// Named views into the flat parameter and activation buffers.
#include <string>

#include <doctest/doctest.h>

#include "model/gpt2.h"

using namespace model;

namespace {

const Config kTiny = make_config(3, 2, 16, 64, 8); // L3 NH2 C16 V64(Vp128) T8

} // namespace

TEST_CASE("parameter views point at the layout's tensors of the same name") {
    GPT2<float> m(kTiny);
    const ParamViews<float> p(m.params(), m.layout());
    auto at = [&](const std::string& name) { return m.params() + m.layout().find(name).offset; };
    CHECK(p.wte == at("wte.weight"));
    CHECK(p.wpe == at("wpe.weight"));
    CHECK(p.lnf_w == at("ln_f.weight"));
    CHECK(p.lnf_b == at("ln_f.bias"));
    for (int l = 0; l < kTiny.n_layer; ++l) {
        const LayerParams<float> b = p.layer(l);
        const std::string h = "h." + std::to_string(l) + ".";
        CHECK(b.ln1_w == at(h + "ln_1.weight"));
        CHECK(b.ln1_b == at(h + "ln_1.bias"));
        CHECK(b.qkv_w == at(h + "attn.c_attn.weight"));
        CHECK(b.qkv_b == at(h + "attn.c_attn.bias"));
        CHECK(b.attproj_w == at(h + "attn.c_proj.weight"));
        CHECK(b.attproj_b == at(h + "attn.c_proj.bias"));
        CHECK(b.ln2_w == at(h + "ln_2.weight"));
        CHECK(b.ln2_b == at(h + "ln_2.bias"));
        CHECK(b.fc_w == at(h + "mlp.c_fc.weight"));
        CHECK(b.fc_b == at(h + "mlp.c_fc.bias"));
        CHECK(b.fcproj_w == at(h + "mlp.c_proj.weight"));
        CHECK(b.fcproj_b == at(h + "mlp.c_proj.bias"));
    }
}
