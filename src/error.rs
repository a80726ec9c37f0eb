//! The library's one error type. Each variant is something a user can act on; the binary adds
//! context with `anyhow` and prints one line.

use std::path::PathBuf;

/// Everything that can go wrong in the library. The message of each variant (its `Display`)
/// says what happened and, where there is one, what to try instead.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A data file or folder is missing, unreadable or malformed.
    #[error("{path}: {msg}")]
    Data {
        /// The file or folder at fault.
        path: PathBuf,
        /// What is wrong with it (the format expected, the value found).
        msg: String,
    },

    /// A data set that is fine on its own but cannot be used as asked (sizes that differ between
    /// train and test, labels beyond the model's classes, an empty split, ...).
    #[error("{0}")]
    Dataset(String),

    /// A setting (flag or config value) that is out of range or contradicts another.
    #[error("{0}")]
    Config(String),

    /// Shapes that do not fit together (a bug in the caller, or a model file that contradicts
    /// itself).
    #[error("shape mismatch: {0}")]
    Shape(String),

    /// A saved model or checkpoint that cannot be used.
    #[error("{path}: {msg}")]
    ModelFile {
        /// The model or checkpoint file.
        path: PathBuf,
        /// Why it cannot be used: unreadable metadata, tensors missing or of the wrong shape,
        /// or settings that contradict the run it would resume.
        msg: String,
    },

    /// No GPU adapter could be found or opened.
    #[error("no GPU adapter: {0} (use --backend cpu to train on the CPU)")]
    NoAdapter(String),

    /// A buffer or dispatch that exceeds the adapter's limits.
    #[error(
        "{what} needs {needed} but the adapter's limit {limit} is {max}; try a smaller --batch-size or --backend cpu"
    )]
    DeviceLimit {
        /// The buffer (with its label, length and element type) or dispatch that is too big.
        what: String,
        /// The name of the `wgpu::Limits` field exceeded, e.g. `max_storage_buffer_binding_size`.
        limit: &'static str,
        /// What it needs, in the limit's unit (bytes for buffers, workgroups along one dimension
        /// for dispatches).
        needed: u64,
        /// The adapter's value of the limit, in the same unit.
        max: u64,
    },

    /// The GPU failed while running (device lost, out of memory, validation error).
    #[error(
        "GPU error: {0}; checkpoints already written are intact: retry, or train with --backend cpu"
    )]
    Device(String),

    /// Training diverged: a loss or parameter became NaN or infinite. `step` is the optimizer
    /// step (counted from the start of training) by which it was seen: values are read back
    /// between steps only now and then, since each read waits for the device.
    #[error(
        "training diverged in epoch {epoch}: {what} became NaN or infinite by step {step}; try a lower --lr"
    )]
    Diverged {
        /// The epoch it happened in, counted from 1.
        epoch: usize,
        /// The optimizer step by which it was seen, counted from the start of training.
        step: usize,
        /// What became non-finite: the training loss, or a parameter with its flat index.
        what: String,
    },

    /// Training was interrupted (Ctrl-C) after a consistent step; the message says where the
    /// checkpoint went.
    #[error("interrupted: {0}")]
    Interrupted(String),

    /// A file or folder that cannot be read or written. The message includes the cause, which
    /// is therefore not also a `source` (that would print it twice in `{:#}` chains).
    #[error("{path}: {}", io_message(err))]
    Io {
        /// The file or folder the operation was on.
        path: PathBuf,
        /// The operating system's error.
        err: std::io::Error,
    },
}

/// The library's result type, with [`Error`] as its default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An [`Error::Data`]: the data file or folder at `path` is missing or malformed, as `msg`
    /// says.
    pub fn data(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        Error::Data {
            path: path.into(),
            msg: msg.into(),
        }
    }

    /// An [`Error::Io`]: reading or writing `path` failed with `err`.
    pub fn io(path: impl Into<PathBuf>, err: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            err,
        }
    }
}

/// The I/O error's text with a hint for the common cases, which users fix themselves.
fn io_message(e: &std::io::Error) -> String {
    use std::io::ErrorKind;
    let hint = match e.kind() {
        ErrorKind::NotFound => "; check the path",
        ErrorKind::PermissionDenied => "; check the file's permissions",
        ErrorKind::IsADirectory => "; give a file, not a folder",
        ErrorKind::StorageFull => "; free some disk space",
        _ => "",
    };
    format!("{e}{hint}")
}
