//! The device: instance, adapter, device and queue, the adapter's limits, the errors wgpu
//! reports asynchronously, and the kernels compiled for it. One [`Context`] is shared (behind an
//! `Arc`) by every [`super::GpuBackend`] opened on the same device, so each shader is compiled
//! once per device.

use crate::{Error, Result};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// A WGSL source file of `shaders/`, compiled once per device into a module.
pub(crate) struct Shader {
    pub name: &'static str,
    pub source: &'static str,
}

/// How one kernel (an entry point of a shader, with its override constants) is bound: a
/// dynamic-offset uniform at binding 0, then the storage buffers listed in `storage`.
pub(crate) struct KernelSpec {
    /// Unique among kernels: the key of the pipeline and bind-group caches.
    pub label: &'static str,
    pub shader: &'static Shader,
    pub entry: &'static str,
    pub constants: &'static [(&'static str, f64)],
    /// `(binding, read_only)` of each storage buffer, in the order launchers pass buffers.
    pub storage: &'static [(u32, bool)],
}

/// A shader compiled for the device, and as naga parsed it (what its kernels need is read from
/// that before their pipelines are made).
#[derive(Clone)]
struct Module {
    wgpu: Arc<wgpu::ShaderModule>,
    parsed: Arc<super::reflect::Parsed>,
}

/// A compiled kernel: its bind-group layout and pipeline.
pub(crate) struct Kernel {
    pub layout: wgpu::BindGroupLayout,
    pub pipeline: wgpu::ComputePipeline,
}

/// Size of every kernel's uniform block (the largest `Dims` struct, padded): one binding size
/// for all kernels keeps the uniform arena uniform.
pub(crate) const UNIFORM_BYTES: u64 = 128;

/// What `wgtrain devices` shows about an adapter.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct AdapterSummary {
    /// The index `--adapter` takes.
    pub index: usize,
    /// The adapter's name as the driver reports it, e.g. "NVIDIA GeForce RTX 4090" or "llvmpipe
    /// (LLVM 15.0.7, 256 bits)".
    pub name: String,
    /// "Vulkan", "Metal", "Dx12", ...
    pub backend: String,
    /// "DiscreteGpu", "IntegratedGpu", "Cpu", ...
    pub device_type: String,
    /// The driver's name and version string, empty where the driver gives none.
    pub driver: String,
    /// The largest buffer one kernel may bind, in bytes: the largest layer, batch or data set the
    /// GPU can hold in one buffer.
    pub max_storage_buffer_binding_size: u64,
    /// The largest buffer the device can create, in bytes.
    pub max_buffer_size: u64,
    /// The most workgroups a dispatch may have along one dimension (grids wrap into a second one
    /// past it).
    pub max_compute_workgroups_per_dimension: u32,
    /// The most invocations one workgroup may have.
    pub max_compute_invocations_per_workgroup: u32,
    /// The alignment, in bytes, that a storage binding's offset into its buffer needs.
    pub min_storage_buffer_offset_alignment: u32,
    /// Timestamp queries around compute passes: per-kernel times in `wgtrain bench`.
    pub timestamp_query: bool,
    /// The adapter `auto` (no `--adapter`) opens: see [`auto_pick`].
    pub auto: bool,
}

pub(crate) struct Context {
    /// `WGTRAIN_VALIDATION=1`: the validation layer's messages are errors (validation.rs).
    validated: bool,
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    /// The limits the device was opened with: the adapter's own, or WebGPU's defaults (see
    /// `limits_from_env`).
    pub limits: wgpu::Limits,
    /// The optional features the device was opened with: those of [`OPTIONAL_FEATURES`] the
    /// adapter has.
    pub features: wgpu::Features,
    /// The first error wgpu reported outside an error scope (validation, out of memory, device
    /// lost), until a call returns it.
    errors: Arc<Mutex<Option<String>>>,
    modules: Mutex<HashMap<&'static str, Module>>,
    kernels: Mutex<HashMap<&'static str, Arc<Kernel>>>,
    traffic: [AtomicU64; 8],
}

/// What the backends on one device have created and moved since it was opened: tests use it to
/// check that a training step reuses its bind groups and moves no data but uniform blocks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Bind groups created: after the first step, a training step should create none.
    pub bind_groups_created: u64,
    /// Distinct uniform blocks (each kernel call's shapes) written to the uniform arena; a block
    /// already in the arena is reused, not written again.
    pub uniform_blocks_written: u64,
    /// Bytes written to buffers by `write_*`.
    pub bytes_written: u64,
    /// Bytes read back from buffers by `read_*`.
    pub bytes_read: u64,
    /// Command buffers submitted to the queue.
    pub submissions: u64,
    /// One per submission with work, one per dispatch while kernel timing is on.
    pub compute_passes: u64,
    /// Kernel launches recorded.
    pub dispatches: u64,
    /// Launches a program's replay took as the last replay prepared them at the same place
    /// (kernel, bind group and uniform offset), with no lookup.
    pub launches_remembered: u64,
}

/// Indices into `Context::traffic`.
#[derive(Clone, Copy)]
pub(crate) enum Count {
    BindGroups,
    UniformBlocks,
    BytesWritten,
    BytesRead,
    Submissions,
    ComputePasses,
    Dispatches,
    Remembered,
}

/// Features used where the adapter has them and done without elsewhere. Timestamp queries
/// bracket compute passes (per-kernel timing); the portable form, not the writes inside a pass
/// that some adapters lack.
const OPTIONAL_FEATURES: wgpu::Features = wgpu::Features::TIMESTAMP_QUERY;

fn instance() -> wgpu::Instance {
    // WGPU_BACKEND (e.g. `vulkan`) and the other WGPU_* variables narrow the choice.
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
    // The validation layer where WGTRAIN_VALIDATION=1 (or WGPU_VALIDATION) asks for it, not
    // by default in every build with debug assertions (see validation.rs).
    if super::validation::requested() {
        desc.flags.insert(wgpu::InstanceFlags::VALIDATION);
    } else if std::env::var_os("WGPU_VALIDATION").is_none() {
        desc.flags.remove(wgpu::InstanceFlags::VALIDATION);
    }
    #[cfg(target_os = "linux")]
    if desc.backends.contains(wgpu::Backends::VULKAN)
        && let Some(instance) = compute_only_vulkan_instance(&desc)
    {
        return instance;
    }
    wgpu::Instance::new(desc)
}

/// Window-system surface extensions that wgpu enables on every Linux Vulkan instance and that a
/// compute-only instance leaves out.
#[cfg(target_os = "linux")]
const WINDOW_SYSTEM_EXTENSIONS: [&std::ffi::CStr; 3] = [
    c"VK_KHR_wayland_surface",
    c"VK_KHR_xcb_surface",
    c"VK_KHR_xlib_surface",
];

/// A Vulkan instance without the Wayland, XCB and Xlib surface extensions, which wgpu would
/// otherwise enable. Mesa's device-selection layer (in every `mesa-vulkan-drivers`) connects to
/// the Wayland and X servers during adapter enumeration when an instance enables those
/// extensions, to find the GPU driving the display. Older releases (Debian 12's stock Mesa
/// 22.3) do so even when no display server is named, and libwayland then prints `error:
/// XDG_RUNTIME_DIR is invalid or not set in the environment.` on every enumeration on a headless
/// machine; newer ones first look for WAYLAND_DISPLAY.
/// Training never presents to a window, so these extensions serve nothing here.
///
/// wgpu 30 has no switch for them; its Vulkan backend's instance-creation callback is the hook.
/// That callback is documented as "must not remove" extensions because wgpu assumes an
/// available extension is enabled, but for these three the assumption is never relied on:
/// wgpu-hal 30.0.1 uses them only in `create_surface_from_{wayland,xcb,xlib}`, each of which
/// first checks that the instance enabled the extension, and this crate creates no surfaces.
/// `VK_KHR_surface` stays, as the `VK_KHR_swapchain` device extension wgpu always requests
/// depends on it. On Linux Vulkan is the only backend this crate builds, so an instance from
/// this one backend loses nothing (wgpu-core keeps its own instance flags at their build
/// defaults, but the WGPU_DEBUG / WGPU_VALIDATION overrides reach the Vulkan instance through
/// `hal_desc`). `None` (no Vulkan loader, say) falls back to the default instance, which then
/// reports no Vulkan adapter as before.
#[cfg(target_os = "linux")]
fn compute_only_vulkan_instance(desc: &wgpu::InstanceDescriptor) -> Option<wgpu::Instance> {
    use wgpu::hal::vulkan::{Api, Instance};
    let hal_desc = wgpu::hal::InstanceDescriptor {
        name: "wgpu",
        flags: desc.flags,
        memory_budget_thresholds: desc.memory_budget_thresholds,
        backend_options: desc.backend_options.clone(),
        telemetry: None,
        display: None,
    };
    // SAFETY: `init_with_callback` has the preconditions of `wgpu::Instance::new`'s own Vulkan
    // instance creation; the callback removes only extensions whose every use is guarded (see
    // above). `from_hal` takes a valid instance of the Vulkan backend, which wgpu then owns.
    unsafe {
        let hal = Instance::init_with_callback(
            &hal_desc,
            Some(Box::new(|args| {
                args.extensions
                    .retain(|e| !WINDOW_SYSTEM_EXTENSIONS.contains(e))
            })),
        )
        .ok()?;
        Some(wgpu::Instance::from_hal::<Api>(hal))
    }
}

/// The limits a device is opened with: the adapter's own, or with `WGTRAIN_LIMITS=webgpu`
/// WebGPU's defaults (`wgpu::Limits::default()`: 16 KiB of workgroup memory, 8 storage buffers
/// per stage, 128 MiB bindings, 256-byte offset alignment as on DX12 and Metal), the least any
/// conforming implementation offers: the test suite run that way shows that nothing depends on
/// what a permissive driver (lavapipe) happens to allow. `WGTRAIN_LIMITS=adapter` is the
/// default.
fn limits_from_env(adapter: &wgpu::Limits) -> Result<wgpu::Limits> {
    match std::env::var("WGTRAIN_LIMITS").as_deref() {
        Err(_) | Ok("adapter") => Ok(adapter.clone()),
        Ok("webgpu") => {
            let webgpu = wgpu::Limits::default();
            let mut short = Vec::new();
            webgpu.check_limits_with_fail_fn(adapter, false, |name, want, has| {
                short.push(format!("{name}: {has} where WebGPU's default is {want}"))
            });
            if !short.is_empty() {
                return Err(Error::Config(format!(
                    "WGTRAIN_LIMITS=webgpu: this adapter offers less than WebGPU's defaults ({})",
                    short.join(", ")
                )));
            }
            Ok(webgpu)
        }
        Ok(other) => Err(Error::Config(format!(
            "WGTRAIN_LIMITS={other:?} is neither `adapter` (the default) nor `webgpu`"
        ))),
    }
}

/// With `WGTRAIN_VALIDATION=1`, an error unless the Khronos validation layer is there (wgpu
/// would otherwise run without it and nothing would be checked).
fn require_validation_layer(instance: &wgpu::Instance) -> Result<()> {
    let missing = || {
        Err(Error::Config(
            "WGTRAIN_VALIDATION=1 but the Vulkan validation layer VK_LAYER_KHRONOS_validation is \
             not installed (Debian: apt-get install vulkan-validationlayers)"
                .into(),
        ))
    };
    #[cfg(target_os = "linux")]
    {
        // SAFETY: only lists the layers the Vulkan loader offers.
        let Some(hal) = (unsafe { instance.as_hal::<wgpu::hal::vulkan::Api>() }) else {
            return missing();
        };
        let layers = unsafe {
            hal.shared_instance()
                .entry()
                .enumerate_instance_layer_properties()
        }
        .unwrap_or_default();
        let found = layers
            .iter()
            .any(|l| l.layer_name_as_c_str() == Ok(c"VK_LAYER_KHRONOS_validation"));
        if found { Ok(()) } else { missing() }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (instance, missing);
        Err(Error::Config(
            "WGTRAIN_VALIDATION=1 checks with the Vulkan validation layer, which wgtrain opens \
             on Linux only"
                .into(),
        ))
    }
}

fn adapters(instance: &wgpu::Instance) -> Vec<wgpu::Adapter> {
    let backends = wgpu::Backends::from_env().unwrap_or(wgpu::Backends::all());
    pollster::block_on(instance.enumerate_adapters(backends))
}

/// The adapter `auto` opens among adapters of these types (in `--adapter` order): a discrete
/// GPU, else an integrated one, else a virtual one (a GPU passed through to a virtual machine),
/// else one of a type the driver does not say, else a software adapter (lavapipe, WARP); the
/// first of its rank where several tie. `None` for an empty list.
///
/// ```
/// use wgpu::DeviceType::{Cpu, DiscreteGpu, IntegratedGpu};
/// // A laptop whose driver lists the integrated GPU first still trains on the discrete one.
/// assert_eq!(wgtrain::backend::gpu::auto_pick(&[Cpu, IntegratedGpu, DiscreteGpu]), Some(2));
/// ```
pub fn auto_pick(types: &[wgpu::DeviceType]) -> Option<usize> {
    let rank = |t: &wgpu::DeviceType| match t {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    };
    // `min_by_key` keeps the first of equal keys: ties go by index.
    (0..types.len()).min_by_key(|&i| rank(&types[i]))
}

/// Every adapter wgpu finds, in the order `--adapter` indexes them.
pub fn list_adapters() -> Vec<AdapterSummary> {
    let all = adapters(&instance());
    let types: Vec<_> = all.iter().map(|a| a.get_info().device_type).collect();
    let pick = auto_pick(&types);
    all.iter()
        .enumerate()
        .map(|(index, a)| {
            let info = a.get_info();
            let l = a.limits();
            AdapterSummary {
                index,
                name: info.name,
                backend: format!("{:?}", info.backend),
                device_type: format!("{:?}", info.device_type),
                driver: format!("{} {}", info.driver, info.driver_info)
                    .trim()
                    .to_string(),
                max_storage_buffer_binding_size: l.max_storage_buffer_binding_size,
                max_buffer_size: l.max_buffer_size,
                max_compute_workgroups_per_dimension: l.max_compute_workgroups_per_dimension,
                max_compute_invocations_per_workgroup: l.max_compute_invocations_per_workgroup,
                min_storage_buffer_offset_alignment: l.min_storage_buffer_offset_alignment,
                timestamp_query: a.features().contains(wgpu::Features::TIMESTAMP_QUERY),
                auto: pick == Some(index),
            }
        })
        .collect()
}

impl Context {
    /// Opens adapter `index` (as [`list_adapters`] numbers them), or by default the one
    /// [`auto_pick`] ranks first (a software driver such as lavapipe where there is no GPU).
    pub fn open(index: Option<usize>) -> Result<Arc<Context>> {
        let validated = super::validation::requested();
        if validated {
            super::validation::install()?;
        }
        let instance = instance();
        if validated {
            require_validation_layer(&instance)?;
        }
        let mut all = adapters(&instance);
        let count = all.len();
        let adapter = match index {
            Some(i) if i < count => all.swap_remove(i),
            Some(i) => {
                return Err(Error::Config(format!(
                    "--adapter {i} does not exist: wgpu found {count} adapter(s) (`wgtrain devices` \
                     lists them)"
                )));
            }
            None => {
                let types: Vec<_> = all.iter().map(|a| a.get_info().device_type).collect();
                match auto_pick(&types) {
                    Some(i) => all.swap_remove(i),
                    None => {
                        let narrowed = match std::env::var("WGPU_BACKEND") {
                            Ok(b) => format!(" with WGPU_BACKEND={b}"),
                            Err(_) => String::new(),
                        };
                        return Err(Error::NoAdapter(format!(
                            "wgpu found no Vulkan, Metal or DirectX 12 adapter{narrowed}; install \
                             a GPU driver, or on Linux without a GPU Mesa's lavapipe (package \
                             mesa-vulkan-drivers)"
                        )));
                    }
                }
            }
        };
        let info = adapter.get_info();
        let limits = limits_from_env(&adapter.limits())?;
        let features = adapter.features() & OPTIONAL_FEATURES;
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("wgtrain"),
            required_features: features,
            required_limits: limits.clone(),
            memory_hints: wgpu::MemoryHints::Performance,
            ..Default::default()
        }))
        .map_err(|e| {
            Error::Device(format!(
                "could not open {} ({:?}): {e}; use --backend cpu to train on the CPU",
                info.name, info.backend
            ))
        })?;

        let errors: Arc<Mutex<Option<String>>> = Arc::default();
        let slot = errors.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            let mut s = slot.lock().unwrap_or_else(|p| p.into_inner());
            if s.is_none() {
                *s = Some(e.to_string());
            }
        }));
        let slot = errors.clone();
        device.set_device_lost_callback(move |reason, msg| {
            if reason != wgpu::DeviceLostReason::Destroyed {
                let mut s = slot.lock().unwrap_or_else(|p| p.into_inner());
                *s = Some(format!("the device was lost: {msg}"));
            }
        });
        Ok(Arc::new(Context {
            validated,
            device,
            queue,
            info,
            limits,
            features,
            errors,
            modules: Mutex::default(),
            kernels: Mutex::default(),
            traffic: Default::default(),
        }))
    }

    /// The driver's name and version, as [`AdapterSummary::driver`] gives them.
    pub fn driver(&self) -> String {
        format!("{} {}", self.info.driver, self.info.driver_info)
            .trim()
            .to_string()
    }

    pub fn count(&self, what: Count, n: u64) {
        self.traffic[what as usize].fetch_add(n, Ordering::Relaxed);
    }

    pub fn traffic(&self) -> Traffic {
        let get = |c: Count| self.traffic[c as usize].load(Ordering::Relaxed);
        Traffic {
            bind_groups_created: get(Count::BindGroups),
            uniform_blocks_written: get(Count::UniformBlocks),
            bytes_written: get(Count::BytesWritten),
            bytes_read: get(Count::BytesRead),
            submissions: get(Count::Submissions),
            compute_passes: get(Count::ComputePasses),
            dispatches: get(Count::Dispatches),
            launches_remembered: get(Count::Remembered),
        }
    }

    /// Returns (and clears) the first error wgpu reported since the last check, or with
    /// `WGTRAIN_VALIDATION=1` the validation layer's messages.
    pub fn check(&self) -> Result<()> {
        if self.validated {
            super::validation::take()?;
        }
        let mut s = self.errors.lock().unwrap_or_else(|p| p.into_inner());
        match s.take() {
            Some(msg) => Err(Error::Device(msg)),
            None => Ok(()),
        }
    }

    /// Runs `f` inside validation and out-of-memory error scopes and turns what they caught
    /// into an error.
    pub fn scoped<T>(&self, what: &str, f: impl FnOnce() -> T) -> Result<T> {
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let validation = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let value = f();
        let v = pollster::block_on(validation.pop());
        let o = pollster::block_on(oom.pop());
        match (o, v) {
            (Some(e), _) => Err(Error::Device(format!("{what}: out of device memory: {e}"))),
            (None, Some(e)) => Err(Error::Device(format!("{what}: {e}"))),
            (None, None) => Ok(value),
        }
    }

    /// The kernel `spec`, compiled on first use.
    pub fn kernel(&self, spec: &'static KernelSpec) -> Result<Arc<Kernel>> {
        if let Some(k) = self.lock_kernels().get(spec.label) {
            return Ok(k.clone());
        }
        debug_assert!(
            super::kernels().any(|k| std::ptr::eq(k, spec)),
            "kernel {} is missing from its launcher's KERNELS",
            spec.label
        );
        let module = self.module(spec.shader)?;
        // wgpu 30 checks no kernel's workgroup memory against the limit, and a driver that
        // does would refuse the pipeline with a less helpful message.
        let needs = super::reflect::needs(&module.parsed, spec)?;
        super::reflect::check(spec, &needs, &self.limits)?;
        let module = module.wgpu;
        let mut entries = vec![wgpu::BindGroupLayoutEntry {
            binding: 0,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: wgpu::BufferBindingType::Uniform,
                has_dynamic_offset: true,
                min_binding_size: wgpu::BufferSize::new(UNIFORM_BYTES),
            },
            count: None,
        }];
        for &(binding, read_only) in spec.storage {
            entries.push(wgpu::BindGroupLayoutEntry {
                binding,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Storage { read_only },
                    has_dynamic_offset: false,
                    min_binding_size: None,
                },
                count: None,
            });
        }
        let kernel = self.scoped(&format!("compiling kernel {}", spec.label), || {
            let layout = self
                .device
                .create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                    label: Some(spec.label),
                    entries: &entries,
                });
            let pipeline_layout =
                self.device
                    .create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                        label: Some(spec.label),
                        bind_group_layouts: &[Some(&layout)],
                        immediate_size: 0,
                    });
            let pipeline = self
                .device
                .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                    label: Some(spec.label),
                    layout: Some(&pipeline_layout),
                    module: &module,
                    entry_point: Some(spec.entry),
                    compilation_options: wgpu::PipelineCompilationOptions {
                        constants: spec.constants,
                        // Every kernel writes its workgroup memory before reading it.
                        zero_initialize_workgroup_memory: false,
                    },
                    cache: None,
                });
            Kernel { layout, pipeline }
        })?;
        let kernel = Arc::new(kernel);
        self.lock_kernels().insert(spec.label, kernel.clone());
        Ok(kernel)
    }

    fn module(&self, shader: &'static Shader) -> Result<Module> {
        let mut modules = self.modules.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(m) = modules.get(shader.name) {
            return Ok(m.clone());
        }
        let parsed = Arc::new(super::reflect::parse(shader)?);
        let m = self.scoped(&format!("compiling shaders/{}", shader.name), || {
            self.device
                .create_shader_module(wgpu::ShaderModuleDescriptor {
                    label: Some(shader.name),
                    // The module naga parsed for `parsed`, not the WGSL again: one parse, and
                    // wgpu then attaches no WGSL source to the SPIR-V it writes (with debug
                    // info on, an `OpSource WGSL` that the SPIR-V validator of Debian 12's
                    // validation layer rejects as an unknown language).
                    source: wgpu::ShaderSource::Naga(std::borrow::Cow::Owned(
                        parsed.module().clone(),
                    )),
                })
        })?;
        let m = Module {
            wgpu: Arc::new(m),
            parsed,
        };
        modules.insert(shader.name, m.clone());
        Ok(m)
    }

    fn lock_kernels(&self) -> std::sync::MutexGuard<'_, HashMap<&'static str, Arc<Kernel>>> {
        self.kernels.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod pick_tests {
    use super::auto_pick;
    use wgpu::DeviceType::{Cpu, DiscreteGpu, IntegratedGpu, Other, VirtualGpu};

    #[test]
    fn auto_ranks_discrete_integrated_virtual_other_then_software() {
        assert_eq!(auto_pick(&[]), None);
        assert_eq!(auto_pick(&[Cpu]), Some(0));
        assert_eq!(auto_pick(&[IntegratedGpu, DiscreteGpu]), Some(1));
        assert_eq!(auto_pick(&[DiscreteGpu, IntegratedGpu]), Some(0));
        assert_eq!(auto_pick(&[Cpu, VirtualGpu, IntegratedGpu]), Some(2));
        assert_eq!(auto_pick(&[Cpu, Other, VirtualGpu]), Some(2));
        assert_eq!(auto_pick(&[Cpu, Other]), Some(1));
        // Ties go to the lower index.
        assert_eq!(
            auto_pick(&[Cpu, DiscreteGpu, IntegratedGpu, DiscreteGpu]),
            Some(1)
        );
        assert_eq!(auto_pick(&[Cpu, Cpu]), Some(0));
        assert_eq!(auto_pick(&[IntegratedGpu, Cpu, IntegratedGpu]), Some(0));
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::{WINDOW_SYSTEM_EXTENSIONS, instance};

    /// The instance keeps `VK_KHR_surface` (which wgpu's device extensions need) and none of
    /// the window-system extensions that make Mesa's device-selection layer look for a display
    /// server (and print about XDG_RUNTIME_DIR on a headless machine).
    #[test]
    fn the_vulkan_instance_enables_no_window_system_extension() {
        let instance = instance();
        // SAFETY: only reads the list of extensions the instance was created with.
        let Some(hal) = (unsafe { instance.as_hal::<wgpu::hal::vulkan::Api>() }) else {
            if std::env::var("WGTRAIN_REQUIRE_GPU").as_deref() == Ok("1") {
                panic!("WGTRAIN_REQUIRE_GPU=1 but there is no Vulkan instance");
            }
            eprintln!("skipping: no Vulkan loader");
            return;
        };
        let enabled = hal.shared_instance().extensions();
        assert!(enabled.contains(&c"VK_KHR_surface"), "{enabled:?}");
        for e in WINDOW_SYSTEM_EXTENSIONS {
            assert!(!enabled.contains(&e), "{e:?} enabled: {enabled:?}");
        }
    }
}
