//! Helpers for tests of training code: an interruption, and one-at-a-time use of the RNG.

use std::sync::{Mutex, MutexGuard};

use crate::learner::{Callback, LossContext};

/// Makes the loss NaN in one epoch, so that training stops there with
/// [`crate::TrainError::Diverged`], as a crash would (after the state of the epochs before it
/// was written).
pub struct FailAt(pub Option<usize>);

impl Callback for FailAt {
    fn after_loss(&mut self, ctx: &mut LossContext<'_>) {
        if Some(ctx.state.epoch) == self.0 {
            ctx.loss = ctx.loss.clone() * f32::NAN;
        }
    }
}

static RNG: Mutex<()> = Mutex::new(());

/// Burn's flex RNG is global to the process: tests drawing from it at once (weights, dropout)
/// make each other's runs irreproducible. Tests that compare runs bit for bit, and the tests
/// beside them, hold this guard.
pub fn serial_rng() -> MutexGuard<'static, ()> {
    RNG.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs `work` holding [`serial_rng`] on a one-thread rayon pool: flex splits its parallel sums
/// by how rayon's threads steal work, which depends on timing, so two runs agree bit for bit
/// only on one thread.
pub fn bit_for_bit<R: Send>(work: impl FnOnce() -> R + Send) -> R {
    let _rng = serial_rng();
    rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("a one-thread pool")
        .install(work)
}
