//! A 3 x 5 bitmap font drawn in code, so captions render on a bare machine (no font
//! files, no system fonts). It covers digits, A-Z (lower case is drawn as upper case),
//! space and `. - : = > ( ) / % _ +`; any other character is an error, not a blank.

use image::{Rgb, RgbImage};

use crate::error::{CamError, Result};

/// Width of a glyph in font pixels.
pub const GLYPH_WIDTH: u32 = 3;
/// Height of a glyph in font pixels.
pub const GLYPH_HEIGHT: u32 = 5;

/// The five rows of a glyph, top first, the three low bits left to right.
fn glyph(c: char) -> Option<[u8; 5]> {
    Some(match c.to_ascii_uppercase() {
        '0' => [0b111, 0b101, 0b101, 0b101, 0b111],
        '1' => [0b010, 0b110, 0b010, 0b010, 0b111],
        '2' => [0b111, 0b001, 0b111, 0b100, 0b111],
        '3' => [0b111, 0b001, 0b111, 0b001, 0b111],
        '4' => [0b101, 0b101, 0b111, 0b001, 0b001],
        '5' => [0b111, 0b100, 0b111, 0b001, 0b111],
        '6' => [0b111, 0b100, 0b111, 0b101, 0b111],
        '7' => [0b111, 0b001, 0b010, 0b010, 0b010],
        '8' => [0b111, 0b101, 0b111, 0b101, 0b111],
        '9' => [0b111, 0b101, 0b111, 0b001, 0b111],
        'A' => [0b010, 0b101, 0b111, 0b101, 0b101],
        'B' => [0b110, 0b101, 0b110, 0b101, 0b110],
        'C' => [0b011, 0b100, 0b100, 0b100, 0b011],
        'D' => [0b110, 0b101, 0b101, 0b101, 0b110],
        'E' => [0b111, 0b100, 0b110, 0b100, 0b111],
        'F' => [0b111, 0b100, 0b110, 0b100, 0b100],
        'G' => [0b011, 0b100, 0b101, 0b101, 0b011],
        'H' => [0b101, 0b101, 0b111, 0b101, 0b101],
        'I' => [0b111, 0b010, 0b010, 0b010, 0b111],
        'J' => [0b001, 0b001, 0b001, 0b101, 0b010],
        'K' => [0b101, 0b101, 0b110, 0b101, 0b101],
        'L' => [0b100, 0b100, 0b100, 0b100, 0b111],
        'M' => [0b101, 0b111, 0b111, 0b101, 0b101],
        'N' => [0b110, 0b101, 0b101, 0b101, 0b101],
        'O' => [0b010, 0b101, 0b101, 0b101, 0b010],
        'P' => [0b110, 0b101, 0b110, 0b100, 0b100],
        'Q' => [0b010, 0b101, 0b101, 0b110, 0b011],
        'R' => [0b110, 0b101, 0b110, 0b101, 0b101],
        'S' => [0b011, 0b100, 0b010, 0b001, 0b110],
        'T' => [0b111, 0b010, 0b010, 0b010, 0b010],
        'U' => [0b101, 0b101, 0b101, 0b101, 0b111],
        'V' => [0b101, 0b101, 0b101, 0b101, 0b010],
        'W' => [0b101, 0b101, 0b111, 0b111, 0b101],
        'X' => [0b101, 0b101, 0b010, 0b101, 0b101],
        'Y' => [0b101, 0b101, 0b010, 0b010, 0b010],
        'Z' => [0b111, 0b001, 0b010, 0b100, 0b111],
        ' ' => [0; 5],
        '.' => [0b000, 0b000, 0b000, 0b000, 0b010],
        '-' => [0b000, 0b000, 0b111, 0b000, 0b000],
        ':' => [0b000, 0b010, 0b000, 0b010, 0b000],
        '=' => [0b000, 0b111, 0b000, 0b111, 0b000],
        '>' => [0b100, 0b010, 0b001, 0b010, 0b100],
        '(' => [0b010, 0b100, 0b100, 0b100, 0b010],
        ')' => [0b010, 0b001, 0b001, 0b001, 0b010],
        '/' => [0b001, 0b001, 0b010, 0b100, 0b100],
        '%' => [0b101, 0b001, 0b010, 0b100, 0b101],
        '_' => [0b000, 0b000, 0b000, 0b000, 0b111],
        '+' => [0b000, 0b010, 0b111, 0b010, 0b000],
        _ => return None,
    })
}

/// Width in image pixels of one line of `text` at `scale` (one font pixel of spacing
/// between glyphs).
pub fn text_width(text: &str, scale: u32) -> u32 {
    let n = text.chars().count() as u32;
    (n * (GLYPH_WIDTH + 1)).saturating_sub(1) * scale
}

/// Draws one line of `text` with its top-left corner at `(x, y)`, each font pixel a
/// `scale x scale` square. Whatever falls outside the image is clipped. Every character
/// is checked before anything is drawn.
pub fn draw_text(
    image: &mut RgbImage,
    x: u32,
    y: u32,
    text: &str,
    scale: u32,
    color: [u8; 3],
) -> Result<()> {
    let glyphs = text
        .chars()
        .map(|c| glyph(c).ok_or(CamError::UnsupportedCharacter(c)))
        .collect::<Result<Vec<_>>>()?;
    let (w, h) = image.dimensions();
    for (i, rows) in glyphs.iter().enumerate() {
        let gx = x.saturating_add((i as u32).saturating_mul((GLYPH_WIDTH + 1) * scale));
        for (r, bits) in rows.iter().enumerate() {
            for col in 0..GLYPH_WIDTH {
                if bits >> (GLYPH_WIDTH - 1 - col) & 1 == 0 {
                    continue;
                }
                for dy in 0..scale {
                    for dx in 0..scale {
                        let px = gx.saturating_add(col * scale + dx);
                        let py = y.saturating_add(r as u32 * scale + dy);
                        if px < w && py < h {
                            image.put_pixel(px, py, Rgb(color));
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_one_is_drawn_where_expected() {
        let mut img = RgbImage::new(3, 5);
        draw_text(&mut img, 0, 0, "1", 1, [255, 255, 255]).unwrap();
        let lit: Vec<bool> = img.pixels().map(|p| p.0[0] == 255).collect();
        #[rustfmt::skip]
        let expected = [
            false, true, false,
            true, true, false,
            false, true, false,
            false, true, false,
            true, true, true,
        ];
        assert_eq!(lit, expected);
    }

    #[test]
    fn captions_of_the_study_are_covered_and_unknown_characters_refused() {
        let mut img = RgbImage::new(200, 20);
        draw_text(&mut img, 0, 0, "Grad-CAM 7 p=0.863 (7->9)", 1, [0, 0, 0]).unwrap();
        assert!(matches!(
            draw_text(&mut img, 0, 0, "ok?", 1, [0, 0, 0]),
            Err(CamError::UnsupportedCharacter('?'))
        ));
        // Drawing off the image clips, never panics.
        draw_text(&mut img, 195, 18, "WWW", 3, [9, 9, 9]).unwrap();
        assert_eq!(text_width("ab", 2), 14);
        assert_eq!(text_width("", 2), 0);
    }
}
