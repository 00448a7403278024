//! Run-time backend choice from a string (`flex`, `wgpu`, `vulkan`, `cuda[:N]`, `tch`, `tch-cuda[:N]`).
//!
//! Library code takes a `&Device`; only binaries and tests call [`parse_device`].

use burn::tensor::Device;

use crate::error::{CoreError, Result};

/// The device names [`parse_device`] understands, with the cargo feature each needs.
pub const DEVICES: &[(&str, &str)] = &[
    ("flex", "flex"),
    ("wgpu", "wgpu"),
    ("vulkan", "vulkan"),
    ("cuda[:N]", "cuda"),
    ("tch", "tch"),
    ("tch-cuda[:N]", "tch"),
];

/// Backends compiled into this build, by device name.
pub fn compiled_backends() -> Vec<&'static str> {
    [
        cfg!(feature = "flex").then_some("flex"),
        cfg!(feature = "wgpu").then_some("wgpu"),
        cfg!(feature = "vulkan").then_some("vulkan"),
        cfg!(feature = "cuda").then_some("cuda"),
        cfg!(feature = "tch").then_some("tch"),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// Parses a device string into a Burn [`Device`].
///
/// Unknown names and backends left out of this build are errors; the latter names the cargo
/// feature to enable.
pub fn parse_device(spec: &str) -> Result<Device> {
    let spec_trimmed = spec.trim().to_ascii_lowercase();
    let (name, index) = match spec_trimmed.split_once(':') {
        Some((name, index)) => {
            let index: usize = index
                .parse()
                .map_err(|_| CoreError::UnknownDevice(spec.to_string()))?;
            (name, Some(index))
        }
        None => (spec_trimmed.as_str(), None),
    };
    let feature = match name {
        "flex" | "wgpu" | "vulkan" | "tch" if index.is_some() => {
            return Err(CoreError::UnknownDevice(spec.to_string()));
        }
        "flex" => "flex",
        "wgpu" => "wgpu",
        "vulkan" => "vulkan",
        "cuda" => "cuda",
        "tch" | "tch-cuda" => "tch",
        _ => return Err(CoreError::UnknownDevice(spec.to_string())),
    };
    build(name, index.unwrap_or(0)).ok_or_else(|| CoreError::BackendNotCompiled {
        device: spec.to_string(),
        feature,
    })
}

#[allow(unused_variables, deprecated)] // each arm exists only with its feature; libtorch is deprecated upstream
fn build(name: &str, index: usize) -> Option<Device> {
    match name {
        #[cfg(feature = "flex")]
        "flex" => Some(Device::flex()),
        #[cfg(feature = "wgpu")]
        "wgpu" => Some(Device::wgpu(burn::tensor::DeviceKind::DefaultDevice)),
        #[cfg(feature = "vulkan")]
        "vulkan" => Some(Device::vulkan(burn::tensor::DeviceKind::DefaultDevice)),
        #[cfg(feature = "cuda")]
        "cuda" => Some(Device::cuda(burn::tensor::DeviceIndex::Specified(index))),
        #[cfg(feature = "tch")]
        "tch" => Some(Device::libtorch()),
        #[cfg(feature = "tch")]
        "tch-cuda" => Some(Device::libtorch_cuda(burn::tensor::DeviceIndex::Specified(
            index,
        ))),
        _ => None,
    }
}

/// Whether `device` keeps its tensors in host memory (flex): where the inference kernels run,
/// and where reading a tensor in slices costs no transfers.
pub fn on_host(device: &Device) -> bool {
    #[cfg(feature = "flex")]
    {
        *device == Device::flex()
    }
    #[cfg(not(feature = "flex"))]
    {
        let _ = device;
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_names_are_rejected() {
        for bad in ["gpu", "", "flex:1", "cuda:x", "metal"] {
            let err = parse_device(bad).unwrap_err();
            assert!(matches!(err, CoreError::UnknownDevice(_)), "{bad}: {err}");
            assert!(err.to_string().contains("expected one of"), "{err}");
        }
    }

    #[test]
    fn flex_is_always_available_in_tests() {
        assert!(parse_device("flex").is_ok());
        assert!(parse_device(" FLEX ").is_ok());
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn missing_backend_names_its_feature() {
        let err = parse_device("cuda:1").unwrap_err();
        assert!(
            matches!(
                err,
                CoreError::BackendNotCompiled {
                    feature: "cuda",
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("--features cuda"), "{err}");
    }
}
