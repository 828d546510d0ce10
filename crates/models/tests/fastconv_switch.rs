//! `fastconv::set_enabled` switches the whole process between the fast ops and
//! candle's. Its own test binary, because the switch is global and the unit tests run
//! in parallel.

use candle_core::{DType, Device, Tensor, Var};
use models::fastconv::{enabled, max_pool2d, set_enabled};

/// Input-gradient mass through a 2x2 pool of an all-zero 4x4 map: every window is a
/// four-way tie. The fast op routes each window's gradient to its first maximum (4 in
/// all, PyTorch's rule); candle's max reductions give it to every tied input (16).
fn tie_gradient_mass() -> f32 {
    let v =
        Var::from_tensor(&Tensor::zeros((1, 1, 4, 4), DType::F32, &Device::Cpu).unwrap()).unwrap();
    let grads = max_pool2d(v.as_tensor(), 2)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    grads
        .get(&v)
        .unwrap()
        .sum_all()
        .unwrap()
        .to_scalar()
        .unwrap()
}

#[test]
fn the_switch_selects_the_implementation() {
    assert!(enabled(), "on by default");
    assert_eq!(tie_gradient_mass(), 4.0);
    set_enabled(false);
    assert!(!enabled());
    assert_eq!(tie_gradient_mass(), 16.0);
    set_enabled(true);
    assert_eq!(tie_gradient_mass(), 4.0);
}
