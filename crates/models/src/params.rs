//! Seeded parameter initialisation and safetensors checkpoints whose tensor names follow
//! PyTorch state-dict conventions (`conv1.weight`, `fc.bias`), checked on load.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use rand::{rngs::StdRng, Rng, SeedableRng};

use crate::error::{ModelError, Result};

/// How a parameter starts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Init {
    /// Uniform in `[-bound, bound]`.
    Uniform(f64),
    /// All zeros.
    Zeros,
}

impl Init {
    /// PyTorch's default for conv and linear weights and biases: `U(-1/sqrt(fan_in), 1/sqrt(fan_in))`.
    pub fn torch_default(fan_in: usize) -> Self {
        Init::Uniform(1.0 / (fan_in as f64).sqrt())
    }

    /// He/Kaiming uniform for layers followed by ReLU: `U(-a, a)`, `a = sqrt(6 / fan_in)`,
    /// which keeps the activation scale through deep ReLU stacks (PyTorch's default
    /// shrinks it by about sqrt(3) a layer, and a five-layer GAP network then starts
    /// learning slowly).
    pub fn he(fan_in: usize) -> Self {
        Init::Uniform((6.0 / fan_in as f64).sqrt())
    }

    /// Glorot/Xavier uniform: `U(-a, a)`, `a = sqrt(6 / (fan_in + fan_out))`.
    pub fn xavier(fan_in: usize, fan_out: usize) -> Self {
        Init::Uniform((6.0 / (fan_in + fan_out) as f64).sqrt())
    }
}

/// One named parameter of an architecture.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamSpec {
    /// State-dict name.
    pub name: String,
    /// Shape.
    pub shape: Vec<usize>,
    /// Initialisation.
    pub init: Init,
}

impl ParamSpec {
    /// A parameter.
    pub fn new(name: impl Into<String>, shape: &[usize], init: Init) -> Self {
        Self {
            name: name.into(),
            shape: shape.to_vec(),
            init,
        }
    }
}

/// An architecture whose parameters are listed up front, so that seeded init, saving and
/// checked loading work the same for every model.
pub trait Architecture: Sized {
    /// Short name (`gapcnn`, `mlp`, `oracle`, `svae`), stored in checkpoints.
    const KIND: &'static str;
    /// Every parameter, with its state-dict name, shape and initialisation.
    fn param_specs() -> Vec<ParamSpec>;
    /// Builds the model from a var builder holding every parameter of [`Self::param_specs`].
    fn from_varbuilder(vb: &VarBuilder) -> candle_core::Result<Self>;
}

/// Fills a `VarMap` with every parameter of `A`, drawn from `StdRng::seed_from_u64(seed)`
/// in spec order (candle's own RNG cannot be seeded).
pub fn init_varmap<A: Architecture>(seed: u64, dtype: DType, device: &Device) -> Result<VarMap> {
    let mut rng = StdRng::seed_from_u64(seed);
    let varmap = VarMap::new();
    {
        let data = varmap.data();
        let mut data = data
            .lock()
            .map_err(|_| ModelError::InvalidInput("var map lock poisoned".into()))?;
        for spec in A::param_specs() {
            let n: usize = spec.shape.iter().product();
            let values: Vec<f64> = match spec.init {
                Init::Uniform(b) => (0..n).map(|_| rng.random_range(-b..=b)).collect(),
                Init::Zeros => vec![0.0; n],
            };
            let t = Tensor::from_vec(values, spec.shape.as_slice(), device)?.to_dtype(dtype)?;
            data.insert(spec.name.clone(), Var::from_tensor(&t)?);
        }
    }
    Ok(varmap)
}

/// A freshly initialised model and the `VarMap` that owns its trainable variables.
pub fn init_model<A: Architecture>(
    seed: u64,
    dtype: DType,
    device: &Device,
) -> Result<(A, VarMap)> {
    let varmap = init_varmap::<A>(seed, dtype, device)?;
    let vb = VarBuilder::from_varmap(&varmap, dtype, device);
    Ok((A::from_varbuilder(&vb)?, varmap))
}

/// Checks tensors against the specs of `A`: every name present, no extra one, shapes
/// and dtype (f32) right. The message names the first offending tensor.
pub fn check_tensors<A: Architecture>(tensors: &HashMap<String, Tensor>) -> Result<(), String> {
    let specs = A::param_specs();
    for spec in &specs {
        let t = tensors
            .get(&spec.name)
            .ok_or_else(|| format!("missing tensor `{}` (a {} has it)", spec.name, A::KIND))?;
        if t.dims() != spec.shape.as_slice() {
            return Err(format!(
                "tensor `{}` has shape {:?}, a {} expects {:?}",
                spec.name,
                t.dims(),
                A::KIND,
                spec.shape
            ));
        }
        if t.dtype() != DType::F32 {
            return Err(format!(
                "tensor `{}` has dtype {:?}, expected F32",
                spec.name,
                t.dtype()
            ));
        }
    }
    let mut extra: Vec<&String> = tensors
        .keys()
        .filter(|k| !specs.iter().any(|s| &s.name == *k))
        .collect();
    extra.sort();
    if let Some(name) = extra.first() {
        return Err(format!(
            "unexpected tensor `{name}`: not part of a {}",
            A::KIND
        ));
    }
    Ok(())
}

/// Checks that every floating-point tensor holds only finite values. The message names
/// the first offending tensor (in name order), how many of its values are NaN or
/// infinite, and where the first one is.
pub fn check_finite(tensors: &HashMap<String, Tensor>) -> Result<(), String> {
    let mut names: Vec<&String> = tensors.keys().collect();
    names.sort();
    for name in names {
        let t = &tensors[name];
        // An empty tensor holds no value to check, and candle would walk every one of
        // its (empty) blocks: a shape like [2^40, 0] took hours (#24, fuzz_safetensors).
        if !t.dtype().is_float() || t.elem_count() == 0 {
            continue;
        }
        // candle 0.11's F8E4M3 -> F64 conversion never returns (its `WithDType::to_f64`
        // calls itself, which compiles to an endless loop): a one-byte F8_E4M3 tensor
        // hung every load (#24, fuzz_safetensors). F32 holds every E4M3 value exactly.
        let wide = if t.dtype() == DType::F8E4M3 {
            t.to_dtype(DType::F32)
        } else {
            Ok(t.clone())
        };
        let values = wide
            .and_then(|f| f.flatten_all())
            .and_then(|f| f.to_dtype(DType::F64))
            .and_then(|f| f.to_vec1::<f64>())
            .map_err(|e| format!("tensor `{name}` cannot be read: {e}"))?;
        let mut bad = values.iter().enumerate().filter(|(_, v)| !v.is_finite());
        if let Some((first, value)) = bad.next() {
            return Err(format!(
                "tensor `{name}` holds {} NaN or infinite value(s) among its {} (the first, \
                 {value}, at flat index {first})",
                1 + bad.count(),
                values.len()
            ));
        }
    }
    Ok(())
}

/// Reads a safetensors file into named tensors (any dtype), refusing a file whose
/// floating-point tensors hold NaN or infinite values ([`check_finite`]): every
/// checkpoint, optimiser state and model loader goes through here.
pub fn read_safetensors(path: &Path, device: &Device) -> Result<HashMap<String, Tensor>> {
    if !path.is_file() {
        return Err(ModelError::Checkpoint {
            path: path.to_path_buf(),
            message: "file not found".into(),
        });
    }
    let tensors =
        candle_core::safetensors::load(path, device).map_err(|e| ModelError::Checkpoint {
            path: path.to_path_buf(),
            message: format!("not a readable safetensors file: {e}"),
        })?;
    check_finite(&tensors).map_err(|message| ModelError::Checkpoint {
        path: path.to_path_buf(),
        message,
    })?;
    Ok(tensors)
}

/// Loads a checkpoint of `A`, refusing it (with the tensor named) when it does not fit.
/// Weights are converted to `dtype` after the check.
pub fn load_model<A: Architecture>(path: &Path, dtype: DType, device: &Device) -> Result<A> {
    let tensors = read_safetensors(path, device)?;
    check_tensors::<A>(&tensors).map_err(|message| ModelError::Checkpoint {
        path: path.to_path_buf(),
        message,
    })?;
    let vb = VarBuilder::from_tensors(tensors, dtype, device);
    Ok(A::from_varbuilder(&vb)?)
}

/// Writes named tensors as f32 safetensors, atomically (a temporary file, then rename),
/// with string metadata.
pub fn save_tensors(
    tensors: &HashMap<String, Tensor>,
    metadata: &HashMap<String, String>,
    path: &Path,
) -> Result<()> {
    let mut owned: Vec<(String, Tensor)> = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        owned.push((name.clone(), t.to_dtype(DType::F32)?.contiguous()?));
    }
    owned.sort_by(|a, b| a.0.cmp(&b.0));
    let views: Vec<(&str, &Tensor)> = owned.iter().map(|(n, t)| (n.as_str(), t)).collect();
    common::write_atomic(path, |tmp| {
        safetensors::serialize_to_file(views, Some(metadata.clone()), tmp)
            .map_err(|e| std::io::Error::other(format!("cannot write safetensors: {e}")))
    })?;
    Ok(())
}

/// The current values of every variable of a `VarMap`.
pub fn varmap_tensors(varmap: &VarMap) -> Result<HashMap<String, Tensor>> {
    let data = varmap.data();
    let data = data
        .lock()
        .map_err(|_| ModelError::InvalidInput("var map lock poisoned".into()))?;
    Ok(data
        .iter()
        .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
        .collect())
}

/// Saves the variables of a model as a checkpoint of `A` (atomically).
pub fn save_model<A: Architecture>(varmap: &VarMap, path: &Path) -> Result<()> {
    let metadata = HashMap::from([("kind".to_string(), A::KIND.to_string())]);
    save_tensors(&varmap_tensors(varmap)?, &metadata, path)
}

/// The variables of a `VarMap` in the order of `A`'s specs (or of the given names).
pub fn vars_named(varmap: &VarMap, names: &[String]) -> Result<Vec<(String, Var)>> {
    let data = varmap.data();
    let data = data
        .lock()
        .map_err(|_| ModelError::InvalidInput("var map lock poisoned".into()))?;
    names
        .iter()
        .map(|n| {
            data.get(n)
                .map(|v| (n.clone(), v.clone()))
                .ok_or_else(|| ModelError::InvalidInput(format!("no variable `{n}`")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_finite_names_the_first_tensor_in_name_order_and_skips_integers() {
        let dev = Device::Cpu;
        let t = |v: &[f64], dtype: DType| Tensor::new(v, &dev).unwrap().to_dtype(dtype).unwrap();
        let mut tensors = HashMap::from([
            ("b".to_string(), t(&[0.0, f64::NAN], DType::F64)),
            ("a".to_string(), t(&[1.0, 2.0, 3.0], DType::BF16)),
            ("steps".to_string(), t(&[7.0], DType::U32)),
        ]);
        assert_eq!(
            check_finite(&tensors),
            Err(
                "tensor `b` holds 1 NaN or infinite value(s) among its 2 (the first, NaN, at flat index 1)"
                    .into()
            )
        );
        tensors.insert(
            "a".into(),
            t(&[f64::INFINITY, 0.0, f64::NEG_INFINITY], DType::F16),
        );
        let err = check_finite(&tensors).unwrap_err();
        assert!(
            err.starts_with("tensor `a` holds 2 NaN or infinite"),
            "{err}"
        );
        tensors.remove("a");
        tensors.remove("b");
        assert_eq!(check_finite(&tensors), Ok(()));
    }

    /// Regression (#24, found by `fuzz_safetensors_generated_files`): a checkpoint with an
    /// F8_E4M3 tensor made `read_safetensors` loop forever (candle converts F8E4M3 to F64
    /// by endless recursion); it is now read, and its NaN (S.1111.111) named.
    #[test]
    fn f8_e4m3_tensors_are_checked_without_hanging() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f8.safetensors");
        let write = |data: &[u8]| {
            let header = format!(
                r#"{{"f8":{{"dtype":"F8_E4M3","shape":[{}],"data_offsets":[0,{}]}}}}"#,
                data.len(),
                data.len()
            );
            let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
            bytes.extend_from_slice(header.as_bytes());
            bytes.extend_from_slice(data);
            std::fs::write(&path, bytes).unwrap();
        };
        let start = std::time::Instant::now();
        // 0, the smallest subnormal (2^-9), 1.0, the largest finite (448), -2^-9.
        write(&[0x00, 0x01, 0x38, 0x7e, 0x81]);
        let tensors = read_safetensors(&path, &Device::Cpu).unwrap();
        let values: Vec<f32> = tensors["f8"]
            .to_dtype(DType::F32)
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(values, [0.0, 1.0 / 512.0, 1.0, 448.0, -1.0 / 512.0]);
        write(&[0x38, 0xff]);
        let err = read_safetensors(&path, &Device::Cpu)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("tensor `f8` holds 1 NaN or infinite value(s) among its 2"),
            "{err}"
        );
        assert!(start.elapsed().as_secs() < 10, "{:?}", start.elapsed());
    }

    /// Regression (#24, found by `fuzz_safetensors_generated_files`): a tensor with no
    /// elements but a huge other dimension (a 100-byte file) made `check_finite`, and so
    /// every checkpoint load, run for hours in candle's block-by-block conversion.
    #[test]
    fn empty_tensors_with_huge_dimensions_are_checked_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty.safetensors");
        let header = br#"{"e":{"dtype":"F32","shape":[1099511627776,0],"data_offsets":[0,0]}}"#;
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header);
        std::fs::write(&path, bytes).unwrap();
        let start = std::time::Instant::now();
        let tensors = read_safetensors(&path, &Device::Cpu).unwrap();
        assert_eq!(tensors["e"].dims(), [1 << 40, 0]);
        assert!(start.elapsed().as_secs() < 10, "{:?}", start.elapsed());
    }
}
