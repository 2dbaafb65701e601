// gpt2 eval ppl / lambada / cbt: zero-shot evaluations of a model file on text.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "data/tokenizer.h"
#include "eval/cbt.h"
#include "eval/detokenize.h"
#include "eval/lambada.h"
#include "eval/perplexity.h"
#include "model/gpt2.h"
#include "train/commands.h"

namespace train {

namespace {

using json = nlohmann::json;
using clock = std::chrono::steady_clock;

// "\r<what> 1234/5678 (21.7%) 12.3 s, eta 45 s" on standard error, at most once a second.
class Progress {
public:
    explicit Progress(std::string what) : what_(std::move(what)) {}
    void operator()(size_t done, size_t total) {
        const auto now = clock::now();
        if (done < total ? now - last_ < std::chrono::seconds(1) : finished_) return;
        finished_ = done == total;
        last_ = now;
        const double s = std::chrono::duration<double>(now - start_).count();
        std::fprintf(stderr, "\r%s %zu/%zu (%.1f%%) %.0f s, eta %.0f s   ", what_.c_str(), done, total,
                     100.0 * done / std::max<size_t>(total, 1), s, done ? s * (total - done) / done : 0.0);
        if (done == total) std::fprintf(stderr, "\n");
    }
    double seconds() const { return std::chrono::duration<double>(clock::now() - start_).count(); }

private:
    std::string what_;
    clock::time_point start_ = clock::now(), last_{};
    bool finished_ = false; // the final line is printed once
};

struct PplCommand {
    std::string model, data, tokenizer;
    eval::TextOptions text;
    bool json = false;
};

void run_ppl(const PplCommand& o) {
    auto gpt = load_model(o.model);
    data::Tokenizer tok(o.tokenizer);
    Progress progress("ppl: tokens");
    const auto r = eval::text_perplexity(*gpt, tok, read_file(o.data),
                                         std::filesystem::path(o.data).filename().string(), o.text,
                                         [&](size_t d, size_t n) { progress(d, n); });
    progress(r.tokens, r.tokens); // only prints when nothing was scored
    const double seconds = progress.seconds();
    const double ms_per_1000 = 1e6 * seconds / double(std::max<size_t>(r.tokens, 1));
    const std::string protocol = eval::protocol_name(r.protocol);
    const std::string detokenizer = eval::detokenizer_name(r.detokenizer);
    json j = {{"protocol", protocol}, {"detokenizer", detokenizer}, {"documents", r.documents},
              {"context", r.context},   {"stride", r.stride},           {"tokens", r.tokens},
              {"nll_sum", r.nll},       {"ppl_token", r.ppl_token()},   {"seconds", seconds},
              {"ms_per_1000_tokens", ms_per_1000}};
    if (!r.cut) {
        j["words"] = r.words;
        j["ppl_word"] = r.ppl_word();
        j["bytes"] = r.bytes;
        j["bits_per_byte"] = r.bits_per_byte();
        j["byte_perplexity"] = r.byte_perplexity();
    }
    if (o.json) {
        std::printf("%s\n", j.dump().c_str());
        return;
    }
    std::printf("%s: protocol %s, detokenizer %s, %zu documents, context %d, stride %d\n", o.data.c_str(),
                protocol.c_str(), detokenizer.c_str(), r.documents, r.context, r.stride);
    std::printf("tokens %zu | nll %.4f nats | ppl per token %.4f\n", r.tokens, r.nll, r.ppl_token());
    if (!r.cut) {
        std::printf("words %zu | ppl per word %.4f\n", r.words, r.ppl_word());
        std::printf("bytes %zu | bits per byte %.4f | byte perplexity %.4f\n", r.bytes, r.bits_per_byte(),
                    r.byte_perplexity());
    } else {
        std::printf("(--max-tokens cut the text: word and byte normalisations omitted)\n");
    }
    std::printf("%.1f s, %.0f ms per 1000 tokens\n", seconds, ms_per_1000);
}

struct LambadaOptions {
    std::string model, data, tokenizer, target = "word", per_example;
    size_t max_examples = 0;
    bool json = false;
};

void run_lambada(const LambadaOptions& o) {
    auto gpt = load_model(o.model);
    data::Tokenizer tok(o.tokenizer);
    const auto target = o.target == "word" ? eval::LambadaTarget::word : eval::LambadaTarget::token;
    const auto examples = eval::read_lambada(o.data, tok, target, o.max_examples);
    Progress progress("lambada: examples");
    const auto r = eval::evaluate_lambada(*gpt, examples, [&](size_t d, size_t n) { progress(d, n); });
    if (!o.per_example.empty()) {
        std::ofstream out(o.per_example);
        if (!out) throw std::runtime_error(o.per_example + ": cannot write");
        for (size_t i = 0; i < examples.size(); ++i)
            out << json{{"index", i}, {"target", data::sanitize_utf8(examples[i].target)},
                        {"predicted", data::sanitize_utf8(tok.decode(r.items[i].predicted))},
                        {"correct", r.items[i].correct}, {"nll", r.items[i].nll}}
                       .dump()
                << '\n';
    }
    const json j = {{"examples", r.examples}, {"correct", r.correct}, {"accuracy", r.accuracy()},
                    {"target_tokens", r.target_tokens}, {"ppl", r.ppl()}, {"target", o.target},
                    {"seconds", progress.seconds()}};
    if (o.json) {
        std::printf("%s\n", j.dump().c_str());
        return;
    }
    std::printf("%s: %zu examples, target = last %s | accuracy %.2f%% (%zu correct) | ppl %.4f | "
                "%zu target tokens | %.1f s\n",
                o.data.c_str(), r.examples, o.target.c_str(), 100 * r.accuracy(), r.correct, r.ppl(),
                r.target_tokens, progress.seconds());
}

struct CbtOptions {
    std::string model, data, tokenizer, detokenizer = "cbt", per_example;
    size_t max_examples = 0;
    int batch = 0;
    bool json = false;
};

void run_cbt(const CbtOptions& o) {
    auto gpt = load_model(o.model);
    data::Tokenizer tok(o.tokenizer);
    const auto examples = eval::read_cbt(o.data, o.max_examples);
    eval::CbtOptions eo;
    eo.detokenizer = eval::parse_detokenizer(o.detokenizer);
    eo.batch = o.batch;
    Progress progress("cbt: examples");
    const auto r = eval::evaluate_cbt(*gpt, tok, examples, eo, [&](size_t d, size_t n) { progress(d, n); });
    if (!o.per_example.empty()) {
        std::ofstream out(o.per_example);
        if (!out) throw std::runtime_error(o.per_example + ": cannot write");
        for (size_t i = 0; i < examples.size(); ++i) {
            const auto& item = r.items[i];
            out << json{{"index", i}, {"answer", data::sanitize_utf8(examples[i].answer)},
                        {"chosen", data::sanitize_utf8(examples[i].candidates[item.chosen])},
                        {"correct", item.correct}, {"scores", item.scores}}
                       .dump()
                << '\n';
        }
    }
    const json j = {{"examples", r.examples}, {"correct", r.correct}, {"accuracy", r.accuracy()},
                    {"detokenizer", o.detokenizer}, {"seconds", progress.seconds()}};
    if (o.json) {
        std::printf("%s\n", j.dump().c_str());
        return;
    }
    std::printf("%s: %zu examples, detokenizer %s | accuracy %.2f%% (%zu correct) | %.1f s\n",
                o.data.c_str(), r.examples, o.detokenizer.c_str(), 100 * r.accuracy(), r.correct,
                progress.seconds());
}

} // namespace

void add_zeroshot(CLI::App& eval) {
    auto p = std::make_shared<PplCommand>();
    auto* ppl = eval.add_subcommand(
        "ppl", "Perplexity of a text file: per BPE token, per word of the original text and "
               "bits per byte, with sliding windows (--context, --stride; every token scored once, "
               "the first after <|endoftext|>)");
    ppl->add_option("--model", p->model, "Model file (.bin, .h5, .safetensors)")->required()->check(CLI::ExistingFile);
    ppl->add_option("--data", p->data, "Text file (e.g. wiki.test.raw, ptb.test.txt)")->required()->check(CLI::ExistingFile);
    ppl->add_option("--protocol", p->text.protocol,
                    "lm-eval (wikitext pages, disjoint windows, lm-eval's word count) | megatron "
                    "(whole file, stride 32, Megatron-LM's word count) | hf (whole file, stride 512)")
        ->transform(CLI::CheckedTransformer(std::map<std::string, eval::Protocol>{
            {"lm-eval", eval::Protocol::lm_eval}, {"megatron", eval::Protocol::megatron}, {"hf", eval::Protocol::hf}}))
        ->capture_default_str();
    ppl->add_option_function<std::string>("--detokenizer", [p](const std::string& v) {
            if (v != "auto") p->text.detokenizer = eval::parse_detokenizer(v);
        }, "auto (by file name) | none | wikitext | ptb")
        ->check(CLI::IsMember({"auto", "none", "wikitext", "ptb"}))
        ->default_str("auto");
    ppl->add_option("--context", p->text.context, "Window length C (default: the model's maximum)");
    ppl->add_option("--stride", p->text.stride, "Tokens scored per window after the first (default: by protocol)");
    ppl->add_option("--batch", p->text.batch, "Windows per forward pass")->capture_default_str();
    ppl->add_option("--max-tokens", p->text.max_tokens, "Score only the first N tokens (0 = all)");
    ppl->add_flag("--json", p->json, "Print one JSON object");
    add_tokenizer_option(*ppl, p->tokenizer);
    ppl->callback([p] { run_ppl(*p); });

    auto l = std::make_shared<LambadaOptions>();
    auto* lambada = eval.add_subcommand(
        "lambada", "LAMBADA accuracy and perplexity of the last word, as lm-evaluation-harness's "
                   "lambada_openai (greedy decoding must reproduce every token of ' ' + last word)");
    lambada->add_option("--model", l->model, "Model file (.bin, .h5, .safetensors)")->required()->check(CLI::ExistingFile);
    lambada->add_option("--data", l->data, "lambada_test.jsonl, or plain text with one passage per line")
        ->required()
        ->check(CLI::ExistingFile);
    lambada->add_option("--target", l->target, "word (' ' + last word) | token (last BPE token)")
        ->check(CLI::IsMember({"word", "token"}))
        ->capture_default_str();
    lambada->add_option("--max-examples", l->max_examples, "Evaluate only the first N passages");
    lambada->add_option("--per-example", l->per_example, "Write one JSON line per passage to this file");
    lambada->add_flag("--json", l->json, "Print one JSON object");
    add_tokenizer_option(*lambada, l->tokenizer);
    lambada->callback([l] { run_lambada(*l); });

    auto b = std::make_shared<CbtOptions>();
    auto* cbt = eval.add_subcommand(
        "cbt", "Children's Book Test accuracy (CBT-CN, CBT-NE): the candidate whose filled-in "
               "query sentence is most probable after the context sentences");
    cbt->add_option("--model", b->model, "Model file (.bin, .h5, .safetensors)")->required()->check(CLI::ExistingFile);
    cbt->add_option("--data", b->data, "cbtest_CN_test_2500ex.txt, cbtest_NE_test_2500ex.txt or the like")
        ->required()
        ->check(CLI::ExistingFile);
    cbt->add_option("--detokenizer", b->detokenizer, "cbt (join quotes and punctuation) | none")
        ->check(CLI::IsMember({"cbt", "none"}))
        ->capture_default_str();
    cbt->add_option("--batch", b->batch, "Candidates per forward pass (0 = all of an example's)")
        ->capture_default_str();
    cbt->add_option("--max-examples", b->max_examples, "Evaluate only the first N examples");
    cbt->add_option("--per-example", b->per_example, "Write one JSON line per example to this file");
    cbt->add_flag("--json", b->json, "Print one JSON object");
    add_tokenizer_option(*cbt, b->tokenizer);
    cbt->callback([b] { run_cbt(*b); });
}

} // namespace train
