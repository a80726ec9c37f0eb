// The grid of the elementwise and row-wise kernels, shared by the shaders that use it (their
// launchers prepend this file): WG invocations per workgroup in x, the workgroups wrapping into
// a second grid dimension past the adapter's per-dimension limit (`GpuBackend::grid`).

const WG: u32 = 256u;

// The invocation's index in a grid that may wrap into a second dimension.
fn flat(wid: vec3<u32>, nwg: vec3<u32>, lid: vec3<u32>) -> u32 {
    return (wid.y * nwg.x + wid.x) * WG + lid.x;
}
