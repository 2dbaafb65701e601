// gpt2 eval ppl / lambada / cbt / hellaswag: zero-shot evaluations of a model file on text.
#include <cstdio>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "base/error.h"
#include "base/file.h"
#include "data/tokenizer.h"
#include "eval/cbt.h"
#include "eval/hellaswag.h"
#include "eval/lambada.h"
#include "eval/perplexity.h"
#include "model/io.h"
#include "train/cli/common.h"

namespace cli {

namespace {

using json = nlohmann::json;

// One JSON object per line, written atomically.
void write_lines(const std::string& path, size_t n, const std::function<json(size_t)>& line) {
    base::write_atomically(path, [&](const std::string& tmp) {
        std::ofstream out(tmp);
        for (size_t i = 0; i < n; ++i) out << line(i).dump() << '\n';
        out.close();
        if (!out) throw base::FileError(path, "write failed (" + tmp + ")");
    });
}

// What eval lambada and eval cbt both take beside their data: the model, the tokenizer,
// how many examples, and where the results go.
struct ExampleEval {
    std::string model, data, tokenizer, per_example;
    size_t max_examples = 0;
    bool json = false;
    model::Precision precision = model::Precision::fp32;

    void add_to(CLI::App& cmd, const std::string& data_help, const char* unit) {
        add_model_option(cmd, model);
        add_precision_option(cmd, precision);
        cmd.add_option("--data", data, data_help)->required();
        cmd.add_option("--max-examples", max_examples,
                       std::string("Evaluate only the first N ") + unit + "s (0 = all)")
            ->check(at_least(0));
        cmd.add_option("--per-example", per_example,
                       std::string("Write one JSON line per ") + unit + " to this file");
        cmd.add_flag("--json", json, "Print one JSON object");
        add_tokenizer_option(cmd, tokenizer);
    }

    // Inputs exist and are regular files; the per-example file is none of them.
    void check() const {
        auto inputs = model_inputs(model);
        inputs.push_back(data);
        for (const auto& file : inputs) require_file(file);
        require_tokenizer(tokenizer);
        inputs.push_back(tokenizer + "/encoder.json");
        inputs.push_back(tokenizer + "/vocab.bpe");
        if (per_example.empty()) return;
        require_not_input(per_example, "per_example", inputs);
        require_output(per_example);
    }
};

struct EvalPplOptions {
    std::string model, data, tokenizer;
    eval::TextOptions text;
    bool json = false;
    model::Precision precision = model::Precision::fp32;
};

json ppl_json(const eval::TextPerplexity& r, double seconds) {
    const double ms_per_1000 = 1e6 * seconds / double(std::max<size_t>(r.tokens, 1));
    json j = {{"protocol", eval::protocol_name(r.protocol)},
              {"detokenizer", eval::detokenizer_name(r.detokenizer)},
              {"documents", r.documents},
              {"context", r.context},
              {"stride", r.stride},
              {"tokens", r.tokens},
              {"nll_sum", r.nll},
              {"ppl_token", r.ppl_token()},
              {"seconds", seconds},
              {"ms_per_1000_tokens", ms_per_1000}};
    if (!r.cut) {
        j["words"] = r.words;
        j["ppl_word"] = r.ppl_word();
        j["bytes"] = r.bytes;
        j["bits_per_byte"] = r.bits_per_byte();
        j["byte_perplexity"] = r.byte_perplexity();
    }
    return j;
}

void print_ppl(const std::string& data, const eval::TextPerplexity& r, double seconds) {
    std::printf("%s: protocol %s, detokenizer %s, %zu documents, context %d, stride %d\n",
                data.c_str(), eval::protocol_name(r.protocol),
                eval::detokenizer_name(r.detokenizer), r.documents, r.context, r.stride);
    std::printf("tokens %zu | nll %.4f nats | ppl per token %.4f\n", r.tokens, r.nll,
                r.ppl_token());
    if (!r.cut) {
        std::printf("words %zu | ppl per word %.4f\n", r.words, r.ppl_word());
        std::printf("bytes %zu | bits per byte %.4f | byte perplexity %.4f\n", r.bytes,
                    r.bits_per_byte(), r.byte_perplexity());
    } else {
        std::printf("(--max-tokens cut the text: word and byte normalisations omitted)\n");
    }
    std::printf("%.1f s, %.0f ms per 1000 tokens\n", seconds,
                1e6 * seconds / double(std::max<size_t>(r.tokens, 1)));
}

void run_ppl(const EvalPplOptions& o) {
    if (o.text.context > 0 && o.text.stride > o.text.context)
        throw base::SettingError("stride", "must be at most --context (" +
                                               std::to_string(o.text.context) + "), got " +
                                               std::to_string(o.text.stride));
    for (const auto& file : model_inputs(o.model)) require_file(file);
    require_file(o.data);
    require_tokenizer(o.tokenizer);
    const std::string text = base::read_file(o.data);
    if (text.empty()) throw base::FileError(o.data, "empty: there is no text to score");
    auto gpt = load_model_as(o.model, o.precision);
    if (o.text.context > gpt->config().max_seq)
        throw base::SettingError(
            "context", "must be in 1.." + std::to_string(gpt->config().max_seq) +
                           " (the model's positions), got " + std::to_string(o.text.context));
    data::Tokenizer tok(o.tokenizer);
    Progress progress("ppl: tokens");
    const auto r =
        eval::text_perplexity(*gpt, tok, text, std::filesystem::path(o.data).filename().string(),
                              o.text, [&](size_t d, size_t n) { progress(d, n); });
    progress(r.tokens, r.tokens); // only prints when nothing was scored
    if (o.json)
        std::printf("%s\n", ppl_json(r, progress.seconds()).dump().c_str());
    else
        print_ppl(o.data, r, progress.seconds());
}

struct EvalLambadaOptions {
    ExampleEval in;
    eval::LambadaTarget target = eval::LambadaTarget::word;
};

void run_lambada(const EvalLambadaOptions& o) {
    o.in.check();
    auto gpt = load_model_as(o.in.model, o.in.precision);
    data::Tokenizer tok(o.in.tokenizer);
    const auto examples = eval::read_lambada(o.in.data, tok, o.target, o.in.max_examples);
    Progress progress("lambada: examples");
    const auto r =
        eval::evaluate_lambada(*gpt, examples, [&](size_t d, size_t n) { progress(d, n); });
    if (!o.in.per_example.empty())
        write_lines(o.in.per_example, examples.size(), [&](size_t i) {
            return json{{"index", i},
                        {"target", data::sanitize_utf8(examples[i].target)},
                        {"predicted", data::sanitize_utf8(tok.decode(r.items[i].predicted))},
                        {"correct", r.items[i].correct},
                        {"nll", r.items[i].nll}};
        });
    const char* target = o.target == eval::LambadaTarget::word ? "word" : "token";
    if (o.in.json) {
        const json j = {
            {"examples", r.examples},           {"correct", r.correct}, {"accuracy", r.accuracy()},
            {"target_tokens", r.target_tokens}, {"ppl", r.ppl()},       {"target", target},
            {"seconds", progress.seconds()}};
        std::printf("%s\n", j.dump().c_str());
        return;
    }
    std::printf("%s: %zu examples, target = last %s | accuracy %.2f%% (%zu correct) | ppl %.4f | "
                "%zu target tokens | %.1f s\n",
                o.in.data.c_str(), r.examples, target, 100 * r.accuracy(), r.correct, r.ppl(),
                r.target_tokens, progress.seconds());
}

struct EvalCbtOptions {
    ExampleEval in;
    eval::CbtOptions cbt;
};

void run_cbt(const EvalCbtOptions& o) {
    o.in.check();
    auto gpt = load_model_as(o.in.model, o.in.precision);
    data::Tokenizer tok(o.in.tokenizer);
    const auto examples = eval::read_cbt(o.in.data, o.in.max_examples);
    Progress progress("cbt: examples");
    const auto r =
        eval::evaluate_cbt(*gpt, tok, examples, o.cbt, [&](size_t d, size_t n) { progress(d, n); });
    if (!o.in.per_example.empty())
        write_lines(o.in.per_example, examples.size(), [&](size_t i) {
            const auto& item = r.items[i];
            return json{{"index", i},
                        {"answer", data::sanitize_utf8(examples[i].answer)},
                        {"chosen", data::sanitize_utf8(examples[i].candidates[item.chosen])},
                        {"correct", item.correct},
                        {"scores", item.scores}};
        });
    const char* detokenizer = eval::detokenizer_name(o.cbt.detokenizer);
    if (o.in.json) {
        const json j = {{"examples", r.examples},
                        {"correct", r.correct},
                        {"accuracy", r.accuracy()},
                        {"detokenizer", detokenizer},
                        {"seconds", progress.seconds()}};
        std::printf("%s\n", j.dump().c_str());
        return;
    }
    std::printf("%s: %zu examples, detokenizer %s | accuracy %.2f%% (%zu correct) | %.1f s\n",
                o.in.data.c_str(), r.examples, detokenizer, 100 * r.accuracy(), r.correct,
                progress.seconds());
}

struct EvalHellaswagOptions {
    ExampleEval in;
    std::string file; // the data as a positional argument, beside --data
    eval::HellaswagVariant variant = eval::HellaswagVariant::harness;
};

void run_hellaswag(EvalHellaswagOptions o) {
    if (!o.file.empty()) o.in.data = o.file;
    o.in.check();
    auto gpt = load_model_as(o.in.model, o.in.precision);
    data::Tokenizer tok(o.in.tokenizer);
    const auto examples = eval::read_hellaswag(o.in.data, tok, o.variant, o.in.max_examples);
    Progress progress("hellaswag: examples");
    const auto r =
        eval::evaluate_hellaswag(*gpt, examples, [&](size_t d, size_t n) { progress(d, n); });
    if (!o.in.per_example.empty())
        write_lines(o.in.per_example, examples.size(), [&](size_t i) {
            const auto& item = r.items[i];
            return json{{"index", i},
                        {"line", examples[i].line},
                        {"label", examples[i].label},
                        {"pred", item.pred},
                        {"pred_norm", item.pred_norm},
                        {"correct", item.correct},
                        {"correct_norm", item.correct_norm},
                        {"loglik", item.loglik},
                        {"normalized", item.normalized}};
        });
    const char* variant = eval::hellaswag_variant_name(o.variant);
    if (o.in.json) {
        const json j = {{"examples", r.examples},         {"variant", variant},
                        {"correct", r.correct},           {"acc", r.acc()},
                        {"correct_norm", r.correct_norm}, {"acc_norm", r.acc_norm()},
                        {"seconds", progress.seconds()}};
        std::printf("%s\n", j.dump().c_str());
        return;
    }
    std::printf("%s: %zu examples, variant %s | acc %.4f (%zu correct) | acc_norm %.4f (%zu "
                "correct) | %.1f s\n",
                o.in.data.c_str(), r.examples, variant, r.acc(), r.correct, r.acc_norm(),
                r.correct_norm, progress.seconds());
}

void add_ppl(CLI::App& eval) {
    using eval::Protocol;
    auto o = std::make_shared<EvalPplOptions>();
    auto* cmd = eval.add_subcommand(
        "ppl", "Perplexity of a text file: per BPE token, per word of the original text and "
               "bits per byte, with sliding windows (--context, --stride; every token scored "
               "once, the first after <|endoftext|>)");
    add_model_option(*cmd, o->model);
    add_precision_option(*cmd, o->precision);
    cmd->add_option("--data", o->data, "Text file (e.g. wiki.test.raw, ptb.test.txt)")->required();
    add_choice(
        *cmd, "--protocol", o->text.protocol,
        {{"lm-eval", Protocol::lm_eval}, {"megatron", Protocol::megatron}, {"hf", Protocol::hf}},
        "lm-eval (wikitext pages, disjoint windows, lm-eval's word count) | megatron "
        "(whole file, stride 32, Megatron-LM's word count) | hf (whole file, stride 512)");
    using eval::Detokenizer;
    add_choice(*cmd, "--detokenizer", o->text.detokenizer,
               {{"auto", std::nullopt},
                {"none", Detokenizer::none},
                {"wikitext", Detokenizer::wikitext},
                {"ptb", Detokenizer::ptb}},
               "auto (by file name) | none | wikitext | ptb");
    cmd->add_option("--context", o->text.context,
                    "Window length C, at most the model's positions (default: all of them)")
        ->check(at_least(1));
    cmd->add_option("--stride", o->text.stride,
                    "Tokens scored per window after the first, at most C (default: by protocol)")
        ->check(at_least(1));
    cmd->add_option("--batch", o->text.batch, "Windows per forward pass")
        ->check(above(0))
        ->capture_default_str();
    cmd->add_option("--max-tokens", o->text.max_tokens, "Score only the first N tokens (0 = all)")
        ->check(at_least(0));
    cmd->add_flag("--json", o->json, "Print one JSON object");
    add_tokenizer_option(*cmd, o->tokenizer);
    cmd->callback([o] { run_ppl(*o); });
}

void add_lambada(CLI::App& eval) {
    using eval::LambadaTarget;
    auto o = std::make_shared<EvalLambadaOptions>();
    auto* cmd = eval.add_subcommand(
        "lambada", "LAMBADA accuracy and perplexity of the last word, as "
                   "lm-evaluation-harness's lambada_openai (greedy decoding must reproduce "
                   "every token of ' ' + last word)");
    o->in.add_to(*cmd, "lambada_test.jsonl, or plain text with one passage per line", "passage");
    add_choice(*cmd, "--target", o->target,
               {{"word", LambadaTarget::word}, {"token", LambadaTarget::token}},
               "word (' ' + last word) | token (last BPE token)");
    cmd->callback([o] { run_lambada(*o); });
}

void add_cbt(CLI::App& eval) {
    using eval::Detokenizer;
    auto o = std::make_shared<EvalCbtOptions>();
    auto* cmd = eval.add_subcommand(
        "cbt", "Children's Book Test accuracy (CBT-CN, CBT-NE): the candidate whose filled-in "
               "query sentence is most probable after the context sentences");
    o->in.add_to(*cmd, "cbtest_CN_test_2500ex.txt, cbtest_NE_test_2500ex.txt or the like",
                 "example");
    add_choice(*cmd, "--detokenizer", o->cbt.detokenizer,
               {{"cbt", Detokenizer::cbt}, {"none", Detokenizer::none}},
               "cbt (join quotes and punctuation) | none");
    cmd->add_option("--batch", o->cbt.batch,
                    "Candidates per forward pass (0 = all of an example's)")
        ->check(at_least(0))
        ->capture_default_str();
    cmd->callback([o] { run_cbt(*o); });
}

void add_hellaswag(CLI::App& eval) {
    using eval::HellaswagVariant;
    auto o = std::make_shared<EvalHellaswagOptions>();
    auto* cmd = eval.add_subcommand(
        "hellaswag", "HellaSwag accuracy: acc (the ending with the highest log-likelihood) and "
                     "acc_norm (per character with the harness, per token with llm.c's variant)");
    o->in.add_to(*cmd, "hellaswag_val.jsonl (the official JSON Lines file)", "example");
    cmd->get_option("--data")->required(false);
    auto* file = cmd->add_option("file", o->file, "The data file, as --data");
    file->excludes("--data");
    add_choice(*cmd, "--variant", o->variant,
               {{"harness", HellaswagVariant::harness}, {"llmc", HellaswagVariant::llmc}},
               "harness (lm-evaluation-harness: cleaned activity label + context, acc_norm per "
               "character) | llmc (llm.c: raw ctx, acc_norm = lowest mean loss per token)");
    cmd->callback([o] {
        if (o->file.empty() && o->in.data.empty()) throw CLI::RequiredError("FILE or --data");
        run_hellaswag(*o);
    });
}

} // namespace

void add_zeroshot(CLI::App& eval) {
    add_ppl(eval);
    add_lambada(eval);
    add_cbt(eval);
    add_hellaswag(eval);
}

} // namespace cli
