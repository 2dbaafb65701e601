// gpt2 train: pretraining and fine-tuning.
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

#include "data/loader.h"
#include "data/shard.h"
#include "eval/evaluators.h"
#include "model/config.h"
#include "train/cli/common.h"
#include "train/options.h"
#include "train/trainer.h"

namespace cli {

namespace {

using train::TrainOptions;

void add_model_options(CLI::App& cmd, TrainOptions& o) {
    add_model_option(cmd, o.model, true)->group("Model");
    cmd.add_option("--n-layer", o.n_layer, "Override the preset's layers")
        ->check(at_least(0))
        ->group("Model");
    cmd.add_option("--n-head", o.n_head, "Override the preset's heads")
        ->check(at_least(0))
        ->group("Model");
    cmd.add_option("--n-embd", o.n_embd, "Override the preset's channels")
        ->check(at_least(0))
        ->group("Model");
    cmd.add_option("--max-seq", o.max_seq, "Override the preset's maximum sequence length")
        ->check(at_least(0))
        ->group("Model");
    add_precision_option(cmd, o.precision)->group("Model");
}

void add_data_options(CLI::App& cmd, TrainOptions& o) {
    cmd.add_option("--train-data", o.train_data, "Glob of training shards")
        ->required()
        ->group("Data");
    cmd.add_option("--val-data", o.val_data, "Glob of validation shards")->group("Data");
    cmd.add_option("--batch", o.batch, "Sequences per micro-batch B")
        ->check(above(0))
        ->capture_default_str()
        ->group("Data");
    cmd.add_option("--seq", o.seq, "Sequence length T")
        ->check(at_least(1))
        ->capture_default_str()
        ->group("Data");
    cmd.add_option("--grad-accum", o.grad_accum, "Micro-batches per optimizer step")
        ->check(at_least(1))
        ->capture_default_str()
        ->group("Data");
    cmd.add_option("--total-batch-tokens", o.total_batch_tokens,
                   "Tokens per optimizer step; sets --grad-accum = this / (B x T x ranks)")
        ->check(at_least(1))
        ->group("Data");
    add_on_off(cmd, "--shuffle", o.shuffle, "permute shards and windows every epoch")
        ->group("Data");
    add_choice(cmd, "--loss-on", o.score_prompts, {{"completion", false}, {"all", true}},
               "Targets the loss averages over in shards with a loss mask (gpt2 tokenize of "
               "prompt/completion JSON Lines): completions only, or prompts too")
        ->group("Data");
}

void add_schedule_options(CLI::App& cmd, TrainOptions& o) {
    using Kind = optim::Schedule::Kind;
    auto* steps = cmd.add_option("--steps", o.steps, "Optimizer steps")
                      ->check(at_least(1))
                      ->group("Schedule");
    cmd.add_option("--epochs", o.epochs, "Passes over the training data (instead of --steps)")
        ->check(above(0))
        ->excludes(steps)
        ->group("Schedule");
    cmd.add_option("--lr", o.lr, "Peak learning rate")
        ->check(at_least(0))
        ->capture_default_str()
        ->group("Schedule");
    add_choice(cmd, "--lr-schedule", o.lr_schedule,
               {{"constant", Kind::constant},
                {"cosine", Kind::cosine},
                {"wsd", Kind::wsd},
                {"linear", Kind::linear}},
               "constant | cosine (warmup, then cosine to lr x final fraction) | wsd (warmup, "
               "stable, then linear decay over the last --decay-fraction of steps) | linear "
               "(warmup, then linear to lr x final fraction at the last step; with the default "
               "final fraction 0 this is HF's get_linear_schedule_with_warmup, except that HF "
               "reaches 0 one step after the last)")
        ->group("Schedule");
    cmd.add_option("--warmup", o.warmup, "Linear warmup steps: lr x (step+1)/warmup")
        ->check(at_least(0))
        ->capture_default_str()
        ->group("Schedule");
    cmd.add_option("--lr-final-fraction", o.lr_final_fraction, "Final lr as a fraction of --lr")
        ->check(in_range(0, 1))
        ->capture_default_str()
        ->group("Schedule");
    cmd.add_option("--decay-fraction", o.decay_fraction, "wsd: fraction of steps spent decaying")
        ->check(above_to(0, 1))
        ->capture_default_str()
        ->group("Schedule");
}

void add_optimizer_options(CLI::App& cmd, TrainOptions& o) {
    cmd.add_option("--weight-decay", o.weight_decay,
                   "AdamW decoupled weight decay (p -= lr x wd x p), on matrices and embeddings "
                   "only, never biases or LayerNorm")
        ->check(at_least(0))
        ->capture_default_str()
        ->group("Optimizer");
    cmd.add_option("--beta1", o.beta1, "AdamW beta1")
        ->check(from_below(0, 1))
        ->capture_default_str()
        ->group("Optimizer");
    cmd.add_option("--beta2", o.beta2, "AdamW beta2")
        ->check(from_below(0, 1))
        ->capture_default_str()
        ->group("Optimizer");
    cmd.add_option("--eps", o.eps, "AdamW epsilon")
        ->check(above(0))
        ->capture_default_str()
        ->group("Optimizer");
    cmd.add_option("--grad-clip", o.grad_clip, "Clip the global gradient norm to this (0 = off)")
        ->check(at_least(0))
        ->capture_default_str()
        ->group("Optimizer");
    cmd.add_option("--seed", o.seed, "Seed for init, shuffling and samples")
        ->check(seed_range())
        ->capture_default_str()
        ->group("Optimizer");
    cmd.add_option("--skip-loss-z", o.skip_loss_z,
                   "Outlier guard: skip the update of a step whose loss is more than Z standard "
                   "deviations above the mean of the last 128 kept (0 = off)")
        ->check(at_least(0))
        ->capture_default_str()
        ->group("Optimizer");
    cmd.add_option("--skip-grad-z", o.skip_grad_z,
                   "Outlier guard: the same for the gradient norm (0 = off)")
        ->check(at_least(0))
        ->capture_default_str()
        ->group("Optimizer");
}

void add_monitoring_options(CLI::App& cmd, TrainOptions& o) {
    const char* g = "Monitoring";
    cmd.add_option("--val-every", o.val_every,
                   "Validate every N steps, at the end, and before the first step of a new "
                   "run (not of a resumed one)")
        ->check(at_least(0))
        ->capture_default_str()
        ->group(g);
    cmd.add_option(
           "--val-batches", o.val_batches,
           "Validation batches (0 = the whole val set, every target once, the last batch padded)")
        ->check(at_least(0))
        ->capture_default_str()
        ->group(g);
    cmd.add_option("--sample-every", o.sample_every,
                   "Print a text sample every N steps and at the end (0 = never)")
        ->check(at_least(0))
        ->capture_default_str()
        ->group(g);
    cmd.add_option("--sample-tokens", o.sample_tokens,
                   "Tokens per sample (at most the model's maximum sequence length)")
        ->check(at_least(1))
        ->capture_default_str()
        ->group(g);
    cmd.add_option("--sample-top-k", o.sample_top_k, "Sample among the k most likely (0 = all)")
        ->check(at_least(0))
        ->capture_default_str()
        ->group(g);
    cmd.add_option("--sample-temperature", o.sample_temperature,
                   "Sampling temperature (0 = greedy)")
        ->check(at_least(0))
        ->capture_default_str()
        ->group(g);
    cmd.add_option("--eval", o.evals,
                   "Evaluators to run during training, comma-separated: ppl:wikitext2, ppl:ptb, "
                   "ppl:FILE (lm-eval protocol), lambada[:FILE], hellaswag[:FILE]")
        ->group(g);
    cmd.add_option("--eval-every", o.eval_every, "Run --eval every N steps (and at the end)")
        ->check(at_least(0))
        ->capture_default_str()
        ->group(g);
    cmd.add_option("--eval-max-tokens", o.eval_max_tokens,
                   "Tokens scored per perplexity evaluator (0 = all)")
        ->check(at_least(0))
        ->capture_default_str()
        ->group(g);
    cmd.add_option("--eval-max-examples", o.eval_max_examples,
                   "LAMBADA passages or HellaSwag examples per evaluation (0 = all)")
        ->check(at_least(0))
        ->capture_default_str()
        ->group(g);
    o.datasets = default_datasets_dir();
    cmd.add_option("--datasets", o.datasets,
                   "Folder of the data sets that --eval names (wikitext2/, ptb/, lambada/ as "
                   "scripts/get_data.sh lays them out; or set GPT2_DATA_DIR)")
        ->capture_default_str()
        ->group(g);
    add_tokenizer_option(cmd, o.tokenizer)->group(g);
    cmd.add_option("--best-metric", o.best_metric,
                   "What --keep-best and --early-stop follow: val_loss (lower is better), or "
                   "an --eval metric NAME:METRIC: wikitext2:ppl_token (or :ppl), NAME:ppl_word, "
                   "lambada:acc, lambada:ppl, hellaswag:acc, hellaswag:acc_norm (higher is "
                   "better for acc and acc_norm, lower for the others); measurements at step 0 "
                   "do not count")
        ->capture_default_str()
        ->group(g);
    cmd.add_flag("--keep-best", o.keep_best,
                 "Write OUT/best.h5 (a checkpoint) whenever --best-metric improves on its best "
                 "so far; needs --val-every (val_loss) or --eval-every (an --eval metric)")
        ->group(g);
    cmd.add_option("--early-stop", o.early_stop,
                   "Stop after N measurements of --best-metric in a row without improvement, "
                   "with a final checkpoint (0 = off)")
        ->check(at_least(0))
        ->capture_default_str()
        ->group(g);
}

void add_output_options(CLI::App& cmd, TrainOptions& o) {
    cmd.add_option("--out", o.out, "Run folder: checkpoints ckpt_NNNNNNNN.h5 and log.jsonl")
        ->capture_default_str()
        ->group("Output");
    cmd.add_option("--log-file", o.log_file, "JSON-lines log (default OUT/log.jsonl)")
        ->group("Output");
    cmd.add_option("--checkpoint-every", o.checkpoint_every,
                   "Checkpoint every N steps (and at the end)")
        ->check(at_least(0))
        ->capture_default_str()
        ->group("Output");
    cmd.add_option("--keep", o.keep, "Keep the newest K checkpoints (0 = all)")
        ->check(at_least(0))
        ->capture_default_str()
        ->group("Output");
    cmd.add_option("--resume", o.resume,
                   "Continue from a checkpoint file, or from the newest checkpoint in a folder "
                   "that verifies (skipping damaged ones)")
        ->group("Output");
    cmd.add_flag("--overwrite", o.overwrite,
                 "Start a new run in an --out folder that holds another run's checkpoints "
                 "(they are kept; same-step ones are replaced; --keep prunes only this run's)")
        ->group("Output");
}

void add_parallel_options(CLI::App& cmd, TrainOptions& o) {
    add_zero_option(cmd, o.zero)->group("Parallel");
    add_on_off(cmd, "--overlap", o.overlap,
               "under mpirun with --zero 0 and one rank per machine, all-reduce each block's "
               "gradients while backward goes on to the next (ranks sharing a machine reduce "
               "through shared memory after backward)")
        ->group("Parallel");
}

// --log-file is appended to, or set aside as LOG.1 by a new run: neither may be one of
// the run's inputs (evaluated: the evaluators' files), nor a checkpoint's name in --out.
void check_log_file(const TrainOptions& o, std::vector<std::string> inputs) {
    namespace fs = std::filesystem;
    std::error_code ec;
    if (!o.resume.empty()) inputs.push_back(o.resume);
    if (fs::is_directory(o.resume, ec)) // every checkpoint it may resume
        for (const auto& entry : fs::directory_iterator(o.resume, ec))
            if (entry.path().extension() == ".h5") inputs.push_back(entry.path().string());
    if (o.resume.empty() && !model::is_preset(o.model))
        for (const auto& file : model_inputs(o.model)) inputs.push_back(file);
    for (const std::string* glob : {&o.train_data, &o.val_data}) {
        std::vector<std::string> shards;
        try {
            if (!glob->empty()) shards = data::shard_files(*glob);
        } catch (const std::runtime_error&) {
            // the loader says so, naming the option
        }
        for (const auto& shard : shards) {
            inputs.push_back(shard);
            inputs.push_back(data::mask_path(shard));
        }
    }
    require_not_input(o.log_file, "log_file", inputs);
    require_not_input(o.log_file + ".1", "log_file", inputs);
    const auto name = fs::path(o.log_file).filename().string();
    const bool checkpoint_name =
        name == "best.h5" || (name.starts_with("ckpt_") && name.ends_with(".h5"));
    std::error_code ec_log, ec_out;
    if (checkpoint_name &&
        fs::weakly_canonical(fs::absolute(o.log_file).parent_path(), ec_log) ==
            fs::weakly_canonical(fs::absolute(o.out), ec_out) &&
        !ec_log && !ec_out)
        throw base::SettingError("log_file", o.log_file + " is a checkpoint's name in --out");
}

// Every input exists and is what it should be, before anything is opened.
void check_paths(const TrainOptions& o) {
    if (!o.resume.empty()) {
        std::error_code ec;
        if (!std::filesystem::is_directory(o.resume, ec)) require_file(o.resume);
    } else if (!model::is_preset(o.model)) {
        for (const auto& file : model_inputs(o.model)) require_file(file);
    }
    if (o.sample_every > 0 || !o.evals.empty()) require_tokenizer(o.tokenizer);
    std::vector<std::string> evaluated;
    for (const auto& spec : eval::parse_evaluator_specs(o.evals, o.datasets)) {
        require_file(spec.path);
        evaluated.push_back(spec.path);
    }
    if (!o.log_file.empty()) check_log_file(o, evaluated);
}

} // namespace

void add_train(CLI::App& app) {
    auto o = std::make_shared<TrainOptions>();
    auto* cmd = app.add_subcommand(
        "train", "Pretrain a GPT-2 from scratch (--model PRESET) or fine-tune one (--model FILE) "
                 "on llm.c token shards. Each step prints loss, lr, gradient norm, time and "
                 "tokens/s; Ctrl-C finishes the step, writes a checkpoint and exits");
    add_model_options(*cmd, *o);
    add_data_options(*cmd, *o);
    add_schedule_options(*cmd, *o);
    add_optimizer_options(*cmd, *o);
    add_monitoring_options(*cmd, *o);
    add_output_options(*cmd, *o);
    add_parallel_options(*cmd, *o);
    add_recompute_option(*cmd, o->recompute)->group("Memory");
    cmd->callback([o] {
        // Before any work, the same on every rank: settings, then the paths they name.
        o->validate();
        check_paths(*o);
        run_on_ranks([&](train::Communicator& comm) {
            train::ConsoleSink console;
            train::Trainer trainer(*o, comm, {&console});
            trainer.run();
        });
    });
}

} // namespace cli
