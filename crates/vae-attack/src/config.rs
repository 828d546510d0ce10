//! Settings of the latent attacks, with the published constants (Tang et al., TPAMI 2019,
//! authors' `SVAE-TypeI` code) as defaults.

/// Settings shared by the class transition and the Type I attack.
#[derive(Debug, Clone, PartialEq)]
pub struct LatentAttackConfig {
    /// Adam learning rate on z (5e-3).
    pub lr: f64,
    /// Weight of the discriminator term BCE(D(z), 1) (0.01).
    pub dis_weight: f64,
    /// Weight of ||z||_2: 5e-4 for the transition, 1e-4 for the Type I attack.
    pub norm_weight: f64,
    /// Adaptive k of the Type I attack: k <- clip(k + k_lr * (k_j1 * J1 - J2 + max(J1 - k_margin, 0)), 0, k_max).
    pub k_lr: f64,
    /// See `k_lr` (1e-3).
    pub k_j1: f64,
    /// See `k_lr` (0.01).
    pub k_margin: f64,
    /// Upper clip of k (1e-3).
    pub k_max: f64,
    /// Iterations at most per pair.
    pub max_iters: usize,
    /// Stop a pair as soon as it succeeds (the authors never stop).
    pub early_stop: bool,
    /// Record a trajectory point every this many iterations (0: never).
    pub record_every: usize,
    /// Keep the decoded image every this many iterations (0: never); the first and the
    /// last iteration are always kept when recording.
    pub frame_every: usize,
}

impl LatentAttackConfig {
    /// The Type I attack as published, with a budget for quick runs (500 iterations).
    pub fn type_one() -> Self {
        Self {
            lr: 5e-3,
            dis_weight: 0.01,
            norm_weight: 1e-4,
            k_lr: 1e-4,
            k_j1: 1e-3,
            k_margin: 0.01,
            k_max: 1e-3,
            max_iters: 500,
            early_stop: true,
            record_every: 10,
            frame_every: 100,
        }
    }

    /// The authors' budget: 20,000 iterations, no early stop.
    pub fn type_one_paper() -> Self {
        Self {
            max_iters: 20_000,
            early_stop: false,
            frame_every: 1000,
            ..Self::type_one()
        }
    }

    /// The class transition (no f1 term, norm weight 5e-4).
    pub fn transition() -> Self {
        Self {
            norm_weight: 5e-4,
            ..Self::type_one()
        }
    }
}

impl Default for LatentAttackConfig {
    fn default() -> Self {
        Self::type_one()
    }
}
