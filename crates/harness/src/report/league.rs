//! The report's explanation-league section: the table of every method under both attack
//! types with each cell's n, the verdict in plain words, and the figure.

use crate::cam_change::CamChange;
use crate::results::Evaluation;
use crate::stages::league::{Detection, MeanOf, LEAGUE_ATTACKS};

use super::num;

/// Spearman with its n, as `0.123 (n)`.
fn spearman(c: &CamChange) -> String {
    format!("{} ({})", num(c.spearman), c.n())
}

fn auroc(d: &Detection) -> String {
    format!("{} ({}/{})", num(d.auroc), d.attacked, d.control)
}

fn mean(m: &MeanOf) -> String {
    format!("{} ({})", num(m.mean), m.n)
}

/// The section: (markdown, the figure's file when one was drawn).
pub(super) fn league_section(e: &Evaluation) -> (String, Option<String>) {
    let l = &e.league;
    let t = &l.table;
    let p = &t.populations;
    // The attacks in the league's order, then any other the table holds.
    let mut attacks: Vec<&String> = LEAGUE_ATTACKS
        .iter()
        .filter_map(|a| p.type2.keys().find(|k| k.as_str() == *a))
        .collect();
    attacks.extend(
        p.type2
            .keys()
            .filter(|k| !LEAGUE_ATTACKS.contains(&k.as_str())),
    );
    let mut text = format!(
        "## Which explanation is the most robust? {} methods under Type I and Type II\n\n\
         Every method explains f1 ({}) on the same examples: the {} consensus successes of the \
         constrained Type I attack (maps of the class f1 keeps), the successes of {} (maps of the class \
         f1 decides on each image; n per attack: {}), and the first {} clean test images under {} \
         label-preserving noise copies each (uniform in the Linf ball of radius {}). Map change is \
         Spearman between the two maps (28 x 28, min-max; 1: the same ranking) over the pairs whose maps \
         are both informative, n in brackets, each beside its noise control of the same L2 norm. \
         Detection AUROC: how well 1 - Spearman separates attacked pairs from their noise controls \
         (attacked/control pairs in brackets; Type I: G(mu(x)) vs G(z*) against G(mu(x)) + noise). \
         On f1's GAP + linear head, Grad-CAM and HiResCAM are CAM divided by h w before scaling \
         (ALGORITHMS.md section 6, tested in `cam`), so their rows repeat CAM's up to float rounding; \
         they differ on a model without that head (`cargo xtask explain --model oracle`).\n\n",
        l.methods.len(),
        p.model,
        p.type1,
        attacks.iter().map(|a| a.as_str()).collect::<Vec<_>>().join(", "),
        attacks
            .iter()
            .map(|a| format!("{a} {}", p.type2[*a]))
            .collect::<Vec<_>>()
            .join(", "),
        p.clean_images,
        p.noise_samples,
        num(p.noise_radius),
    );
    text.push_str("| method | Type I vs x | Type I vs G(mu(x)) | its noise control |");
    for a in &attacks {
        text.push_str(&format!(" {a} | {a} noise |"));
    }
    text.push_str("\n|---|---|---|---|");
    text.push_str(&"---|---|".repeat(attacks.len()));
    text.push('\n');
    for name in &l.methods {
        let s = &t.methods[name];
        text.push_str(&format!(
            "| {name} | {} | {} | {} |",
            spearman(&s.type1.vs_x),
            spearman(&s.type1.vs_reconstruction),
            spearman(&s.type1.noise_reconstruction)
        ));
        for a in &attacks {
            let c = &s.type2[*a];
            text.push_str(&format!(
                " {} | {} |",
                spearman(&c.change),
                spearman(&c.noise)
            ));
        }
        text.push('\n');
    }
    text.push_str("\n| method | detection AUROC, Type I |");
    for a in &attacks {
        text.push_str(&format!(" detection AUROC, {a} |"));
    }
    text.push_str(
        " Max-Sensitivity (n) | Local Lipschitz (n) | deletion AUC (n) | insertion AUC (n) | mean rank |\n|---|---|",
    );
    text.push_str(&"---|".repeat(attacks.len() + 5));
    text.push('\n');
    for name in &l.methods {
        let s = &t.methods[name];
        let rank = t
            .verdict
            .ranking
            .iter()
            .find(|r| &r.method == name)
            .map_or(f64::NAN, |r| r.mean_rank);
        text.push_str(&format!("| {name} | {} |", auroc(&s.type1.detection)));
        for a in &attacks {
            text.push_str(&format!(" {} |", auroc(&s.type2[*a].detection)));
        }
        text.push_str(&format!(
            " {} | {} | {} | {} | {} |\n",
            mean(&s.max_sensitivity),
            mean(&s.lipschitz),
            mean(&s.deletion_auc),
            mean(&s.insertion_auc),
            num(rank)
        ));
    }
    text.push('\n');
    text.push_str(&verdict_words(e));
    let figure = (!l.figure.is_empty()).then(|| {
        text.push_str(&format!(
            "\n\nThe figure shows every method (rows) on {} test images with a success of all three \
             attacks (test index in each caption), each clean, under Type I (moved to the named class; f1 \
             keeps its label), PGD-Linf and CW-L2 (f1's new class): maps ReLU then min-max over the digit.",
            l.figure.len()
        ));
        crate::figures::LEAGUE_FIGURE.to_string()
    });
    (text, figure)
}

/// The verdict in plain words, with the margin to the runner-up.
fn verdict_words(e: &Evaluation) -> String {
    let v = &e.league.table.verdict;
    let Some(best) = v.ranking.first() else {
        return "No method was ranked.".into();
    };
    let mut words = format!(
        "**Verdict: {} is the most robust interpretation in the study's sense** ({}). It separates \
         the Type I examples from their noise controls with AUROC {}, the Type II examples with a \
         mean AUROC of {}, and its Max-Sensitivity under noise is {}",
        best.method,
        v.criteria,
        num(best.type1_auroc),
        num(best.type2_auroc),
        num(best.max_sensitivity)
    );
    match v.ranking.get(1) {
        Some(next) => words.push_str(&format!(
            "; the runner-up, {}, scores {}, {} and {} (mean rank {} against {}).",
            next.method,
            num(next.type1_auroc),
            num(next.type2_auroc),
            num(next.max_sensitivity),
            num(best.mean_rank),
            num(next.mean_rank)
        )),
        None => words.push('.'),
    }
    if let Some(cam) = v.ranking.iter().position(|r| r.method == "cam") {
        let r = &v.ranking[cam];
        words.push_str(&format!(
            " CAM, the study's map, ranks {} of {} (Type I AUROC {}, Type II {}, Max-Sensitivity {}).",
            cam + 1,
            v.ranking.len(),
            num(r.type1_auroc),
            num(r.type2_auroc),
            num(r.max_sensitivity)
        ));
    }
    words.push_str(
        " Deletion and insertion AUC measure faithfulness (does the map point at what f1 uses?), \
         a different claim, shown beside the ranking and not folded into it.",
    );
    words
}
