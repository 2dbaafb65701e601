// Named views into the flat parameter and activation buffers.
#include <string>
#include <vector>

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

TEST_CASE("activation views slice the stacked buffers and chain the residual stream") {
    GPT2<float> m(kTiny);
    m.reserve(2, 8, false);
    const std::vector<int> tokens(16, 5);
    m.forward(tokens.data(), nullptr, 2, 8);
    const Activations<float>& a = m.activations();
    const size_t btc = 2 * 8 * 16;
    CHECK(a.layer(0).residual == a.encoded);
    for (int l = 0; l < kTiny.n_layer; ++l) {
        const LayerActivations<float> b = a.layer(l);
        CHECK(b.residual3 == a.residual3 + l * btc); // stacked (L,B,T,C), as callers read it
        if (l > 0) CHECK(b.residual == a.layer(l - 1).residual3);
        CHECK(b.qkv == a.qkv + l * 3 * btc);
        CHECK(b.fch_gelu == a.fch_gelu + l * 4 * btc);
        CHECK(b.lse == a.lse + l * 2 * 2 * 8); // (B,NH,T)
    }
}
