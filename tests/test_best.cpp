// Keeping the best checkpoint, early stopping and the outlier guard: the detector's
// arithmetic, the Trainer's records and files, exact resume, and the options' checks.
#include <cmath>
#include <fstream>
#include <string>
#include <vector>

#include <doctest/doctest.h>
#include <hdf5.h>

#include "base/error.h"
#include "data/shard.h"
#include "helpers.h"
#include "model/gpt2.h"
#include "model/io.h"
#include "train/checkpoint.h"
#include "train/metrics.h"
#include "train/options.h"
#include "train/outlier.h"
#include "train/run_dir.h"
#include "train/trainer.h"

using namespace testing;

namespace {

// A small model (vocabulary 512: the guard's tests take a few hundred steps) and 6000
// tokens of pseudo-text over 500 ids, as test_train.cpp's runs use.
void make_shards(const Workdir& w) {
    const auto config = model::make_config(2, 2, 32, 512, 32);
    model::GPT2<float> m(config);
    m.init_weights(7);
    model::write_model(w / "init.h5", config, m.params());
    std::vector<uint16_t> tokens(6000);
    uint32_t x = 12345;
    for (auto& t : tokens) {
        x = x * 1103515245u + 12345u;
        t = uint16_t((x >> 16) % 500);
    }
    data::write_shard(w / "train_000001.bin", tokens.data(), 5500);
    data::write_shard(w / "val_000000.bin", tokens.data() + 5500, 500);
}

// Training the small model, validating after every step.
train::TrainOptions options(const Workdir& w, const std::string& out) {
    train::TrainOptions o;
    o.model = w / "init.h5";
    o.train_data = w / "train_*.bin";
    o.val_data = w / "val_*.bin";
    o.batch = 2, o.seq = 16, o.grad_accum = 1;
    o.lr = 3e-3, o.lr_schedule = optim::Schedule::Kind::constant, o.grad_clip = 1;
    o.val_every = 1, o.val_batches = 2;
    o.out = w / out;
    return o;
}

// The steps whose record has `key`.
std::vector<int64_t> steps_with(const train::MemorySink& sink, const std::string& key) {
    std::vector<int64_t> steps;
    for (const auto& r : sink.records)
        if (r.get(key)) steps.push_back(r.step);
    return steps;
}

std::string setting_of(const train::TrainOptions& o) {
    try {
        o.validate();
    } catch (const base::SettingError& e) {
        return e.setting() + ": " + e.problem();
    }
    return "";
}

} // namespace

TEST_CASE("the outlier detector judges a full window by its population z-score") {
    train::OutlierDetector d(2.0, 4);
    for (double x : {1.0, 2.0, 3.0, 4.0}) {
        const auto v = d.add(x); // filling the window: nothing judged
        CHECK(!v.z);
        CHECK(!v.outlier);
    }
    // Window 1 2 3 4: mean 2.5, variance (2.25 + 0.25 + 0.25 + 2.25) / 4 = 1.25.
    auto v = d.add(5.0);
    REQUIRE(v.z);
    CHECK(*v.z == doctest::Approx(2.5 / std::sqrt(1.25))); // 2.2361 > 2
    CHECK(v.outlier);
    CHECK(d.state().window == std::vector<double>{1, 2, 3, 4}); // kept out
    v = d.add(4.5); // z = 2 / 1.1180 = 1.7889: kept, the oldest goes
    CHECK(*v.z == doctest::Approx(2.0 / std::sqrt(1.25)));
    CHECK(!v.outlier);
    CHECK(d.state().window == std::vector<double>{2, 3, 4, 4.5});
    // Window 2 3 4 4.5: mean 3.375, variance (1.890625 + 0.140625 + 0.390625 +
    // 1.265625) / 4 = 0.921875; a value below the mean is never an outlier.
    v = d.add(1.0);
    CHECK(*v.z == doctest::Approx(-2.375 / std::sqrt(0.921875)));
    CHECK(!v.outlier);
    CHECK(d.state().window == std::vector<double>{3, 4, 4.5, 1});
    // Window 3 4 4.5 1: mean 3.125, variance (0.015625 + 0.765625 + 1.890625 + 4.515625)
    // / 4 = 1.796875. Outliers stay out twice; the third in a row and later ones enter.
    const double z100 = (100 - 3.125) / std::sqrt(1.796875);
    for (int i = 0; i < 2; ++i) {
        v = d.add(100);
        CHECK(*v.z == doctest::Approx(z100));
        CHECK(v.outlier);
        CHECK(d.state().outliers_in_a_row == i + 1);
        CHECK(d.state().window == std::vector<double>{3, 4, 4.5, 1});
    }
    v = d.add(100);
    CHECK(v.outlier);
    CHECK(d.state().window == std::vector<double>{4, 4.5, 1, 100});

    // A restored state judges as the original does.
    train::OutlierDetector copy(2.0, 4);
    copy.restore(d.state());
    CHECK(*copy.add(7.0).z == *d.add(7.0).z);
    CHECK(copy.state().window == d.state().window);
    CHECK(copy.state().outliers_in_a_row == 0);
    CHECK_THROWS_AS(copy.restore({{1, 2, 3, 4, 5}, 0}), std::invalid_argument);
    CHECK_THROWS_AS(copy.restore({{1, NAN}, 0}), std::invalid_argument);

    // No spread: z = 0. Threshold 0: z is reported, nothing is an outlier.
    train::OutlierDetector flat(1.0, 2), off(0.0, 2);
    flat.add(3), flat.add(3), off.add(1), off.add(2);
    CHECK(*flat.add(9).z == 0);
    v = off.add(100);
    CHECK(*v.z == doctest::Approx((100 - 1.5) / 0.5));
    CHECK(!v.outlier);
}

TEST_CASE("--best-metric is checked against the run's validation and evaluators") {
    Workdir w;
    train::TrainOptions o = options(w, "run");
    o.steps = 1;
    CHECK(setting_of(o) == "");
    o.keep_best = true;
    CHECK(setting_of(o) == "");
    CHECK(!train::tracked_metric(o).higher_is_better);
    o.val_every = 0;
    CHECK(setting_of(o).starts_with("keep_best: follows val_loss, which needs validation data"));
    o.keep_best = false, o.early_stop = 3, o.val_every = 2, o.val_data = "";
    CHECK(setting_of(o).starts_with("early_stop: follows val_loss"));

    o.early_stop = 0, o.keep_best = true;
    o.best_metric = "lambada:acc";
    CHECK(setting_of(o) ==
          "best_metric: 'lambada:acc' is not measured by this run; it is val_loss or one of the "
          "evaluators' metrics (none configured)");
    o.evals = "ppl:wikitext2,lambada";
    CHECK(setting_of(o).starts_with("keep_best: follows lambada:acc, which needs the evaluators"));
    o.eval_every = 5;
    CHECK(setting_of(o) == "");
    CHECK(train::tracked_metric(o).higher_is_better);
    CHECK(train::tracked_metric(o).evaluator == "lambada");
    CHECK(train::tracked_metric(o).metric == "acc");
    o.best_metric = "wikitext2:ppl_token";
    CHECK(setting_of(o) == "");
    CHECK(!train::tracked_metric(o).higher_is_better);
    CHECK(train::tracked_metric(o).improves(9.5, 10));
    o.best_metric = "wikitext2:ppl"; // the per-token perplexity
    CHECK(setting_of(o) == "");
    CHECK(train::tracked_metric(o).metric == "ppl_token");
    CHECK(train::tracked_metric(o).name == "wikitext2:ppl");
    o.best_metric = "wikitext2:acc";
    CHECK(setting_of(o) == "best_metric: 'wikitext2:acc' is not measured by this run; it is "
                           "val_loss or one of the evaluators' metrics: wikitext2:ppl_token, "
                           "wikitext2:ppl_word, lambada:acc, lambada:ppl");
    o.best_metric = "val_loss", o.evals = "";
    o.early_stop = -1;
    CHECK(setting_of(o) == "early_stop: must be at least 0, got -1");
    o.early_stop = 0, o.skip_loss_z = -1;
    CHECK(setting_of(o) == "skip_loss_z: must be at least 0, got -1");
    o.skip_loss_z = 0, o.skip_grad_z = NAN;
    CHECK(setting_of(o) == "skip_grad_z: must be at least 0, got nan");
}

TEST_CASE("gpt2 train refuses the new options' bad values in one line, and --help states ranges") {
    Workdir w;
    make_shards(w);
    const std::string train = "train --model d6 --train-data '" + (w / "train_*.bin") +
                              "' --steps 1 --out " + (w / "run");
    const std::pair<std::string, std::string> cases[] = {
        {" --early-stop -1", "gpt2: error: --early-stop: must be at least 0, got -1"},
        {" --skip-loss-z -2", "gpt2: error: --skip-loss-z: must be at least 0, got -2"},
        {" --skip-grad-z nan", "gpt2: error: --skip-grad-z: must be at least 0, got nan"},
        {" --keep-best", "gpt2: error: --keep-best: follows val_loss, which needs validation"},
        {" --keep-best --best-metric lambada:acc",
         "gpt2: error: --best-metric: 'lambada:acc' is not measured by this run"},
    };
    for (const auto& entry : cases) {
        const auto& args = std::get<0>(entry);
        const auto& expected = std::get<1>(entry);
        const Run r = run_gpt2(train + args + " 2>&1");
        INFO(args);
        INFO(r.out);
        CHECK(r.status == 2);
        CHECK(count_lines(r.out) == 1);
        CHECK(r.out.starts_with(expected));
    }
    CHECK(!fs::exists(w / "run/log.jsonl"));
    const Run help = run_gpt2("train --help");
    CHECK(help.out.find("--early-stop INT:>= 0") != std::string::npos);
    CHECK(help.out.find("--skip-loss-z FLOAT:>= 0") != std::string::npos);
    CHECK(help.out.find("--keep-best") != std::string::npos);
}

TEST_CASE("--keep-best writes best.h5 exactly at the validations that improve") {
    Workdir w;
    make_shards(w);
    train::TrainOptions o = options(w, "run");
    o.steps = 8, o.lr = 2e-2, o.keep_best = true;
    const train::MemorySink sink = train_in_process(o);
    // The validation before step 1 is not followed; from step 1 on, each strictly
    // better val_loss is recorded and written.
    std::vector<int64_t> improving;
    double best = INFINITY;
    for (const auto& r : sink.records)
        if (const auto val = r.get("val_loss"); val && r.step > 0 && *val < best) {
            best = *val;
            improving.push_back(r.step);
            CHECK(r.get("best_value") == val);
            CHECK(r.text("best_metric") == "val_loss");
        }
    REQUIRE(!improving.empty());
    CHECK(steps_with(sink, "best_value") == improving);
    CHECK(logged(w / "run/log.jsonl", "best_value").size() == improving.size());
    const train::Checkpoint b = train::load_checkpoint(w / "run/best.h5");
    CHECK(b.step == improving.back());
    CHECK(b.loop.best_step == improving.back());
    CHECK(b.loop.best_value == best);
    CHECK(b.loop.best_metric == "val_loss");
    char value[32];
    std::snprintf(value, sizeof value, "%.6f", best);
    CHECK(sink.messages.back() == "best val_loss " + std::string(value) + " at step " +
                                      std::to_string(improving.back()) + " (" +
                                      (w / "run/best.h5") + ")");
    // best.h5 converts and resumes as any checkpoint.
    REQUIRE(run_gpt2("convert " + (w / "run/best.h5") + " " + (w / "best.safetensors")).status ==
            0);
    o.resume = w / "run/best.h5";
    o.out = w / "from_best";
    o.steps = int(b.step) + 1;
    const train::MemorySink resumed = train_in_process(o);
    CHECK(resumed.records.front().step == b.step + 1);
}

TEST_CASE("--keep-best with --keep 1 never prunes best.h5; with lr 0 only the first validation "
          "improves") {
    Workdir w;
    make_shards(w);
    train::TrainOptions o = options(w, "run");
    o.steps = 5, o.lr = 0, o.keep_best = true, o.checkpoint_every = 1, o.keep = 1;
    const train::MemorySink sink = train_in_process(o);
    CHECK(steps_with(sink, "best_value") == std::vector<int64_t>{1});
    CHECK(train::load_checkpoint(w / "run/best.h5").step == 1);
    CHECK(train::list_checkpoints(w / "run") ==
          std::vector<std::string>{train::checkpoint_path(w / "run", 5)});
}

TEST_CASE("--early-stop N stops after N validations without improvement, with a checkpoint") {
    Workdir w;
    make_shards(w);
    train::TrainOptions o = options(w, "run");
    // lr 0: the weights never change, so no validation after step 1's improves.
    o.steps = 20, o.lr = 0, o.early_stop = 3, o.val_every = 2;
    const train::MemorySink sink = train_in_process(o);
    CHECK(sink.records.back().step == 8); // best at 2; 4, 6, 8 without improvement
    CHECK(steps_with(sink, "early_stop") == std::vector<int64_t>{8});
    CHECK(*sink.records.back().get("early_stop") == 3);
    CHECK(logged(w / "run/log.jsonl", "early_stop") == std::vector<double>{3});
    const std::string text = read_bytes(w / "run/log.jsonl");
    CHECK(text.find("\"early_stop\":3") != std::string::npos);
    CHECK(text.find("\"early_stop\":3.") == std::string::npos); // a count, not 3.0
    CHECK(train::latest_checkpoint(w / "run") == train::checkpoint_path(w / "run", 8));
    CHECK(!fs::exists(w / "run/best.h5")); // not asked for
    CHECK(sink.messages.back().starts_with("best val_loss "));
    CHECK(sink.messages.back().ends_with(" at step 2"));
    const train::Checkpoint c = train::load_checkpoint(train::checkpoint_path(w / "run", 8));
    CHECK(c.loop.since_best == 3);

    // Resuming the stopped run does nothing more.
    o.resume = w / "run";
    const train::MemorySink again = train_in_process(o);
    CHECK(again.records.empty());
    CHECK(train::latest_checkpoint(w / "run") == train::checkpoint_path(w / "run", 8));

    // The command says so and exits 0.
    const Run r =
        run_gpt2("train --model " + (w / "init.h5") + " --train-data '" + (w / "train_*.bin") +
                 "' --val-data '" + (w / "val_*.bin") + "' --batch 2 --seq 16 --lr 0 --steps 20 " +
                 "--val-every 1 --val-batches 1 --early-stop 2 --out " + (w / "cli"));
    INFO(r.out);
    CHECK(r.status == 0);
    CHECK(r.out.find("step 3 | early stop: val_loss has not improved in 2 measurements") !=
          std::string::npos);
    CHECK(r.out.find("checkpoint " + train::checkpoint_path(w / "cli", 3)) != std::string::npos);
}

TEST_CASE("a step the outlier guard skips leaves the weights, moments and Adam's t untouched") {
    Workdir w;
    make_shards(w);
    train::TrainOptions o = options(w, "run");
    o.val_data = "", o.val_every = 0;
    o.steps = 140, o.lr = 1e-3;
    o.skip_loss_z = 1e-9, o.skip_grad_z = 1e-9; // anything above the window's mean
    train::SingleProcess comm;
    train::Trainer trainer(o, comm);
    const size_t window = train::OutlierDetector::kWindow;
    for (size_t s = 1; s <= window; ++s) {
        const train::StepMetrics m = trainer.step();
        CHECK(!m.loss_z); // the window fills first
        CHECK(!m.skipped);
    }
    train::Checkpoint before = train::load_checkpoint(trainer.save());
    int skipped = 0;
    for (int s = 0; s < 6; ++s) {
        const train::StepMetrics m = trainer.step();
        REQUIRE(m.loss_z);
        REQUIRE(m.grad_norm_z);
        CHECK(m.skipped == (*m.loss_z > 1e-9 || *m.grad_norm_z > 1e-9));
        const train::Checkpoint after = train::load_checkpoint(trainer.save());
        CAPTURE(after.step);
        CHECK(after.step == before.step + 1); // a skipped step counts
        CHECK((after.params == before.params) == m.skipped);
        CHECK((after.m == before.m) == m.skipped);
        CHECK((after.v == before.v) == m.skipped);
        CHECK(after.adam_t == before.adam_t + (m.skipped ? 0 : 1));
        CHECK(after.loop.skipped_steps == before.loop.skipped_steps + (m.skipped ? 1 : 0));
        skipped += m.skipped;
        before = after;
    }
    CHECK(skipped > 0);
}

TEST_CASE("a run with --keep-best, --early-stop and the outlier guard resumes exactly") {
    Workdir w;
    make_shards(w);
    train::TrainOptions o = options(w, "full");
    o.steps = 300, o.lr = 1e-3, o.val_every = 10;
    o.keep_best = true, o.early_stop = 10, o.skip_loss_z = 1, o.skip_grad_z = 1.5;
    o.checkpoint_every = 65, o.keep = 0;
    const train::MemorySink full = train_in_process(o);
    // This run improves up to step 130, skips steps from 129 on (the window is full) and
    // stops early at 230: resuming at 65 replays improvements, at 130 the skips.
    const int64_t last = full.records.back().step;
    REQUIRE(last > 130);
    REQUIRE(last < o.steps);
    const auto skipped = steps_with(full, "skipped");
    CHECK(!skipped.empty());
    CHECK(logged(w / "full/log.jsonl", "skipped").size() == skipped.size());
    CHECK(read_bytes(w / "full/log.jsonl").find("\"skipped\":1.0") ==
          std::string::npos); // a count, written as 1
    const auto after = [](const std::vector<int64_t>& steps, int64_t from) {
        std::vector<int64_t> kept;
        for (int64_t s : steps)
            if (s > from) kept.push_back(s);
        return kept;
    };
    const auto best_text = [](const std::string& m) { return m.substr(0, m.find(" (")); };
    for (const int64_t from : {65, 130}) {
        CAPTURE(from);
        o.out = w / ("resumed_" + std::to_string(from));
        o.resume = train::checkpoint_path(w / "full", from);
        const train::MemorySink resumed = train_in_process(o);
        CHECK(resumed.records.back().step == last);
        std::vector<double> tail = values_of(full, "loss");
        tail.erase(tail.begin(), tail.begin() + from);
        CHECK(values_of(resumed, "loss") == tail);
        CHECK(steps_with(resumed, "skipped") == after(skipped, from));
        const auto best_after = after(steps_with(full, "best_value"), from);
        CHECK(steps_with(resumed, "best_value") == best_after);
        CHECK(steps_with(resumed, "early_stop") == steps_with(full, "early_stop"));
        CHECK(best_text(resumed.messages.back()) == best_text(full.messages.back()));
        check_same_checkpoint(train::checkpoint_path(w / "full", last),
                              train::checkpoint_path(o.out, last));
        if (!best_after.empty())
            check_same_checkpoint(w / "full/best.h5", o.out + "/best.h5");
        else
            CHECK(!fs::exists(o.out + "/best.h5"));
    }
}

TEST_CASE("a checkpoint without the loop's state (an older one) still resumes") {
    Workdir w;
    make_shards(w);
    train::TrainOptions o = options(w, "run");
    o.steps = 2, o.keep_best = true, o.early_stop = 2;
    train_in_process(o);
    const std::string path = train::checkpoint_path(w / "run", 2);
    {
        const hid_t file = H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
        REQUIRE(file >= 0);
        const hid_t g = H5Gopen2(file, "training", H5P_DEFAULT);
        for (const char* a :
             {"skipped_steps", "best_metric", "best_value", "best_step", "since_best"})
            CHECK(H5Adelete(g, a) >= 0);
        H5Gclose(g);
        H5Fclose(file);
    }
    const train::Checkpoint c = train::load_checkpoint(path);
    CHECK(c.loop.best_step == 0);
    CHECK(c.loop.skipped_steps == 0);
    o.resume = path;
    o.steps = 3;
    const train::MemorySink sink = train_in_process(o);
    CHECK(steps_with(sink, "best_value") == std::vector<int64_t>{3});
}

TEST_CASE("a checkpoint's loop state is checked on load, and a killed run's best.h5.tmp is "
          "cleaned") {
    Workdir w;
    const auto config = model::make_config(1, 1, 8, 64, 8);
    model::GPT2<float> m(config);
    m.init_weights(1);
    std::vector<float> mom(m.num_params(), 0.0f);
    const std::string args = train::to_json(train::TrainOptions{});
    auto save = [&](const std::string& name, int64_t t, const train::LoopState& loop) {
        train::save_checkpoint(w / name, config, m.params(), {mom, mom, t, {}}, 10, {}, args,
                               train::new_run_id(), loop);
        return w / name;
    };
    train::LoopState loop;
    loop.skipped_steps = 2;
    loop.best_metric = "lambada:acc", loop.best_value = 0.25, loop.best_step = 7;
    loop.since_best = 1;
    loop.loss_outliers = {{1.5, 2.25, 0.1 + 0.2}, 1};
    const train::Checkpoint c = train::load_checkpoint(save("ok.h5", 8, loop));
    CHECK(c.adam_t == 8);
    CHECK(c.loop.skipped_steps == 2);
    CHECK(c.loop.best_metric == "lambada:acc");
    CHECK(c.loop.best_value == 0.25);
    CHECK(c.loop.best_step == 7);
    CHECK(c.loop.since_best == 1);
    CHECK(c.loop.loss_outliers.window == loop.loss_outliers.window); // bit for bit
    CHECK(c.loop.loss_outliers.outliers_in_a_row == 1);
    CHECK(c.loop.grad_norm_outliers.window.empty());
    CHECK_THROWS_WITH_AS(train::load_checkpoint(save("t.h5", 10, loop)),
                         doctest::Contains("AdamW's t is 10 at step 10 with 2 skipped"),
                         base::FileError);
    train::LoopState bad = loop;
    bad.best_step = 11;
    CHECK_THROWS_WITH_AS(train::load_checkpoint(save("best.h5", 8, bad)),
                         doctest::Contains("best_step"), base::FileError);
    bad = loop;
    bad.grad_norm_outliers.window.assign(train::OutlierDetector::kWindow + 1, 1.0);
    CHECK_THROWS_WITH_AS(train::load_checkpoint(save("window.h5", 8, bad)),
                         doctest::Contains("outlier window"), base::FileError);

    fs::create_directories(w / "run");
    std::ofstream(w / "run/best.h5.tmp") << "partial";
    { train::RunDir dir(w / "run", false, false); }
    CHECK(!fs::exists(w / "run/best.h5.tmp"));
}
