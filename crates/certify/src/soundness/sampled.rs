//! Sampled points and PGD never beat a bound, nor change the class inside a certified
//! radius; the batch entry points bound each image as it is bounded alone.

use candle_core::Tensor;
use proptest::prelude::*;

use super::{argmax, assert_margins_hold, image, logits, pgd, random_net, samples};
use crate::{certified_radius, layer_intervals, margin_bounds, Method, Norm, RadiusSearch, Region};

proptest! {
    #![proptest_config(test_support::seeded(12))]

    /// At a random radius, sampled points and PGD's results keep every margin above its
    /// IBP and CROWN bound, every intermediate value inside its interval, and CROWN's
    /// bounds (intermediate and final) are never looser than IBP's.
    #[test]
    fn bounds_hold_and_crown_is_never_looser(
        kind in 0usize..3, seed in 0u64..1000, eps in 0.0f64..0.3, l2 in any::<bool>()
    ) {
        let net = random_net(kind, seed);
        let x0 = image(&net, seed + 1);
        let norm = if l2 { Norm::L2 } else { Norm::Linf };
        // PGD needs a positive radius; the bounds are computed at the same one.
        let eps = if l2 { 3.0 * eps } else { eps }.max(1e-6);
        let class = argmax(&logits(&net, &x0.unsqueeze(0).unwrap())[0]);
        let ibp = margin_bounds(&net, &x0, class, norm, eps, Method::Ibp).unwrap();
        let crown = margin_bounds(&net, &x0, class, norm, eps, Method::crown()).unwrap();
        let points = samples(&x0, norm, eps, 200, seed + 2);
        assert_margins_hold(&net, &points, class, &ibp);
        assert_margins_hold(&net, &points, class, &crown);
        for (c, i) in crown.margins.iter().zip(&ibp.margins) {
            // Equal up to rounding where CROWN's intermediate bounds did not help.
            prop_assert!(c.lower >= i.lower - 1e-12 * (1.0 + i.lower.abs()), "CROWN {} looser than IBP {}", c.lower, i.lower);
        }
        let adv = pgd(&net, &x0, class, norm, eps, seed);
        assert_margins_hold(&net, &adv, class, &crown);

        // Intermediate intervals: contain every sampled point's values; CROWN's inside IBP's.
        let region = Region::new(&net, &x0, norm, eps).unwrap();
        let iv_ibp = layer_intervals(&net, &region, Method::Ibp).unwrap();
        let iv_crown = layer_intervals(&net, &region, Method::crown()).unwrap();
        let mut h = points.clone();
        for (i, op) in net.ops().iter().enumerate() {
            h = crate::network::apply(op, &h, true).unwrap();
            let values: Vec<f64> = h.flatten_all().unwrap().to_vec1().unwrap();
            let (cl, cu) = iv_crown[i + 1].to_vecs().unwrap();
            let (il, iu) = iv_ibp[i + 1].to_vecs().unwrap();
            for (t, v) in values.iter().enumerate() {
                let j = t % cl.len();
                prop_assert!(cl[j] - 1e-9 <= *v && *v <= cu[j] + 1e-9, "layer {i} value {v} outside [{}, {}]", cl[j], cu[j]);
                prop_assert!(cl[j] >= il[j] - 1e-12 && cu[j] <= iu[j] + 1e-12);
            }
        }
    }

    /// Inside the certified radius, no sampled point and no PGD result changes the class.
    #[test]
    fn nothing_inside_the_certified_radius_changes_the_class(
        kind in 0usize..3, seed in 0u64..1000, l2 in any::<bool>()
    ) {
        let net = random_net(kind, seed);
        let x0 = image(&net, seed + 7);
        let norm = if l2 { Norm::L2 } else { Norm::Linf };
        let class = argmax(&logits(&net, &x0.unsqueeze(0).unwrap())[0]);
        let search = RadiusSearch::default_for(norm, net.input_len());
        let ibp = certified_radius(&net, &x0, class, norm, Method::Ibp, search).unwrap();
        let crown = certified_radius(&net, &x0, class, norm, Method::crown(), search).unwrap();
        prop_assert!(crown.certified_at_zero);
        prop_assert!(crown.not_certified >= ibp.radius);
        prop_assert!(crown.not_certified - crown.radius <= search.width(crown.radius));
        let r = crown.radius;
        let mut points = vec![samples(&x0, norm, r, 300, seed + 8)];
        if r > 0.0 {
            points.push(pgd(&net, &x0, class, norm, r, seed));
        }
        for p in points {
            for z in logits(&net, &p) {
                prop_assert_eq!(argmax(&z), class);
            }
        }
    }
}

#[test]
fn verified_accuracy_counts_certified_images_and_shrinks_with_eps() {
    let net = random_net(1, 42);
    let xs: Vec<Tensor> = (0..4).map(|s| image(&net, 60 + s)).collect();
    let batch = Tensor::stack(&xs, 0).unwrap();
    let predicted: Vec<usize> = logits(&net, &batch).iter().map(|z| argmax(z)).collect();
    // Two images labelled as predicted, two with another label: never certified.
    let k = net.num_classes();
    let labels = [
        predicted[0],
        predicted[1],
        (predicted[2] + 1) % k,
        (predicted[3] + 1) % k,
    ];
    let eps = [0.0, 0.001, 0.01, 0.1, 1.0];
    let acc =
        crate::verified_accuracy(&net, &batch, &labels, Norm::Linf, &eps, Method::Ibp).unwrap();
    assert_eq!(acc[0], 0.5);
    assert!(acc.windows(2).all(|w| w[1] <= w[0]), "{acc:?}");
    assert_eq!(
        acc[4], 0.0,
        "over the whole box, IBP certifies nothing here"
    );
    assert!(
        crate::verified_accuracy(&net, &batch, &labels[..3], Norm::Linf, &eps, Method::Ibp)
            .is_err()
    );
}

/// A batch gives each image the bounds it gets alone: on every architecture kind, both
/// norms and every method, five images with their own class and radius (one of them 0,
/// one over the whole box); the lockstep bisection gives each image its own radius with
/// the same number of evaluations. Relaxations are per image, so a batch that mixed
/// images up (a slope or max-pool choice or ball from another image) would differ.
#[test]
fn a_batch_bounds_each_image_as_alone() {
    for kind in 0..3 {
        let net = random_net(kind, 90 + kind as u64);
        let xs: Vec<Tensor> = (0..5).map(|s| image(&net, 200 + s)).collect();
        let batch = Tensor::stack(&xs, 0).unwrap();
        let predicted: Vec<usize> = logits(&net, &batch).iter().map(|z| argmax(z)).collect();
        let k = net.num_classes();
        // Image 3 asks for a class it is not: its bisection ends at once.
        let classes: Vec<usize> = (0..5)
            .map(|g| {
                if g == 3 {
                    (predicted[g] + 1) % k
                } else {
                    predicted[g]
                }
            })
            .collect();
        for norm in [Norm::Linf, Norm::L2] {
            let eps = [0.0, 0.02, 0.05, 0.1, 3.0];
            for method in [Method::Ibp, Method::crown_ibp(), Method::crown()] {
                let together =
                    crate::margin_bounds_batch(&net, &batch, &classes, norm, &eps, method).unwrap();
                for (g, b) in together.iter().enumerate() {
                    let alone =
                        margin_bounds(&net, &xs[g], classes[g], norm, eps[g], method).unwrap();
                    assert_eq!((b.class, b.eps), (alone.class, alone.eps));
                    for (m, a) in b.margins.iter().zip(&alone.margins) {
                        assert_eq!(m.other, a.other);
                        assert!(
                            (m.lower - a.lower).abs() <= 1e-10 * (1.0 + a.lower.abs()),
                            "kind {kind} {norm:?} {} image {g}: {} vs {} alone",
                            method.name(),
                            m.lower,
                            a.lower
                        );
                    }
                }
                let search = RadiusSearch::default_for(norm, net.input_len());
                let radii =
                    crate::certified_radii(&net, &batch, &classes, norm, method, search).unwrap();
                for (g, r) in radii.iter().enumerate() {
                    let alone =
                        certified_radius(&net, &xs[g], classes[g], norm, method, search).unwrap();
                    assert_eq!(
                        (
                            r.radius,
                            r.not_certified,
                            r.evaluations,
                            r.certified_at_zero
                        ),
                        (
                            alone.radius,
                            alone.not_certified,
                            alone.evaluations,
                            alone.certified_at_zero
                        ),
                        "kind {kind} {norm:?} {} image {g}",
                        method.name()
                    );
                }
                assert!(!radii[3].certified_at_zero && radii[3].radius == 0.0);
                assert!(radii.iter().filter(|r| r.radius > 0.0).count() >= 3);
            }
        }
    }
    // Mismatched lengths are refused, naming what is wrong.
    let net = random_net(0, 1);
    let batch = Tensor::stack(&[image(&net, 1), image(&net, 2)], 0).unwrap();
    let e = crate::margin_bounds_batch(&net, &batch, &[0], Norm::Linf, &[0.1], Method::Ibp)
        .unwrap_err();
    assert!(e.to_string().contains("radii"), "{e}");
    let search = RadiusSearch::default_for(Norm::Linf, net.input_len());
    let e =
        crate::certified_radii(&net, &batch, &[0], Norm::Linf, Method::Ibp, search).unwrap_err();
    assert!(e.to_string().contains("2 images and 1 classes"), "{e}");
}
