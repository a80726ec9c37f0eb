// The window of a convolution or pooling over channels-last (NHWC) images, shared by conv.wgsl
// and pool.wgsl (their launchers prepend this file): a batch of h x w images of c channels, a
// kh x kw window moved by (sh, sw) over the image padded by (ph, pw), oh x ow outputs per
// channel. Offsets are in elements of the bound buffers.

struct Dims {
    batch: u32,
    h: u32,
    w: u32,
    c: u32,
    kh: u32,
    kw: u32,
    sh: u32,
    sw: u32,
    ph: u32,
    pw: u32,
    oh: u32,
    ow: u32,
    // Invocations.
    n: u32,
    // The images (x or dx), the other tensor (patches, pooled images or their gradient), and
    // the max-pooling positions.
    x_off: u32,
    y_off: u32,
    arg_off: u32,
}

// The first and one-past-the-last output index whose windows cover padded coordinate p along
// one axis of window size k, step s and out outputs: o·s <= p < o·s + k.
fn first_window(p: u32, k: u32, s: u32) -> u32 {
    return (max(p + 1u, k) - k + s - 1u) / s;
}

fn end_window(p: u32, s: u32, out: u32) -> u32 {
    return min(p / s + 1u, out);
}
