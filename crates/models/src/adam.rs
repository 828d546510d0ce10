//! Adam / AdamW whose moments can be saved and restored, so training resumes exactly
//! (candle-nn's optimiser keeps its state private).

use std::collections::HashMap;

use candle_core::backprop::GradStore;
use candle_core::{Result, Tensor, Var};

/// Optimiser settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamConfig {
    /// Learning rate.
    pub lr: f64,
    /// First-moment decay.
    pub beta1: f64,
    /// Second-moment decay.
    pub beta2: f64,
    /// Denominator epsilon.
    pub eps: f64,
    /// Decoupled weight decay (AdamW); 0 gives Adam.
    pub weight_decay: f64,
}

impl Default for AdamConfig {
    /// PyTorch's Adam defaults: lr 1e-3, betas (0.9, 0.999), eps 1e-8, no decay.
    fn default() -> Self {
        Self {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

impl AdamConfig {
    /// The SVAE's published settings: Adam lr 2e-4, beta1 0.5.
    pub fn svae() -> Self {
        Self {
            lr: 2e-4,
            beta1: 0.5,
            ..Self::default()
        }
    }
}

/// Adam over named variables.
#[derive(Debug)]
pub struct Adam {
    vars: Vec<(String, Var)>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    step: usize,
    /// Settings (the learning rate may be changed between steps).
    pub config: AdamConfig,
}

impl Adam {
    /// Fresh moments for `vars`.
    pub fn new(vars: Vec<(String, Var)>, config: AdamConfig) -> Result<Self> {
        let m = vars
            .iter()
            .map(|(_, v)| v.as_tensor().zeros_like())
            .collect::<Result<Vec<_>>>()?;
        let v = m.clone();
        Ok(Self {
            vars,
            m,
            v,
            step: 0,
            config,
        })
    }

    /// Steps taken so far.
    pub fn steps(&self) -> usize {
        self.step
    }

    /// One update from the gradients of `loss.backward()`; variables without a gradient
    /// are left alone.
    pub fn step(&mut self, grads: &GradStore) -> Result<()> {
        self.step += 1;
        let c = self.config;
        let t = self.step as i32;
        let bc1 = 1.0 - c.beta1.powi(t);
        let bc2 = 1.0 - c.beta2.powi(t);
        for (i, (_, var)) in self.vars.iter().enumerate() {
            let Some(g) = grads.get(var.as_tensor()) else {
                continue;
            };
            // Gradients carry the op graph of the step that made them; the moments must
            // not, or every step's graph stays alive through them (memory grows per step).
            let g = g.detach();
            let g = &g;
            let m = ((&self.m[i] * c.beta1)? + (g * (1.0 - c.beta1))?)?;
            let v = ((&self.v[i] * c.beta2)? + (g.sqr()? * (1.0 - c.beta2))?)?;
            let denom = ((&v / bc2)?.sqrt()? + c.eps)?;
            let update = ((&m / bc1)? / denom)?;
            let mut next = (var.as_tensor() - (update * c.lr)?)?;
            if c.weight_decay > 0.0 {
                next = (next - (var.as_tensor() * (c.lr * c.weight_decay))?)?;
            }
            var.set(&next.detach())?;
            self.m[i] = m.detach();
            self.v[i] = v.detach();
        }
        Ok(())
    }

    /// The moments as named tensors (`{name}.exp_avg`, `{name}.exp_avg_sq`, PyTorch's
    /// names) plus the step count, for a resumable checkpoint.
    pub fn state(&self) -> Result<(HashMap<String, Tensor>, usize)> {
        let mut out = HashMap::new();
        for (i, (name, _)) in self.vars.iter().enumerate() {
            out.insert(format!("{name}.exp_avg"), self.m[i].clone());
            out.insert(format!("{name}.exp_avg_sq"), self.v[i].clone());
        }
        Ok((out, self.step))
    }

    /// Restores moments written by [`Adam::state`]; every variable must have both.
    pub fn load_state(
        &mut self,
        state: &HashMap<String, Tensor>,
        step: usize,
    ) -> std::result::Result<(), String> {
        for (i, (name, var)) in self.vars.iter().enumerate() {
            for (suffix, slot) in [("exp_avg", &mut self.m[i]), ("exp_avg_sq", &mut self.v[i])] {
                let key = format!("{name}.{suffix}");
                let t = state
                    .get(&key)
                    .ok_or_else(|| format!("missing optimiser tensor `{key}`"))?;
                if t.dims() != var.dims() {
                    return Err(format!(
                        "optimiser tensor `{key}` has shape {:?}, expected {:?}",
                        t.dims(),
                        var.dims()
                    ));
                }
                *slot = t.to_dtype(var.dtype()).map_err(|e| e.to_string())?;
            }
        }
        self.step = step;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};

    #[test]
    fn first_step_moves_by_lr_times_sign() {
        // Adam's first step is lr * g / (|g| + eps) = lr * sign(g).
        let var = Var::new(&[1.0f32, -2.0], &Device::Cpu).unwrap();
        let mut adam = Adam::new(vec![("w".into(), var.clone())], AdamConfig::default()).unwrap();
        let loss = (var.as_tensor() * Tensor::new(&[3.0f32, -0.5], &Device::Cpu).unwrap())
            .unwrap()
            .sum_all()
            .unwrap();
        adam.step(&loss.backward().unwrap()).unwrap();
        let v: Vec<f32> = var.as_tensor().to_vec1().unwrap();
        assert!(
            (v[0] - 0.999).abs() < 1e-6 && (v[1] + 1.999).abs() < 1e-6,
            "{v:?}"
        );
    }
}
