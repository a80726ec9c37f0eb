//! What each kernel asks of a device, read from its WGSL by naga (the shader compiler inside
//! wgpu): workgroup memory, workgroup size, bindings. wgpu 30 does not check workgroup memory
//! against `max_compute_workgroup_storage_size`, and lavapipe, the one driver the tests meet,
//! takes more than WebGPU's defaults of everything; so [`check`] compares a kernel's needs with
//! the device's limits before its pipeline is made, and refuses one that does not fit with the
//! limit it exceeds. The tests check every kernel, under every set of override constants the
//! launchers use, against `wgpu::Limits::default()` (WebGPU's guaranteed minimums).

use super::context::{KernelSpec, Shader, UNIFORM_BYTES};
use crate::{Error, Result};
use naga::valid::{Capabilities, GlobalUse, ModuleInfo, ValidationFlags, Validator};

/// A shader file parsed and validated once, before any of its kernels is specialized.
pub(crate) struct Parsed {
    module: naga::Module,
    info: ModuleInfo,
}

/// What one kernel (an entry point with its override constants) needs from the device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Needs {
    /// Bytes of `var<workgroup>` memory the entry point uses.
    pub workgroup_bytes: u32,
    /// `@workgroup_size`, overrides applied.
    pub workgroup_size: [u32; 3],
    /// Storage buffers in the kernel's bind-group layout (`KernelSpec::storage`).
    pub storage_buffers: u32,
    /// Bytes of the uniform block the entry point reads at binding 0 (0 if it reads none).
    pub uniform_bytes: u32,
    /// The highest binding number in the layout.
    pub max_binding: u32,
}

fn validator() -> Validator {
    // No optional capabilities: a kernel that needs one would not run on every device.
    Validator::new(ValidationFlags::all(), Capabilities::empty())
}

impl Parsed {
    /// The module as naga parsed it (before any override is applied).
    pub(crate) fn module(&self) -> &naga::Module {
        &self.module
    }
}

/// Parses and validates `shader`.
pub(crate) fn parse(shader: &Shader) -> Result<Parsed> {
    let module = naga::front::wgsl::parse_str(shader.source).map_err(|e| {
        Error::Device(format!(
            "shaders/{}: {}",
            shader.name,
            e.emit_to_string(shader.source)
        ))
    })?;
    let info = validator()
        .validate(&module)
        .map_err(|e| Error::Device(format!("shaders/{}: {e}", shader.name)))?;
    Ok(Parsed { module, info })
}

/// `spec`'s entry point alone, with its override constants applied (what a back end compiles).
pub(crate) fn specialize(parsed: &Parsed, spec: &KernelSpec) -> Result<(naga::Module, ModuleInfo)> {
    let mut constants = naga::back::PipelineConstants::default();
    for &(name, value) in spec.constants {
        constants.insert(name.to_string(), value);
    }
    let (module, info) = naga::back::pipeline_constants::process_overrides(
        &parsed.module,
        &parsed.info,
        Some((naga::ShaderStage::Compute, spec.entry)),
        &constants,
    )
    .map_err(|e| Error::Device(format!("kernel {}: {e}", spec.label)))?;
    Ok((module.into_owned(), info.into_owned()))
}

/// What `spec` needs, read from `parsed`.
pub(crate) fn needs(parsed: &Parsed, spec: &KernelSpec) -> Result<Needs> {
    let (module, info) = specialize(parsed, spec)?;
    let (index, entry) = module
        .entry_points
        .iter()
        .enumerate()
        .find(|(_, e)| e.name == spec.entry)
        .ok_or_else(|| {
            Error::Device(format!(
                "kernel {}: shaders/{} has no entry point {}",
                spec.label, spec.shader.name, spec.entry
            ))
        })?;
    let used = info.get_entry_point(index);
    let mut workgroup_bytes = 0;
    let mut uniform_bytes = 0;
    for (handle, var) in module.global_variables.iter() {
        if used[handle] == GlobalUse::empty() {
            continue;
        }
        let size = module.types[var.ty].inner.size(module.to_ctx());
        match var.space {
            naga::AddressSpace::WorkGroup => workgroup_bytes += size,
            naga::AddressSpace::Uniform => uniform_bytes = uniform_bytes.max(size),
            _ => {}
        }
    }
    let storage_buffers = spec.storage.len() as u32;
    let max_binding = spec.storage.iter().map(|&(b, _)| b).max().unwrap_or(0);
    Ok(Needs {
        workgroup_bytes,
        workgroup_size: entry.workgroup_size,
        storage_buffers,
        uniform_bytes,
        max_binding,
    })
}

/// Refuses `spec` where `needs` exceeds `limits`, naming the limit, what the kernel needs and
/// what the device allows.
pub(crate) fn check(spec: &KernelSpec, needs: &Needs, limits: &wgpu::Limits) -> Result<()> {
    let [x, y, z] = needs.workgroup_size;
    if u64::from(needs.uniform_bytes) > UNIFORM_BYTES {
        // A launcher's `Dims` outgrew the arena's slots: a bug here, not the device's limit.
        return Err(Error::Device(format!(
            "kernel {}: its uniform block has {} bytes, more than the {UNIFORM_BYTES} of a slot",
            spec.label, needs.uniform_bytes
        )));
    }
    let checks: [(&'static str, u64, u64); 8] = [
        (
            "max_compute_workgroup_storage_size",
            needs.workgroup_bytes.into(),
            limits.max_compute_workgroup_storage_size.into(),
        ),
        (
            "max_compute_invocations_per_workgroup",
            u64::from(x) * u64::from(y) * u64::from(z),
            limits.max_compute_invocations_per_workgroup.into(),
        ),
        (
            "max_compute_workgroup_size_x",
            x.into(),
            limits.max_compute_workgroup_size_x.into(),
        ),
        (
            "max_compute_workgroup_size_y",
            y.into(),
            limits.max_compute_workgroup_size_y.into(),
        ),
        (
            "max_compute_workgroup_size_z",
            z.into(),
            limits.max_compute_workgroup_size_z.into(),
        ),
        (
            "max_storage_buffers_per_shader_stage",
            needs.storage_buffers.into(),
            limits.max_storage_buffers_per_shader_stage.into(),
        ),
        (
            "max_bindings_per_bind_group",
            u64::from(needs.max_binding) + 1,
            limits.max_bindings_per_bind_group.into(),
        ),
        // Every kernel's uniform block is bound as one UNIFORM_BYTES slot of the arena.
        (
            "max_uniform_buffer_binding_size",
            UNIFORM_BYTES,
            limits.max_uniform_buffer_binding_size,
        ),
    ];
    for (limit, needed, max) in checks {
        if needed > max {
            return Err(Error::DeviceLimit {
                what: format!("kernel {} (shaders/{})", spec.label, spec.shader.name),
                limit,
                needed,
                max,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{Needs, Parsed, check, needs, parse, specialize};
    use crate::backend::gpu::context::KernelSpec;
    use std::collections::HashMap;

    /// Every kernel with its shader parsed once.
    fn all() -> Vec<(
        &'static KernelSpec,
        Needs,
        (naga::Module, naga::valid::ModuleInfo),
    )> {
        let mut parsed: HashMap<&str, Parsed> = HashMap::new();
        super::super::kernels()
            .map(|spec| {
                let p = parsed
                    .entry(spec.shader.name)
                    .or_insert_with(|| parse(spec.shader).unwrap_or_else(|e| panic!("{e}")));
                let n = needs(p, spec).unwrap_or_else(|e| panic!("{e}"));
                let s = specialize(p, spec).unwrap_or_else(|e| panic!("{e}"));
                (spec, n, s)
            })
            .collect()
    }

    /// Every kernel, under the override constants its launcher gives it, within WebGPU's
    /// default limits: what any conforming implementation (a browser, Dawn, wgpu on any
    /// driver) must accept. The table (`--nocapture`) is each kernel's needs.
    #[test]
    fn every_kernel_fits_webgpu_default_limits() {
        let limits = wgpu::Limits::default();
        let mut refused = Vec::new();
        let mut labels = std::collections::HashSet::new();
        println!(
            "kernel | shader | workgroup bytes | workgroup size | storage buffers | uniform bytes"
        );
        for (spec, n, _) in all() {
            assert!(
                labels.insert(spec.label),
                "two kernels are labelled {}",
                spec.label
            );
            let [x, y, z] = n.workgroup_size;
            println!(
                "{} | {} | {} | {x}x{y}x{z} | {} | {}",
                spec.label, spec.shader.name, n.workgroup_bytes, n.storage_buffers, n.uniform_bytes
            );
            assert!(n.uniform_bytes > 0, "{} reads no uniform block", spec.label);
            if let Err(e) = check(spec, &n, &limits) {
                refused.push(e.to_string());
            }
        }
        assert!(refused.is_empty(), "{refused:#?}");
        assert!(labels.len() >= 40, "only {} kernels listed", labels.len());
    }

    /// A device with less room than a kernel needs refuses it, naming the limit, before any
    /// pipeline is made; the largest kernel (128 x 128 tiles) fits exactly WebGPU's 16 KiB.
    #[test]
    fn a_kernel_over_the_device_limits_is_refused() {
        let by_label: HashMap<_, _> = all()
            .into_iter()
            .map(|(s, n, _)| (s.label, (s, n)))
            .collect();
        let (big, n) = &by_label["matmul_big_bt"];
        assert_eq!(n.workgroup_bytes, 16_384);
        let small = wgpu::Limits {
            max_compute_workgroup_storage_size: 16_383,
            ..wgpu::Limits::default()
        };
        let e = check(big, n, &small).unwrap_err().to_string();
        assert!(e.contains("max_compute_workgroup_storage_size"), "{e}");
        assert!(
            e.contains("matmul_big_bt") && e.contains("16384") && e.contains("16383"),
            "{e}"
        );
        let (loss, n) = &by_label["matmul_softmax_ce"];
        assert_eq!(n.storage_buffers, 8);
        let seven = wgpu::Limits {
            max_storage_buffers_per_shader_stage: 7,
            ..wgpu::Limits::default()
        };
        let e = check(loss, n, &seven).unwrap_err().to_string();
        assert!(e.contains("max_storage_buffers_per_shader_stage"), "{e}");
        let (fill, n) = &by_label["fill"];
        let narrow = wgpu::Limits {
            max_compute_invocations_per_workgroup: 128,
            ..wgpu::Limits::default()
        };
        let e = check(fill, n, &narrow).unwrap_err().to_string();
        assert!(e.contains("max_compute_invocations_per_workgroup"), "{e}");
    }

    /// Where `spirv-val` is (Debian's spirv-tools), or `None` with the reason printed; CI
    /// (`WGTRAIN_REQUIRE_GPU=1`) requires it.
    fn spirv_val() -> Option<&'static str> {
        let found = std::process::Command::new("spirv-val")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if found {
            return Some("spirv-val");
        }
        if std::env::var("WGTRAIN_REQUIRE_GPU").as_deref() == Ok("1") {
            panic!("WGTRAIN_REQUIRE_GPU=1 but spirv-val is missing (apt-get install spirv-tools)");
        }
        eprintln!("skipping spirv-val: not installed (apt-get install spirv-tools)");
        None
    }

    /// Every kernel translates, as wgpu translates it on each platform, to Metal's MSL, DX12's
    /// HLSL and Vulkan's SPIR-V, and the SPIR-V passes `spirv-val`. A failure names the kernel
    /// (its shader, entry point and override constants).
    #[test]
    fn every_kernel_translates_to_msl_hlsl_and_valid_spirv() {
        let validator = spirv_val();
        let dir = tempfile::tempdir().unwrap();
        let mut failures = Vec::new();
        for (spec, _, (module, info)) in all() {
            let name = format!(
                "{} (shaders/{}, {} with {:?})",
                spec.label, spec.shader.name, spec.entry, spec.constants
            );
            let entry = (naga::ShaderStage::Compute, spec.entry.to_string());
            let msl = naga::back::msl::write_string(
                &module,
                &info,
                &naga::back::msl::Options {
                    lang_version: (2, 1),
                    ..Default::default()
                },
                &naga::back::msl::PipelineOptions {
                    entry_point: Some(entry.clone()),
                    ..Default::default()
                },
            );
            if let Err(e) = msl {
                failures.push(format!("{name}: MSL: {e}"));
            }
            let mut hlsl = String::new();
            let hlsl_options = naga::back::hlsl::Options {
                shader_model: naga::back::hlsl::ShaderModel::V6_0,
                ..Default::default()
            };
            let pipeline = naga::back::hlsl::PipelineOptions {
                entry_point: Some(entry.clone()),
            };
            let written = naga::back::hlsl::Writer::new(&mut hlsl, &hlsl_options, &pipeline)
                .write(&module, &info, None);
            if let Err(e) = written {
                failures.push(format!("{name}: HLSL: {e}"));
            }
            let spv = naga::back::spv::write_vec(
                &module,
                &info,
                &naga::back::spv::Options::default(),
                Some(&naga::back::spv::PipelineOptions {
                    shader_stage: naga::ShaderStage::Compute,
                    entry_point: spec.entry.to_string(),
                }),
            );
            let words = match spv {
                Ok(w) => w,
                Err(e) => {
                    failures.push(format!("{name}: SPIR-V: {e}"));
                    continue;
                }
            };
            let Some(validator) = validator else { continue };
            let path = dir.path().join(format!("{}.spv", spec.label));
            std::fs::write(&path, bytemuck::cast_slice::<u32, u8>(&words)).unwrap();
            let out = std::process::Command::new(validator)
                .args(["--target-env", "vulkan1.0"])
                .arg(&path)
                .output()
                .unwrap();
            if !out.status.success() {
                failures.push(format!(
                    "{name}: spirv-val: {}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }
}
