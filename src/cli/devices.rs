//! `wgtrain devices`: the GPU adapters wgpu can open, with the limits that bound a model.

use crate::backend::gpu::list_adapters;
use clap::Args;

#[derive(Args, Debug)]
pub struct DevicesArgs {
    /// Print the list as JSON.
    #[arg(long)]
    pub json: bool,
}

fn mib(bytes: u64) -> String {
    format!("{} MiB", bytes / (1 << 20))
}

pub fn run(args: DevicesArgs) -> anyhow::Result<()> {
    let list = list_adapters();
    if args.json {
        println!("{}", serde_json::to_string(&list)?);
        return Ok(());
    }
    if list.is_empty() {
        println!(
            "no GPU adapter found (Vulkan, Metal or DX12); `wgtrain train` will use the CPU. \
             On Linux without a GPU, Mesa's software driver works: apt-get install mesa-vulkan-drivers"
        );
        return Ok(());
    }
    for a in &list {
        let auto = if a.auto { "  <- auto" } else { "" };
        println!(
            "[{}] {} ({}, {}){auto}",
            a.index, a.name, a.backend, a.device_type
        );
        if !a.driver.is_empty() {
            println!("    driver: {}", a.driver);
        }
        println!(
            "    max storage binding {}, max buffer {}, workgroups per dimension {}, invocations per workgroup {}, storage offset alignment {} B",
            mib(a.max_storage_buffer_binding_size),
            mib(a.max_buffer_size),
            a.max_compute_workgroups_per_dimension,
            a.max_compute_invocations_per_workgroup,
            a.min_storage_buffer_offset_alignment
        );
        println!(
            "    timestamp queries: {}",
            if a.timestamp_query {
                "yes (`wgtrain bench` times each kernel)"
            } else {
                "no"
            }
        );
    }
    println!(
        "`auto` (the default) takes the one marked: a discrete GPU first, then integrated, virtual, \
         software; pick another with --adapter N or WGTRAIN_ADAPTER=N"
    );
    Ok(())
}
