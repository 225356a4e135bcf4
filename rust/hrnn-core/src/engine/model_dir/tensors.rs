//! `model.safetensors`: typed, shape-checked reads of its tensors (little-endian, as stored).

use safetensors::{Dtype, SafeTensors};

use crate::error::{Error, Result};

fn decode<T, const B: usize>(bytes: &[u8], from_le: fn([u8; B]) -> T) -> Vec<T> {
    bytes
        .chunks_exact(B)
        .map(|c| from_le(c.try_into().expect("chunks_exact yields B bytes")))
        .collect()
}

/// Typed, shape-checked reads from a safetensors file; errors name `file` and the tensor.
pub(super) struct Reader<'a, 'data> {
    tensors: SafeTensors<'data>,
    file: &'a str,
}

impl<'a, 'data> Reader<'a, 'data> {
    /// Parses the safetensors header of `bytes`, the contents of `file`.
    pub(super) fn open(bytes: &'data [u8], file: &'a str) -> Result<Self> {
        // The crate validates the header; catch_unwind is a last line of defence so that no input
        // can bring the process down (a panic must never cross into Python).
        let tensors = std::panic::catch_unwind(|| SafeTensors::deserialize(bytes))
            .map_err(|_| Error::model_format(file, "<header>", "unreadable safetensors header"))?
            .map_err(|e| {
                Error::model_format(
                    file,
                    "<header>",
                    format!("not a valid safetensors file: {e}"),
                )
            })?;
        Ok(Self { tensors, file })
    }

    /// The file name errors carry.
    pub(super) fn file(&self) -> &'a str {
        self.file
    }

    /// An error about `tensor`.
    pub(super) fn error(&self, tensor: &str, message: String) -> Error {
        Error::model_format(self.file, tensor, message)
    }

    fn view(&self, name: &str, dtype: Dtype) -> Result<safetensors::tensor::TensorView<'data>> {
        let view = self
            .tensors
            .tensor(name)
            .map_err(|_| self.error(name, "missing tensor".into()))?;
        if view.dtype() != dtype {
            return Err(self.error(
                name,
                format!("expected dtype {dtype:?}, found {:?}", view.dtype()),
            ));
        }
        Ok(view)
    }

    fn shaped(
        &self,
        name: &str,
        dtype: Dtype,
        shape: &[usize],
        symbols: &str,
    ) -> Result<&'data [u8]> {
        let view = self.view(name, dtype)?;
        if view.shape() != shape {
            return Err(self.error(
                name,
                format!(
                    "expected shape {shape:?} = {symbols} (N, K, U from the id lists of model.json, H from \
                     hyperparameters.hidden_dimension), found {:?}",
                    view.shape()
                ),
            ));
        }
        Ok(view.data())
    }

    /// A finite F32 tensor of `shape` (`symbols` names it in errors).
    pub(super) fn f32(&self, name: &str, shape: &[usize], symbols: &str) -> Result<Vec<f32>> {
        let values = decode(
            self.shaped(name, Dtype::F32, shape, symbols)?,
            f32::from_le_bytes,
        );
        if let Some((i, v)) = values.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(self.error(
                name,
                format!("every value must be finite, found {v} at flat index {i}"),
            ));
        }
        Ok(values)
    }

    /// A one-dimensional I32 tensor of any length (`symbol` names it in errors).
    pub(super) fn i32_vector(&self, name: &str, symbol: &str) -> Result<Vec<i32>> {
        let view = self.view(name, Dtype::I32)?;
        if view.shape().len() != 1 {
            return Err(self.error(
                name,
                format!("expected shape [{symbol}], found {:?}", view.shape()),
            ));
        }
        Ok(decode(view.data(), i32::from_le_bytes))
    }

    /// An I64 tensor of `shape` (`symbols` names it in errors).
    pub(super) fn i64(&self, name: &str, shape: &[usize], symbols: &str) -> Result<Vec<i64>> {
        Ok(decode(
            self.shaped(name, Dtype::I64, shape, symbols)?,
            i64::from_le_bytes,
        ))
    }
}
