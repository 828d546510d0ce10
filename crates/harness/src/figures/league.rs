//! `explain_league.png`: every explanation method (one row each) on the league's figure
//! images, each clean, under Type I, PGD-Linf and CW-L2 (ALGORITHMS.md sections 11 and
//! 12), drawn from the league stage's result alone.

use std::path::Path;

use cam::{Frame, OverlayStyle};

use crate::error::{HarnessError, Result};
use crate::stages::type1::{stack_vertically, titled};
use crate::stages::LeagueResult;

/// The figure's file name.
pub const LEAGUE_FIGURE: &str = "explain_league.png";

/// Draws the figure into `path`; returns the images shown (0: no image had a success
/// under all three attacks, nothing drawn).
pub fn league_figure(path: &Path, league: &LeagueResult) -> Result<usize> {
    if league.figure.is_empty() {
        return Ok(0);
    }
    let style = OverlayStyle::default();
    let mut strips = Vec::with_capacity(league.methods.len());
    for (m, method) in league.methods.iter().enumerate() {
        let mut frames = Vec::new();
        for (index, cells) in &league.figure {
            for cell in cells {
                let map = cell.maps.get(m).ok_or_else(|| HarnessError::Plot {
                    path: path.to_path_buf(),
                    message: format!("no {method} map for test image {index}"),
                })?;
                let condition = match cell.target {
                    Some(t) => format!("{} TO {t}", cell.condition),
                    None => cell.condition.clone(),
                };
                frames.push(Frame {
                    image: cell.pixels.clone(),
                    map: map.clone(),
                    height: 28,
                    width: 28,
                    caption: format!(
                        "{}\nIMAGE {index} {}\nF1 {}",
                        method.to_uppercase(),
                        condition.to_uppercase(),
                        cell.class
                    ),
                });
            }
        }
        strips.push(cam::frame_strip(&frames, &style)?);
    }
    let figure = titled(
        &stack_vertically(&strips),
        "EXPLANATIONS OF F1 - CLEAN / TYPE I / PGD-LINF / CW-L2",
    )?;
    cam::write_png(&figure, path)?;
    Ok(league.figure.len())
}
