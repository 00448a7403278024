//! fasterai-core's integration tests, in one binary: every test binary links Burn and its
//! backends, so one per file would cost a link and hundreds of MB each.

mod model_files;
mod train_mode;
