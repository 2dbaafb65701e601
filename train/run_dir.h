// The folder a training run writes (checkpoints, log.jsonl): locked for the run, kept
// apart from other runs' checkpoints, cleaned of what a killed run left.
#pragma once

#include <cstdint>
#include <string>

#include "base/file.h"

namespace train {

class RunDir {
public:
    // Creates dir if needed and locks it for this object's lifetime (DIR/.lock; a
    // FileError naming the holder's pid if another run has it). Temporaries that a
    // killed run left (ckpt_*.h5.tmp, best.h5.tmp, log.jsonl.tmp) are removed. A folder that holds
    // checkpoints is another run's: refused (SettingError "out") unless `resuming` or
    // `overwrite`.
    RunDir(const std::string& dir, bool resuming, bool overwrite);

private:
    base::FileLock lock_;
};

// Makes a resumed run's log hold each step once: records of steps past `step`, and a
// last line that a kill cut short, are dropped (the file is rewritten atomically, and
// only if something is dropped). A missing file is left missing.
void truncate_log(const std::string& path, int64_t step);

// A new run's log starts empty: a non-empty file at path is renamed to path.1 (or .2,
// ...: the first free name), never deleted. Returns the new name, or "".
std::string set_aside_log(const std::string& path);

} // namespace train
