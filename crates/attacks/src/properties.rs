//! Invariants every attack keeps, checked on seeded random models and batches.

use candle_core::Tensor;
use models::Classifier;
use proptest::prelude::*;

use crate::test_support::{max_abs, other_classes, setup, Flat};
use crate::{
    Attack, AttackError, AttackOutcome, CarliniWagnerL2, DeepFool, Fgsm, PgdConfig, PgdL2, PgdLinf,
    Targeting,
};

/// Reported successes agree with the model re-evaluated on the returned images:
/// untargeted successes are misclassified, targeted ones are classified as the target.
fn check_success_is_real(model: &dyn Classifier, outcome: &AttackOutcome) {
    let again = model.predict(&outcome.adversarial).unwrap();
    for i in 0..outcome.len() {
        if outcome.success[i] {
            match &outcome.targets {
                None => assert_ne!(again[i], outcome.labels[i], "example {i}"),
                Some(t) => assert_eq!(again[i], t[i], "example {i}"),
            }
        }
    }
    let lo = outcome.adversarial.flatten_all().unwrap().min(0).unwrap();
    let hi = outcome.adversarial.flatten_all().unwrap().max(0).unwrap();
    assert!(lo.to_scalar::<f32>().unwrap() >= 0.0);
    assert!(hi.to_scalar::<f32>().unwrap() <= 1.0);
}

fn pgd(eps: f64, steps: usize, seed: u64) -> PgdConfig {
    PgdConfig {
        eps,
        step_size: eps / 4.0,
        steps,
        random_start: true,
        restarts: 2,
        seed,
    }
}

fn targeting(targeted: bool, labels: &[u32], shift: u32) -> Targeting {
    if targeted {
        Targeting::Targeted(other_classes(labels, shift))
    } else {
        Targeting::Untargeted
    }
}

proptest! {
    #![proptest_config(test_support::seeded(12))]

    #[test]
    fn linf_attacks_stay_in_the_ball_and_the_box(
        seed in 0u64..1000, eps in 0.0f64..0.4, targeted: bool, shift in 0u32..9,
    ) {
        let (model, images, labels) = setup(seed, 3);
        let t = targeting(targeted, &labels, shift);
        let attacks: [&dyn Attack; 2] = [&Fgsm { eps }, &PgdLinf(pgd(eps, 5, seed))];
        for attack in attacks {
            let out = attack.run(&model, &images, &labels, &t).unwrap();
            prop_assert!(out.linf.iter().all(|&d| d <= eps + 1e-6), "{}: {:?}", attack.name(), out.linf);
            prop_assert!(max_abs(&(&out.adversarial - &images).unwrap()) <= eps + 1e-6);
            check_success_is_real(&model, &out);
        }
    }

    #[test]
    fn l2_pgd_stays_in_the_ball_and_the_box(
        seed in 0u64..1000, eps in 0.0f64..3.0, targeted: bool, shift in 0u32..9,
    ) {
        let (model, images, labels) = setup(seed, 3);
        let t = targeting(targeted, &labels, shift);
        let out = PgdL2(pgd(eps, 5, seed)).run(&model, &images, &labels, &t).unwrap();
        prop_assert!(out.l2.iter().all(|&d| d <= eps * (1.0 + 1e-5) + 1e-6), "{:?}", out.l2);
        check_success_is_real(&model, &out);
    }

    #[test]
    fn minimal_norm_attacks_report_real_successes(seed in 0u64..1000, targeted: bool, shift in 0u32..9) {
        let (model, images, labels) = setup(seed, 3);
        let cw = CarliniWagnerL2 { steps: 30, binary_search_steps: 4, ..Default::default() };
        let out = cw.run(&model, &images, &labels, &targeting(targeted, &labels, shift)).unwrap();
        check_success_is_real(&model, &out);
        let out = DeepFool::default().run(&model, &images, &labels, &Targeting::Untargeted).unwrap();
        check_success_is_real(&model, &out);
    }
}

#[test]
fn at_eps_zero_nothing_changes_and_nothing_succeeds() {
    let (model, images, labels) = setup(7, 4);
    for targeted in [false, true] {
        let t = targeting(targeted, &labels, 0);
        let attacks: [&dyn Attack; 3] = [
            &Fgsm { eps: 0.0 },
            &PgdLinf(pgd(0.0, 3, 1)),
            &PgdL2(pgd(0.0, 3, 1)),
        ];
        for attack in attacks {
            let out = attack.run(&model, &images, &labels, &t).unwrap();
            assert_eq!(max_abs(&(&out.adversarial - &images).unwrap()), 0.0);
            assert!(out.success.iter().all(|&s| !s), "{}", attack.name());
            assert_eq!(out.l0, vec![0; 4]);
            assert_eq!(out.robust_accuracy(), 1.0);
        }
    }
}

#[test]
fn every_attack_fools_an_untrained_model() {
    let (model, images, labels) = setup(11, 6);
    let cw = CarliniWagnerL2 {
        steps: 50,
        binary_search_steps: 5,
        ..Default::default()
    };
    let attacks: [&dyn Attack; 5] = [
        &Fgsm::default(),
        &PgdLinf::madry_mnist(),
        &PgdL2::default(),
        &cw,
        &DeepFool::default(),
    ];
    for attack in attacks {
        let out = attack
            .run(&model, &images, &labels, &Targeting::Untargeted)
            .unwrap();
        assert_eq!(out.success_rate(), 1.0, "{}", attack.name());
        assert!(!out.gradient_masking_suspected(), "{}", attack.name());
        assert!(out.gradient_evaluations.iter().all(|&g| g > 0));
        check_success_is_real(&model, &out);
    }
}

#[test]
fn bad_input_is_an_error_not_a_panic() {
    let (model, images, labels) = setup(3, 2);
    let untargeted = Targeting::Untargeted;
    let too_bright = (&images + 0.5).unwrap();
    let nan = Tensor::full(f32::NAN, images.shape(), images.device()).unwrap();
    let fgsm = Fgsm::default();
    for bad in [&too_bright, &nan, &images.flatten_all().unwrap()] {
        assert!(matches!(
            fgsm.run(&model, bad, &labels, &untargeted),
            Err(AttackError::InvalidInput(_))
        ));
    }
    let cases: Vec<(Box<dyn Attack>, Vec<u32>, Targeting)> = vec![
        (
            Box::new(Fgsm { eps: -0.1 }),
            labels.clone(),
            untargeted.clone(),
        ),
        (
            Box::new(PgdLinf(pgd(-1.0, 1, 0))),
            labels.clone(),
            untargeted.clone(),
        ),
        (
            Box::new(PgdL2(pgd(f64::NAN, 1, 0))),
            labels.clone(),
            untargeted.clone(),
        ),
        (Box::new(Fgsm::default()), vec![1], untargeted.clone()),
        (Box::new(Fgsm::default()), vec![1, 10], untargeted.clone()),
        (
            Box::new(PgdLinf::default()),
            labels.clone(),
            Targeting::Targeted(vec![1]),
        ),
        (
            Box::new(PgdLinf::default()),
            labels.clone(),
            Targeting::Targeted(labels.clone()),
        ),
        (
            Box::new(CarliniWagnerL2 {
                binary_search_steps: 0,
                ..Default::default()
            }),
            labels.clone(),
            untargeted.clone(),
        ),
    ];
    for (attack, l, t) in cases {
        assert!(
            matches!(
                attack.run(&model, &images, &l, &t),
                Err(AttackError::InvalidInput(_))
            ),
            "{} {l:?} {t:?}",
            attack.name()
        );
    }
    assert!(matches!(
        DeepFool::default().run(
            &model,
            &images,
            &labels,
            &Targeting::Targeted(other_classes(&labels, 0))
        ),
        Err(AttackError::Unsupported { .. })
    ));
}

#[test]
fn zero_gradients_are_flagged_as_masking() {
    let (_, images, _) = setup(5, 3);
    let labels = vec![9u32; 3]; // Flat always predicts 9
    let cw = CarliniWagnerL2 {
        steps: 5,
        binary_search_steps: 2,
        ..Default::default()
    };
    let attacks: [&dyn Attack; 4] = [
        &Fgsm::default(),
        &PgdLinf(pgd(0.3, 3, 0)),
        &cw,
        &DeepFool::default(),
    ];
    for attack in attacks {
        let out = attack
            .run(&Flat, &images, &labels, &Targeting::Untargeted)
            .unwrap();
        assert!(
            out.degenerate_gradient.iter().all(|&d| d),
            "{}",
            attack.name()
        );
        assert!(out.gradient_masking_suspected());
        assert_eq!(out.successes(), 0);
    }
}

#[test]
fn random_starts_repeat_with_the_seed() {
    let (model, images, labels) = setup(9, 3);
    let run = |seed| {
        PgdL2(pgd(1.0, 2, seed))
            .run(&model, &images, &labels, &Targeting::Untargeted)
            .unwrap()
            .adversarial
    };
    assert_eq!(max_abs(&(run(1) - run(1)).unwrap()), 0.0);
    assert!(max_abs(&(run(1) - run(2)).unwrap()) > 0.0);
}
