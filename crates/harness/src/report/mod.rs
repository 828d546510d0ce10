//! `report.md` and a self-contained `report.html` (figures inlined as base64): every
//! figure with a paragraph on what it shows, set against the study's claims.

use std::fmt::Write as _;
use std::path::Path;

use crate::artifact::write_atomic;
use crate::config::ExperimentConfig;
use crate::error::Result;
use crate::inputs::Provenance;
use crate::results::Evaluation;

mod league;

fn pct(v: f64) -> String {
    if v.is_finite() {
        format!("{:.1} %", 100.0 * v)
    } else {
        "n/a".into()
    }
}

/// Three decimals, or three significant digits below 0.01.
fn small(v: f64) -> String {
    if v.is_finite() && v.abs() < 0.01 && v != 0.0 {
        format!("{v:.2e}")
    } else {
        num(v)
    }
}

fn num(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.3}")
    } else {
        "n/a".into()
    }
}

/// Standard base64 (RFC 4648) of bytes.
pub fn base64(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Every map-change population side by side: each over its successes with its n, beside
/// its noise control; the claim read off them stated plainly.
fn map_change_section(e: &Evaluation) -> String {
    let mut t = String::from(
        "## How much CAM changed, like with like\n\n\
         Every row compares f1's CAM before and after, over the examples where the attack succeeded \
         (Type II: f1's label flipped, map of the class f1 decides; Type I: the constrained attack's \
         consensus successes, map of the kept class). Each attack's noise control adds random noise of \
         the same L2 norm to the same start images: its change is the floor. Type I is compared against \
         x and against the reconstruction G(mu(x)), which removes the SVAE's reconstruction error from the \
         attack's effect (the last row is that error alone). Higher Spearman, top-10% overlap and SSIM, \
         and a smaller centre shift, mean a smaller change.\n\n\
         | population | n | top-10% | Spearman | Pearson | centre shift (px) | SSIM | mean L2 |\n|---|---|---|---|---|---|---|---|\n",
    );
    let mut row = |name: &str, c: &crate::cam_change::CamChange, l2: f64| {
        let _ = writeln!(
            t,
            "| {name} | {} | {} | {} | {} | {} | {} | {} |",
            c.n(),
            num(c.topk),
            num(c.spearman),
            num(c.pearson),
            num(c.com_shift),
            num(c.ssim),
            num(l2)
        );
    };
    for a in &e.type2 {
        row(
            &format!("{}, successes", a.attack),
            &a.cam.successes,
            a.cam.attack_l2,
        );
        row(
            &format!("{}, noise control", a.attack),
            &a.cam.noise,
            a.cam.noise_l2,
        );
    }
    let c = &e.type1.cam;
    row("Type I vs x", &c.vs_x, c.l2_x);
    row("Type I vs x, noise control", &c.noise_x, c.l2_x);
    row(
        "Type I vs G(mu(x))",
        &c.vs_reconstruction,
        c.l2_reconstruction,
    );
    row(
        "Type I vs G(mu(x)), noise control",
        &c.noise_reconstruction,
        c.l2_reconstruction,
    );
    row(
        "G(mu(x)) vs x (the reconstruction alone)",
        &c.reconstruction_vs_x,
        f64::NAN,
    );
    let claims = &e.summary.claims;
    let verdict = match claims.type1_change_smaller_than_every_type2 {
        Some(true) => format!(
            "The Type I change (Spearman {} against x) is smaller than every Type II attack's over its successes: \
             the digit changed for both oracles while f1's map of its kept class moved less than under any \
             label-flipping perturbation.",
            num(c.vs_x.spearman)
        ),
        Some(false) => format!(
            "The Type I change (Spearman {} against x) is NOT smaller than every Type II attack's: {} changed \
             the map less over its successes. The study's claim holds here only against the other attacks.",
            num(c.vs_x.spearman),
            claims.type2_changing_less_than_type1.join(", ")
        ),
        None => "A population is empty (no Type I consensus success or no Type II success), so the \
                 comparison is not made."
            .to_string(),
    };
    t.push('\n');
    t.push_str(&verdict);
    // Each attack against its own floor.
    let mut above = Vec::new();
    let mut within = Vec::new();
    let mut floor = |name: &str,
                     attack: &crate::cam_change::CamChange,
                     noise: &crate::cam_change::CamChange| {
        if attack.pairs > 0 && noise.pairs > 0 {
            let line = format!(
                "{name} {} vs noise {}",
                num(attack.spearman),
                num(noise.spearman)
            );
            if attack.spearman < noise.spearman {
                above.push(line);
            } else {
                within.push(line);
            }
        }
    };
    for a in &e.type2 {
        floor(&a.attack, &a.cam.successes, &a.cam.noise);
    }
    floor("Type I vs x", &c.vs_x, &c.noise_x);
    floor(
        "Type I vs G(mu(x))",
        &c.vs_reconstruction,
        &c.noise_reconstruction,
    );
    if !above.is_empty() {
        let _ = write!(
            t,
            " Against its noise control (Spearman), these moved the map more than random noise of the same L2 norm: {}.",
            above.join("; ")
        );
    }
    if !within.is_empty() {
        let _ = write!(
            t,
            " These moved it no more than their noise control: {}.",
            within.join("; ")
        );
    }
    t
}

/// The report as markdown: (heading or paragraph text, optional figure file).
fn sections(
    e: &Evaluation,
    config: &ExperimentConfig,
    p: &Provenance,
    out: &Path,
) -> Vec<(String, Option<String>)> {
    let mut s = Vec::new();
    let m = &e.models;
    s.push((format!(
        "# Is CAM reliable? Reproduction report ({} profile)\n\nData: {}. Weights: {}. Inputs (sha256 of the weights and test set): {}. Seed {}.\n\n\
         Test accuracy on {} images: GapCnn (attacked f1) {}, Mlp {}, oracle {}. SVAE: latent \
         classifier {}, reconstruction BCE {} nats per image, KL {}; the oracle recognises {} of \
         the decoded mu(x).",
        config.profile, p.data, p.weights, p.inputs.short(), config.seed, m.images, pct(m.gapcnn), pct(m.mlp), pct(m.oracle),
        pct(m.svae_latent_accuracy), num(m.svae_reconstruction_bce), num(m.svae_kl), pct(m.svae_decoded_oracle_accuracy)
    ), None));
    let r = &e.roc;
    s.push((format!(
        "## ROC of f1 for class {P}: Type II lowers TPR, Type I raises FPR\n\n\
         The score is f1's probability of class {P}, over the whole evaluation split ({} images: {} positives, \
         {} negatives). Clean: AUC {}, f1's own decision at TPR {} / FPR {}. \
         With every positive replaced by its {} example (all {} positives attacked; the oracle still sees a {P}): \
         AUC {}, TPR {}. With {} Type I examples made from {P}s (the constrained attack's consensus successes: \
         both oracles say another digit, f1 still says {P}) added as negatives: AUC {}, FPR {} (on the Type I \
         set by itself, {} examples: FPR {}). The seed's Fig. 1 draws exactly this: Type II attacks move the \
         curve down (false negatives), Type I attacks move it right (false positives).",
        r.clean.positives + r.clean.negatives, r.clean.positives, r.clean.negatives,
        num(r.clean.auc), num(r.clean.tpr), num(r.clean.fpr), config.roc_type2_attack, r.type2.positives,
        num(r.type2.auc), num(r.type2.tpr),
        r.type1_examples, num(r.type1.auc), num(r.type1.fpr), r.type1_examples, num(r.type1_set_fpr),
        P = r.positive_class
    ), Some("roc.png".into())));
    let mut t2 = String::from(
        "## Type II attacks on GapCnn\n\n| attack | images | success | robust acc. | mean L2 | mean Linf | CAM Spearman, successes (n) | CAM Spearman, all (n) | CAM Spearman, noise control |\n|---|---|---|---|---|---|---|---|---|\n",
    );
    for t in &e.type2 {
        let _ = writeln!(
            t2,
            "| {} | {} | {} | {} | {} | {} | {} ({}) | {} ({}) | {} |",
            t.attack,
            t.summary.images,
            pct(t.summary.success_rate),
            pct(t.summary.robust_accuracy),
            num(t.summary.mean_l2),
            num(t.summary.mean_linf),
            num(t.cam.successes.spearman),
            t.cam.successes.n(),
            num(t.cam.all.spearman),
            t.cam.all.n(),
            num(t.cam.noise.spearman),
        );
    }
    t2.push_str(
        "\nCAM columns compare the map of the class f1 decides on, before and after the attack \
         (bilinear to 28x28, min-max), over the first measured images where the attack succeeded (the \
         headline), over all of them (labelled: failures leave the map as it was), and for the noise \
         control (the same successes' clean images with random noise of each perturbation's L2 norm). A \
         small perturbation that flips the label also moves the map to the new class's evidence; per-example \
         rows are in `type2_<attack>.csv`; the next-but-two section compares every population.",
    );
    if e.type2.iter().any(|t| t.summary.gradient_masking_suspected) {
        t2.push_str(" Some attack met zero or non-finite gradients (see `gradient_masking_suspected` in summary.json).");
    }
    s.push((t2, None));
    let shown: usize = e.type2.iter().map(|t| t.examples.len()).sum();
    if shown > 0 {
        let flipped: usize = e
            .type2
            .iter()
            .flat_map(|t| &t.examples)
            .filter(|x| x.success)
            .count();
        s.push((format!(
            "## Type II examples: the CAM follows the new label\n\n\
             Each row is one of the first {} attacked test images: the clean image with f1's CAM of the class \
             it predicts, then the same image under each Type II attack with the CAM of the class f1 predicts \
             now (captions: f1's class and probability, the perturbation's L2 / Linf, or NOT FLIPPED). \
             {flipped} of the {shown} adversarial examples shown flip f1's label. Where it flips, the map is that \
             of the new class and moves to where f1 now finds its evidence, although the image still shows the \
             old digit: under a Type II attack CAM follows the decision, not the digit (the CAM columns of the \
             table above measure how far it moves).",
            crate::stages::type2_examples::EXAMPLE_ROWS
        ), Some("type2_examples.png".into())));
    }
    let t1 = &e.type1;
    s.push((format!(
        "## Type I attack: the digit changes, f1's label and its CAM do not\n\n\
         The paper's attack: {} (image, target) pairs, at most {} iterations each: success (f1 keeps its \
         label AND the standard oracle sees the target) {}; the oracle sees the target in {} of the pairs, \
         f1 keeps its label in {}. Its successes lie at mean L2 {} / Linf {} from the original. The CAM \
         comparison under Type I uses the constrained attack's consensus successes (next section); the \
         table of map changes below sets it beside every Type II attack.",
        t1.pairs, config.type1_iters, pct(t1.success_rate), pct(t1.oracle_agreement), pct(t1.f1_kept),
        num(t1.mean_l2), num(t1.mean_linf)
    ), None));
    let mut modes = String::from(
        "## Type I judged by a panel: the paper's attack and the constrained attack\n\n\
         Every final image is judged by three judges that the judge-free attack never sees: the standard \
         oracle, an adversarially trained (robust) oracle and a 3-nearest-neighbour vote over the training \
         images. Success: f1 keeps its label and the judge says the target; consensus: both oracles say it. \
         The paper's mode stops at the first iterate the standard oracle calls the target (the study's \
         reproduction, which lets that judge select its iterate); the constrained attack holds f1's logit \
         margin with an uncapped multiplier, starts half-way to the target's mean code, weighs the SVAE's own \
         reading of the decoded image (CE(f2(mu(G(z))), t)) and stops on its own rule (ALGORITHMS.md \
         section 9, plus that image term). Its pairs take their targets from f1's clean label, the paper's \
         from the true label (the same on images f1 gets right).\n\n\
         | mode | pairs | standard oracle | robust oracle | kNN | consensus | f1 keeps | median iteration |\n|---|---|---|---|---|---|---|---|\n",
    );
    for m in [&t1.paper, &t1.constrained] {
        let _ = writeln!(
            modes,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            m.mode,
            m.pairs,
            m.success,
            m.success_robust,
            m.success_knn,
            m.consensus,
            m.f1_kept,
            num(m.median_iterations)
        );
    }
    let _ = write!(
        modes,
        "\n{} selected image(s) that f1 misclassifies are left out of the constrained pairs. The CAM \
         comparison above and the ROC's Type I negatives use the constrained attack's consensus successes. \
         The judges' own accuracy (first {} test images, clean and decoded G(mu(x))): ",
        t1.images_left_out,
        t1.judges.first().map_or(0, |j| j.clean.of)
    );
    let judges: Vec<String> = t1
        .judges
        .iter()
        .map(|j| format!("{} {} / {}", j.judge, j.clean, j.decoded))
        .collect();
    modes.push_str(&judges.join("; "));
    modes.push_str(". The grid shows examples of the constrained attack (consensus successes first): the original with f1's class and probability, then the Type I example with f1's class and probability and each judge's verdict.");
    let grid = out
        .join(crate::stages::type1::GRID_FILE)
        .is_file()
        .then(|| crate::stages::type1::GRID_FILE.to_string());
    s.push((modes, grid));
    s.push((map_change_section(e), None));
    let from = config.strip_index;
    let mut strips: Vec<String> = std::fs::read_dir(out)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| {
                    n.starts_with("type1_")
                        && n.ends_with(".png")
                        && n != crate::stages::type1::GRID_FILE
                })
                .collect()
        })
        .unwrap_or_default();
    strips.sort();
    s.push((format!(
        "## Transition strips of test image {from}\n\n\
         Each strip follows the Type I attack of test image {from} towards one target: top row, the decoded \
         image with the real CAM of f1's arg-max class and captions (iteration, f1's class and probability, \
         the oracle's verdict); bottom row, the study's defective map (channel K-1 alone, class 7, min-max). \
         Over the frames, the defective map correlates with the real class-7 CAM at Spearman {} / Pearson {} \
         ({} frames): the study's pictures were not CAM.",
        num(t1.defective_vs_real.0), num(t1.defective_vs_real.1), t1.defective_vs_real.2
    ), None));
    for strip in strips {
        s.push((String::new(), Some(strip)));
    }
    let c = &e.clever;
    let fallbacks = c.fallbacks();
    let reasons = if fallbacks.is_empty() {
        String::new()
    } else {
        let list: Vec<String> = fallbacks
            .iter()
            .map(|(f, n)| format!("{}: {n}", f.describe()))
            .collect();
        format!(" ({})", list.join(", "))
    };
    s.push((format!(
        "## CLEVER: the attack lower bound as local Lipschitz estimation\n\n\
         Untargeted CLEVER (the minimum over the 9 other classes, Nb {} x Ns {}) on the first {} Type II \
         images f1 classifies correctly: mean L2 score {}, mean Linf score {}. The scatter sets each \
         image's L2 score against the smallest L2 perturbation the untargeted CW-L2 or DeepFool found on \
         it; {} points lie below the diagonal, where an attack beat the estimated lower bound (CLEVER \
         is an estimate, not a certificate). Estimates whose Lipschitz constant is the largest sampled \
         gradient norm instead of the fitted Weibull location: {} of {}{reasons} (per image in \
         `clever.csv`; maxima with no upper end are those where the fit's location diverges).",
        c.nb, c.ns, c.rows.len(), num(c.mean_l2), num(c.mean_linf), c.l2_bound_violations,
        fallbacks.iter().map(|(_, n)| n).sum::<usize>(), 2 * c.rows.len()
    ), Some("clever_l2.png".into())));
    let w = &e.sandwich;
    type Pick = fn(&crate::stages::sandwich::SandwichRow) -> &crate::stages::sandwich::Bounds;
    let geometry = |name: &str,
                    c: &crate::stages::sandwich::SandwichCounts,
                    pick: Pick,
                    found: &str| {
        // Median ratios to the found distance, over the images with one.
        let median = |f: fn(&crate::stages::sandwich::Bounds) -> f64| {
            let mut v: Vec<f64> = w
                .rows
                .iter()
                .map(pick)
                .filter_map(|b| b.found.map(|d| f(b) / d))
                .collect();
            v.sort_by(f64::total_cmp);
            v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
        };
        format!(
            "- {name}: {} of {} images have a found perturbation ({found}); CLEVER exceeds the found \
             distance on {} of those {} (the estimate failed there); the certificate exceeds it on {} \
             of {} (a soundness bug if not 0); the certificate exceeds CLEVER on {} of {}. Median ratio \
             to the found distance: CLEVER {}, certified {}.",
            c.with_found, c.images, c.clever_above_found, c.with_found, c.certified_above_found,
            c.with_found, c.certified_above_clever, c.images, small(median(|b| b.clever)),
            small(median(|b| b.certified))
        )
    };
    let verdict = if w.l2.certified_above_found + w.linf.certified_above_found == 0 {
        "No certificate exceeds a perturbation found: the bounds held on every image."
    } else {
        "A certificate exceeds a perturbation found: the bound computation is unsound (a bug)."
    };
    s.push((format!(
        "## The attack lower bound, certified: certified <= CLEVER <= found\n\n\
         On the same {} images, f1 = GapCnn, three numbers per image and geometry: the radius \
         {} proves (no adversarial example inside; bisection to 1 %), the CLEVER estimate above, and the \
         smallest adversarial perturbation found. {verdict}\n\n{}\n{}\n\n\
         All images' bisections run in lockstep, batched (the radii per image in `sandwich.csv`; \
         the time per image and norm under \"Where the time went\"). The figure sorts the images \
         by the distance found (log scale).",
        w.rows.len(), w.method,
        geometry("L2", &w.l2, |r| &r.l2, "CW-L2 or DeepFool"),
        geometry("Linf", &w.linf, |r| &r.linf, "PGD-Linf, eps by bisection, or any Type II attack"),
    ), Some(crate::figures::SANDWICH_FIGURE.into())));
    s.push(league::league_section(e));
    s.push((stage_times(e), None));
    s.push((
        format!("## Configuration\n\n```toml\n{}```", config.to_toml()),
        None,
    ));
    s
}

/// The report's one section of timings: the only part of the report that differs
/// between runs of the same configuration and inputs (a merge of shards included), so
/// comparisons leave out everything from this heading to the next.
pub const TIMINGS_HEADING: &str = "Where the time went";

/// Where the time went: each stage's seconds, and which this run reused; the rates.
fn stage_times(e: &Evaluation) -> String {
    let times = &e.summary.stage_seconds;
    let total: f64 = times.iter().map(|t| t.seconds).sum();
    let mut text = format!(
        "## {TIMINGS_HEADING}\n\n\
         Each stage's computation ({} s in all; this run's wall time {} s). A stage reused from \
         `stages/` shows the time of the run that computed it (n/a: cached before times were \
         kept). Timings of one machine: see docs/PERFORMANCE.md. Computed by the build \
         `{}` of the program (the sha256 of its executable; stages cached by another build are \
         recomputed).\n\n\
         | stage | seconds | share | this run |\n|---|---|---|---|\n",
        num(total),
        num(e.summary.wall_seconds),
        crate::inputs::ProgramIdentity::from_sha256(&e.summary.versions.program).short()
    );
    for t in times {
        let _ = writeln!(
            text,
            "| {} | {} | {} | {} |",
            t.stage,
            if t.seconds > 0.0 {
                num(t.seconds)
            } else {
                "n/a".into()
            },
            pct(t.seconds / total),
            if t.reused { "reused" } else { "computed" }
        );
    }
    text.push_str("\n| rate | value |\n|---|---|\n");
    for t in &e.type2 {
        let _ = writeln!(
            text,
            "| {} images per second | {:.1} |",
            t.attack, t.summary.images_per_second
        );
    }
    let _ = writeln!(
        text,
        "| Type I pair-iterations per second | {:.1} |\n| certified radius: seconds per image and norm | {} |",
        e.type1.pair_iterations_per_second,
        num(e.sandwich.seconds_per_radius)
    );
    text
}

/// Writes `report.md` and `report.html` into `out`.
pub fn write_reports(
    e: &Evaluation,
    config: &ExperimentConfig,
    p: &Provenance,
    out: &Path,
) -> Result<()> {
    let sections = sections(e, config, p, out);
    let mut md = String::new();
    let mut html = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Is CAM reliable? Reproduction report</title>\
         <style>body{font-family:sans-serif;max-width:60em;margin:2em auto;line-height:1.45}table{border-collapse:collapse}\
         td,th{border:1px solid #ccc;padding:.2em .5em}img{max-width:100%}pre{background:#f4f4f4;padding:1em}</style></head><body>\n",
    );
    for (text, figure) in &sections {
        if !text.is_empty() {
            md.push_str(text);
            md.push_str("\n\n");
            html.push_str(&markdown_to_html(text));
        }
        if let Some(f) = figure {
            let _ = writeln!(md, "![{f}]({f})\n");
            if let Ok(bytes) = std::fs::read(out.join(f)) {
                let _ = writeln!(
                    html,
                    "<p><img alt=\"{f}\" src=\"data:image/png;base64,{}\"></p>",
                    base64(&bytes)
                );
            }
        }
    }
    html.push_str("</body></html>\n");
    write_atomic(&out.join("report.md"), md.as_bytes())?;
    write_atomic(&out.join("report.html"), html.as_bytes())
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The small markdown subset the report uses: headings, tables, code blocks, paragraphs.
fn markdown_to_html(text: &str) -> String {
    let mut out = String::new();
    let mut in_code = false;
    let mut in_table = false;
    for block in text.split("\n\n") {
        let lines: Vec<&str> = block.lines().collect();
        if lines.first().is_some_and(|l| l.starts_with("```")) || in_code {
            for l in &lines {
                if l.starts_with("```") {
                    in_code = !in_code;
                    out.push_str(if in_code { "<pre>" } else { "</pre>\n" });
                } else {
                    let _ = writeln!(out, "{}", escape(l));
                }
            }
            continue;
        }
        for l in &lines {
            if let Some(h) = l.strip_prefix("## ") {
                let _ = writeln!(out, "<h2>{}</h2>", escape(h));
            } else if let Some(h) = l.strip_prefix("# ") {
                let _ = writeln!(out, "<h1>{}</h1>", escape(h));
            } else if l.starts_with('|') {
                if l.contains("---") {
                    continue;
                }
                if !in_table {
                    out.push_str("<table>\n");
                    in_table = true;
                }
                let cells: Vec<String> = l
                    .trim_matches('|')
                    .split('|')
                    .map(|c| format!("<td>{}</td>", escape(c.trim())))
                    .collect();
                let _ = writeln!(out, "<tr>{}</tr>", cells.join(""));
            } else {
                if in_table {
                    out.push_str("</table>\n");
                    in_table = false;
                }
                let _ = writeln!(out, "<p>{}</p>", escape(l));
            }
        }
        if in_table {
            out.push_str("</table>\n");
            in_table = false;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn markdown_subset() {
        let h = markdown_to_html("## A <b>\n\n| x | y |\n|---|---|\n| 1 | 2 |\n\ntext");
        assert!(h.contains("<h2>A &lt;b&gt;</h2>"));
        assert!(h.contains("<tr><td>1</td><td>2</td></tr>"));
        assert!(h.contains("<p>text</p>"));
    }
}
