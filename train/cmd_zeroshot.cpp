// gpt2 eval ppl / gpt2 eval lambada: zero-shot evaluations of a model file on text.
#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "data/tokenizer.h"
#include "eval/detokenize.h"
#include "eval/lambada.h"
#include "eval/perplexity.h"
#include "model/gpt2.h"
#include "model/io.h"
#include "train/commands.h"

namespace train {

namespace {

using json = nlohmann::json;
using clock = std::chrono::steady_clock;

std::unique_ptr<model::GPT2<float>> load_model(const std::string& path) {
    auto file = model::read_model(path);
    auto gpt = std::make_unique<model::GPT2<float>>(file.config);
    gpt->set_params(file.params.data(), file.params.size());
    return gpt;
}

std::string read_text(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw std::runtime_error(path + ": cannot open");
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

// "\r<what> 1234/5678 (21.7%) 12.3 s, eta 45 s" on standard error, at most once a second.
class Progress {
public:
    explicit Progress(std::string what) : what_(std::move(what)) {}
    void operator()(size_t done, size_t total) {
        const auto now = clock::now();
        if (done < total && now - last_ < std::chrono::seconds(1)) return;
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
};

struct PplOptions {
    std::string model, data, tokenizer, protocol = "lm-eval", detokenizer = "auto";
    int context = 0, stride = 0, batch = 4;
    size_t max_tokens = 0;
    bool json = false;
};

// The protocols differ in what a document is, the default stride and the word count:
//   lm-eval   wikitext pages as documents (other files: one document); disjoint windows
//             (stride = context); words = len(re.split(r"\s+", page)) per original page
//   megatron  the whole file; stride 32; words = len(text.strip().split(" ")) - 1 on the
//             original text, as Megatron-LM's adjusted perplexity divides by
//   hf        the whole file; stride 512; words = len(text.split())
void run_ppl(const PplOptions& o) {
    if (o.protocol != "lm-eval" && o.protocol != "megatron" && o.protocol != "hf")
        throw std::invalid_argument("--protocol must be lm-eval, megatron or hf");
    auto gpt = load_model(o.model);
    data::Tokenizer tok(o.tokenizer);
    const std::string raw = read_text(o.data);
    const std::string name = std::filesystem::path(o.data).filename().string();
    eval::Detokenizer detok = eval::Detokenizer::none;
    if (o.detokenizer == "auto") {
        if (name.find("wiki") != std::string::npos) detok = eval::Detokenizer::wikitext;
        else if (name.find("ptb") != std::string::npos) detok = eval::Detokenizer::ptb;
    } else {
        detok = eval::parse_detokenizer(o.detokenizer);
    }

    std::vector<std::string> docs;
    if (o.protocol == "lm-eval" && detok == eval::Detokenizer::wikitext)
        docs = eval::split_wikitext_articles(raw);
    else
        docs = {raw};
    size_t words = 0, bytes = 0;
    for (const auto& d : docs) {
        bytes += d.size();
        if (o.protocol == "lm-eval") words += eval::count_words_lm_eval(d);
        else if (o.protocol == "hf") words += eval::count_words(d);
    }
    if (o.protocol == "megatron") {
        std::string_view t = raw;
        while (!t.empty() && std::isspace(static_cast<unsigned char>(t.front()))) t.remove_prefix(1);
        while (!t.empty() && std::isspace(static_cast<unsigned char>(t.back()))) t.remove_suffix(1);
        words = size_t(std::count(t.begin(), t.end(), ' ')); // len(split(" ")) - 1
    }

    eval::WindowOptions wo;
    wo.context = o.context > 0 ? o.context : gpt->config().max_seq;
    wo.stride = o.stride > 0 ? o.stride : o.protocol == "lm-eval" ? wo.context : o.protocol == "megatron" ? 32 : 512;
    wo.stride = std::min(wo.stride, wo.context);
    wo.batch = o.batch;
    std::vector<std::vector<int>> doc_tokens;
    size_t total = 0;
    bool cut = false; // --max-tokens left text unscored
    for (const auto& d : docs) {
        if (cut) break;
        doc_tokens.push_back(tok.encode(eval::detokenize(d, detok)));
        if (o.max_tokens && total + doc_tokens.back().size() >= o.max_tokens) {
            cut = total + doc_tokens.back().size() > o.max_tokens || doc_tokens.size() < docs.size();
            doc_tokens.back().resize(o.max_tokens - total);
        }
        total += doc_tokens.back().size();
    }

    Progress progress("ppl: tokens");
    double nll = 0;
    size_t done = 0;
    for (const auto& ids : doc_tokens) {
        const auto per_token = eval::token_nll(*gpt, ids, wo, [&](size_t d, size_t) { progress(done + d, total); });
        for (double v : per_token) nll += v;
        done += ids.size();
    }
    progress(total, total);
    const double seconds = progress.seconds();
    const double ln2 = std::log(2.0);
    json j = {{"protocol", o.protocol},
              {"detokenizer", detok == eval::Detokenizer::wikitext ? "wikitext" : detok == eval::Detokenizer::ptb ? "ptb" : "none"},
              {"documents", doc_tokens.size()}, {"context", wo.context}, {"stride", wo.stride},
              {"tokens", total}, {"nll_sum", nll}, {"ppl_token", std::exp(nll / std::max<size_t>(total, 1))},
              {"seconds", seconds}, {"ms_per_1000_tokens", 1e6 * seconds / std::max<size_t>(total, 1)}};
    if (!cut) {
        j["words"] = words;
        j["ppl_word"] = std::exp(nll / std::max<size_t>(words, 1));
        j["bytes"] = bytes;
        j["bits_per_byte"] = nll / std::max<size_t>(bytes, 1) / ln2;
        j["byte_perplexity"] = std::exp(nll / std::max<size_t>(bytes, 1));
    }
    if (o.json) {
        std::printf("%s\n", j.dump().c_str());
        return;
    }
    std::printf("%s: protocol %s, detokenizer %s, %zu documents, context %d, stride %d\n", o.data.c_str(),
                o.protocol.c_str(), j["detokenizer"].get<std::string>().c_str(), doc_tokens.size(),
                wo.context, wo.stride);
    std::printf("tokens %zu | nll %.4f nats | ppl per token %.4f\n", total, nll, j["ppl_token"].get<double>());
    if (j.contains("words")) {
        std::printf("words %zu | ppl per word %.4f\n", words, j["ppl_word"].get<double>());
        std::printf("bytes %zu | bits per byte %.4f | byte perplexity %.4f\n", bytes,
                    j["bits_per_byte"].get<double>(), j["byte_perplexity"].get<double>());
    } else {
        std::printf("(--max-tokens cut the text: word and byte normalisations omitted)\n");
    }
    std::printf("%.1f s, %.0f ms per 1000 tokens\n", seconds, j["ms_per_1000_tokens"].get<double>());
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

} // namespace

void add_zeroshot(CLI::App& eval) {
    auto p = std::make_shared<PplOptions>();
    auto* ppl = eval.add_subcommand(
        "ppl", "Perplexity of a text file: per BPE token, per word of the original text and "
               "bits per byte, with sliding windows (--context, --stride; every token scored once, "
               "the first after <|endoftext|>)");
    ppl->add_option("--model", p->model, "Model file (.bin, .h5, .safetensors)")->required()->check(CLI::ExistingFile);
    ppl->add_option("--data", p->data, "Text file (e.g. wiki.test.raw, ptb.test.txt)")->required()->check(CLI::ExistingFile);
    ppl->add_option("--protocol", p->protocol,
                    "lm-eval (wikitext pages, disjoint windows, lm-eval's word count) | megatron "
                    "(whole file, stride 32, Megatron-LM's word count) | hf (whole file, stride 512)")
        ->check(CLI::IsMember({"lm-eval", "megatron", "hf"}))
        ->capture_default_str();
    ppl->add_option("--detokenizer", p->detokenizer, "auto (by file name) | none | wikitext | ptb")
        ->check(CLI::IsMember({"auto", "none", "wikitext", "ptb"}))
        ->capture_default_str();
    ppl->add_option("--context", p->context, "Window length C (default: the model's maximum)");
    ppl->add_option("--stride", p->stride, "Tokens scored per window after the first (default: by protocol)");
    ppl->add_option("--batch", p->batch, "Windows per forward pass")->capture_default_str();
    ppl->add_option("--max-tokens", p->max_tokens, "Score only the first N tokens (0 = all)");
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
}

} // namespace train
