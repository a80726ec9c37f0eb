//! The model file: parameters in PyTorch's layout plus the spec in the header's metadata.

use super::write_atomic;
use crate::model::{ModelSpec, ParamLayout, TensorSlot};
use crate::{Error, Result};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use std::collections::HashMap;
use std::path::Path;

/// The metadata key and value that mark a wgtrain file.
pub const FORMAT: &str = "wgtrain";
/// Bumped whenever a change makes older readers misread new files.
pub const FORMAT_VERSION: u32 = 1;

/// What to do about a file that reads but contradicts itself.
pub(super) const DAMAGED: &str = "the file is damaged or was edited: use another copy or retrain";

/// A model as stored: its spec and its flat parameters (laid out as `ParamLayout::new(&spec)`).
#[derive(Clone, Debug, PartialEq)]
pub struct SavedModel {
    /// What the model is.
    pub spec: ModelSpec,
    /// Its parameters, `ParamLayout::new(&spec).total` long (alignment padding included).
    pub params: Vec<f32>,
}

/// The tensors of a flat vector in the layout, named `{prefix}layers.<i>.weight|bias`.
pub(super) fn named_tensors(
    layout: &ParamLayout,
    flat: &[f32],
    prefix: &str,
) -> Vec<(String, Vec<usize>, Vec<u8>)> {
    let bytes = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    let mut out = Vec::new();
    for s in &layout.slots {
        let w = &flat[s.weight_offset..s.weight_offset + s.inputs * s.outputs];
        let b = &flat[s.bias_offset..s.bias_offset + s.outputs];
        out.push((
            format!("{prefix}layers.{}.weight", s.layer),
            s.shape.clone(),
            bytes(&permute_weight(s, w, true)),
        ));
        out.push((
            format!("{prefix}layers.{}.bias", s.layer),
            vec![s.outputs],
            bytes(b),
        ));
    }
    out
}

/// Serialises tensors and metadata to safetensors bytes.
pub(super) fn serialize(
    path: &Path,
    tensors: &[(String, Vec<usize>, Vec<u8>)],
    metadata: HashMap<String, String>,
) -> Result<Vec<u8>> {
    let views = tensors
        .iter()
        .map(|(n, shape, data)| {
            TensorView::new(Dtype::F32, shape.clone(), data).map(|v| (n.as_str(), v))
        })
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| model_err(path, format!("cannot build tensor: {e}")))?;
    safetensors::serialize(views, Some(metadata))
        .map_err(|e| model_err(path, format!("cannot serialise: {e}")))
}

pub(super) fn model_err(path: &Path, msg: impl Into<String>) -> Error {
    Error::ModelFile {
        path: path.to_path_buf(),
        msg: msg.into(),
    }
}

/// The metadata every wgtrain file carries.
pub(super) fn base_metadata(spec: &ModelSpec) -> HashMap<String, String> {
    let mut m = HashMap::new();
    m.insert("format".into(), FORMAT.into());
    m.insert("format_version".into(), FORMAT_VERSION.to_string());
    m.insert(
        "spec".into(),
        serde_json::to_string(spec).expect("a spec always serialises"),
    );
    m
}

/// Writes a model file atomically (a temporary file, then a rename): a crash leaves the
/// previous file intact. `params` must be laid out as `ParamLayout::new(spec)` says; the
/// alignment padding is not stored.
///
/// ```
/// use wgtrain::backend::cpu::CpuBackend;
/// use wgtrain::model::{Model, Sequential};
/// use wgtrain::store::{load_model, save_model};
///
/// let spec = Sequential::new(3).dense(4).relu().dense(2).cross_entropy()?;
/// let mut model = Model::new(Box::new(CpuBackend::new()), spec.clone(), 7)?;
/// let params = model.params()?;
/// let path = std::env::temp_dir().join(format!("wgtrain-doc-{}.safetensors", std::process::id()));
/// save_model(&path, &spec, &params)?;
/// let saved = load_model(&path)?;
/// std::fs::remove_file(&path).unwrap();
/// assert_eq!((saved.spec, saved.params), (spec, params));
/// // A file that is not there is an I/O error naming the path.
/// assert!(matches!(load_model(&path), Err(wgtrain::Error::Io { .. })));
/// # Ok::<(), wgtrain::Error>(())
/// ```
pub fn save_model(path: &Path, spec: &ModelSpec, params: &[f32]) -> Result<()> {
    let layout = ParamLayout::new(spec);
    check_len(path, &layout, params.len(), "parameters")?;
    let bytes = serialize(
        path,
        &named_tensors(&layout, params, ""),
        base_metadata(spec),
    )?;
    write_atomic(path, &bytes)
}

fn check_len(path: &Path, layout: &ParamLayout, len: usize, what: &str) -> Result<()> {
    if len != layout.total {
        return Err(model_err(
            path,
            format!(
                "{what} have {len} values, the layout needs {}",
                layout.total
            ),
        ));
    }
    Ok(())
}

/// Reads and checks a file's header: the format marker, version and spec.
pub(super) fn read_header<'a>(
    path: &Path,
    bytes: &'a [u8],
) -> Result<(SafeTensors<'a>, HashMap<String, String>, ModelSpec)> {
    let st = SafeTensors::deserialize(bytes).map_err(|e| {
        model_err(
            path,
            format!(
                "not a safetensors file, or one cut short ({e}); pass a model written by \
                 `wgtrain train --save` or a checkpoint written by --checkpoint"
            ),
        )
    })?;
    let (_, header) = SafeTensors::read_metadata(bytes).map_err(|e| {
        model_err(
            path,
            format!("unreadable safetensors header ({e}); {DAMAGED}"),
        )
    })?;
    let meta = header.metadata().clone().unwrap_or_default();
    if meta.get("format").map(String::as_str) != Some(FORMAT) {
        return Err(model_err(
            path,
            "a safetensors file, but not one written by wgtrain (no \"format\": \"wgtrain\" in \
             its metadata); pass a model written by `wgtrain train --save`",
        ));
    }
    let version = meta.get("format_version").map(String::as_str).unwrap_or("");
    if version != FORMAT_VERSION.to_string() {
        return Err(model_err(
            path,
            format!(
                "written by an incompatible version of wgtrain (file format {version:?}, this \
                 build reads {FORMAT_VERSION}); retrain with this version, or use the wgtrain \
                 that wrote it"
            ),
        ));
    }
    let spec: ModelSpec = meta
        .get("spec")
        .ok_or_else(|| model_err(path, format!("the metadata has no model spec; {DAMAGED}")))
        .and_then(|s| {
            serde_json::from_str(s)
                .map_err(|e| model_err(path, format!("bad model spec ({e}); {DAMAGED}")))
        })?;
    spec.validate()
        .map_err(|e| model_err(path, format!("the model spec is invalid ({e}); {DAMAGED}")))?;
    Ok((st, meta, spec))
}

/// Gathers `{prefix}layers.<i>.weight|bias` into a flat vector, checking every shape against
/// the spec.
pub(super) fn read_flat(
    path: &Path,
    st: &SafeTensors,
    layout: &ParamLayout,
    prefix: &str,
) -> Result<Vec<f32>> {
    // Every tensor is checked against the spec before the vector is allocated, so a spec that
    // declares huge layers over small tensors costs nothing: the tensors' data, which the file
    // really holds, is then what justifies the allocation.
    let mut found = Vec::new();
    for s in &layout.slots {
        for (suffix, shape, offset) in [
            ("weight", s.shape.clone(), s.weight_offset),
            ("bias", vec![s.outputs], s.bias_offset),
        ] {
            let name = format!("{prefix}layers.{}.{suffix}", s.layer);
            let t = st
                .tensor(&name)
                .map_err(|_| model_err(path, format!("tensor {name} is missing; {DAMAGED}")))?;
            if t.dtype() != Dtype::F32 {
                return Err(model_err(
                    path,
                    format!("tensor {name} is {:?}, expected F32; {DAMAGED}", t.dtype()),
                ));
            }
            if t.shape() != shape.as_slice() {
                return Err(model_err(
                    path,
                    format!(
                        "tensor {name} has shape {:?} but the model spec says {:?}; {DAMAGED}",
                        t.shape(),
                        shape
                    ),
                ));
            }
            found.push((t, offset, (suffix == "weight").then_some(s)));
        }
    }
    let mut flat = vec![0.0f32; layout.total];
    for (t, offset, weight) in found {
        let values: Vec<f32> = t
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let values = match weight {
            Some(slot) => permute_weight(slot, &values, false),
            None => values,
        };
        flat[offset..offset + values.len()].copy_from_slice(&values);
    }
    Ok(flat)
}

/// A convolution's weight is held `(out, kh, kw, in)` (channels last, as its patches are) and
/// saved `(out, in, kh, kw)` as PyTorch holds it: `to_file` turns the one into the other, and
/// `!to_file` back. A Dense layer's weight is the same both ways.
fn permute_weight(slot: &TensorSlot, w: &[f32], to_file: bool) -> Vec<f32> {
    let &[o, c, kh, kw] = slot.shape.as_slice() else {
        return w.to_vec();
    };
    let mut out = vec![0.0f32; w.len()];
    for oi in 0..o {
        for ci in 0..c {
            for y in 0..kh {
                for x in 0..kw {
                    let file = ((oi * c + ci) * kh + y) * kw + x;
                    let held = ((oi * kh + y) * kw + x) * c + ci;
                    if to_file {
                        out[file] = w[held];
                    } else {
                        out[held] = w[file];
                    }
                }
            }
        }
    }
    out
}

pub(super) fn read_bytes(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::io(path, e))
}

/// Reads a model file (or the model part of a checkpoint), as [`save_model`] wrote it: the
/// spec from its metadata and the parameters in the flat layout, padding zeroed.
/// [`crate::Error::Io`] when the file cannot be read, [`crate::Error::ModelFile`] when it is
/// not a wgtrain model file or contradicts itself.
pub fn load_model(path: &Path) -> Result<SavedModel> {
    let bytes = read_bytes(path)?;
    let (st, _, spec) = read_header(path, &bytes)?;
    let layout = ParamLayout::new(&spec);
    let params = read_flat(path, &st, &layout, "")?;
    Ok(SavedModel { spec, params })
}
