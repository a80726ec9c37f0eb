//! Writing a file so that a crash at any moment leaves either the old file or the new one.

use crate::{Error, Result};
use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

/// Writes `bytes` to a temporary file beside `path`, syncs it to disk, and renames it over
/// `path` (atomic on POSIX file systems). On any error the old file is untouched and the
/// temporary file is removed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| Error::io(path, std::io::Error::other("not a file path")))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)?;
        // Make the rename itself durable.
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    result.map_err(|e: std::io::Error| {
        let _ = fs::remove_file(&tmp);
        Error::io(path, e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_file_whole() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.bin");
        write_atomic(&p, b"first").unwrap();
        write_atomic(&p, b"second").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"second");
        // No temporary files are left behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    /// A write that fails part-way leaves the old file as it was and says why.
    #[test]
    fn a_failed_write_keeps_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ckpt.safetensors");
        write_atomic(&p, b"good checkpoint").unwrap();
        // Occupy the temporary file's name with a directory, so creating it fails (root can
        // write anywhere, so permissions cannot be used to make the write fail).
        let tmp = dir
            .path()
            .join(format!(".ckpt.safetensors.tmp-{}", std::process::id()));
        fs::create_dir(&tmp).unwrap();
        let err = write_atomic(&p, b"new").unwrap_err().to_string();
        assert!(err.contains("ckpt.safetensors"), "{err}");
        assert_eq!(fs::read(&p).unwrap(), b"good checkpoint");
        // A missing directory is reported too.
        let missing = dir.path().join("no/such/dir/x.safetensors");
        assert!(write_atomic(&missing, b"x").is_err());
    }
}
