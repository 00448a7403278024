//! Bounds on sizes read from files. Model files, ONNX graphs and arrays come from strangers, so
//! every size computed from their contents is checked arithmetic, held under these bounds
//! before anything is allocated.
//!
//! Weights are bounded by the file itself (a layer may only be built once the file is known to
//! hold its tensors); activations, which no file holds, by [`max_memory`], a process-wide cap
//! that the CLI's `--max-memory` sets.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{CoreError, Result};

/// Largest hyper-parameter (channels, kernel, stride, padding, heads, tokens...) a layer may
/// declare: 2^24, far above any real model (the widest vocabularies are 2^18) and small enough
/// that products of a few of them cannot overflow `u64` before they are checked.
pub const MAX_SIZE: usize = 1 << 24;

/// Largest number of elements of one sample's activation at any node: 2^32 (16 GiB of f32).
pub const MAX_SAMPLE_ELEMENTS: u64 = 1 << 32;

/// Default of [`max_memory`]: 32 GiB.
pub const DEFAULT_MAX_MEMORY: u64 = 32 << 30;

static MAX_MEMORY: AtomicU64 = AtomicU64::new(DEFAULT_MAX_MEMORY);

/// The most bytes one tensor that no file holds (an activation, an input batch) may take.
pub fn max_memory() -> u64 {
    MAX_MEMORY.load(Ordering::Relaxed)
}

/// Sets [`max_memory`] for this process (the CLI's `--max-memory`).
pub fn set_max_memory(bytes: u64) {
    MAX_MEMORY.store(bytes, Ordering::Relaxed);
}

/// The product of `dims`, or `None` if it overflows.
pub fn product(dims: &[usize]) -> Option<u64> {
    dims.iter().try_fold(1u64, |n, &d| n.checked_mul(d as u64))
}

/// `a · b · …` saturating at `u64::MAX`: counts (parameters, MACs) that only get compared
/// against bounds.
pub fn saturating_product(factors: &[u64]) -> u64 {
    factors.iter().fold(1u64, |n, &f| n.saturating_mul(f))
}

/// Checks that `count` f32 values (`what`) fit in [`max_memory`].
pub fn check_f32_allocation(count: u64, what: &str) -> Result<()> {
    let bytes = count.saturating_mul(4);
    if bytes > max_memory() {
        return Err(CoreError::TooLarge {
            what: what.to_string(),
            bytes,
            limit: max_memory(),
        });
    }
    Ok(())
}

/// Parses a memory size: `512M`, `16G`, `2GiB`, `1T` or plain bytes.
pub fn parse_bytes(text: &str) -> std::result::Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a size (e.g. 16G, 512M)"))?;
    let shift = match unit.trim().trim_end_matches("iB").trim_end_matches('B') {
        "" => 0,
        "K" | "k" => 10,
        "M" | "m" => 20,
        "G" | "g" => 30,
        "T" | "t" => 40,
        _ => return Err(format!("`{text}`: unknown unit (use K, M, G or T)")),
    };
    number
        .checked_mul(1 << shift)
        .ok_or_else(|| format!("`{text}` is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_and_products_do_not_wrap() {
        assert_eq!(parse_bytes("16G"), Ok(16 << 30));
        assert_eq!(parse_bytes("512MiB"), Ok(512 << 20));
        assert_eq!(parse_bytes("1024"), Ok(1024));
        assert!(parse_bytes("lots").is_err() && parse_bytes("99999999999T").is_err());
        assert_eq!(product(&[1 << 40, 1 << 30]), None);
        assert_eq!(product(&[3, 4]), Some(12));
        assert_eq!(saturating_product(&[u64::MAX, 2]), u64::MAX);
    }
}
