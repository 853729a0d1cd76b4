//! C2SP tlog-tiles tile paths: `tile/<L>/<N>[.p/<W>]`, where `N` is written in zero-padded
//! three-digit elements, every one but the last prefixed with `x` (`1234067` is
//! `x001/x234/067`), and `.p/<W>` names the first `W` hashes of a tile not yet full.
//!
//! Only the canonical spelling parses: two paths for one tile would let a cache or an
//! auditor hold two copies of what must be one immutable object.

use std::fmt;

/// Hashes in a full tile (C2SP tlog-tiles: height 8).
pub const TILE_WIDTH: u16 = 256;

/// Tile levels a tree of 2^64 leaves can have (64 levels, 8 to a tile).
pub const TILE_LEVELS: u8 = 8;

/// The coordinates of one tile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TilePath {
    /// The tile level `L` (it holds hashes of tree level `8·L`).
    pub level: u8,
    /// The tile's index `N` within its level.
    pub index: u64,
    /// How many hashes: [`TILE_WIDTH`] for a full tile, fewer for a partial one.
    pub width: u16,
}

impl TilePath {
    /// Parses what follows `tile/` in a tile's URL: `None` unless it is a hash tile's
    /// canonical path (entry bundles, `entries/…`, are not hash tiles).
    pub fn parse(path: &str) -> Option<Self> {
        let (level, rest) = path.split_once('/')?;
        let level = canonical_decimal(level).and_then(|l| u8::try_from(l).ok())?;
        if level >= TILE_LEVELS {
            return None;
        }
        let (index, width) = match rest.split_once(".p/") {
            Some((index, width)) => {
                let width = canonical_decimal(width).and_then(|w| u16::try_from(w).ok())?;
                if width == 0 || width >= TILE_WIDTH {
                    return None;
                }
                (index, width)
            }
            None => (rest, TILE_WIDTH),
        };
        let elements: Vec<&str> = index.split('/').collect();
        let (last, leading) = elements.split_last()?;
        let mut n: u64 = 0;
        for (i, element) in leading.iter().enumerate() {
            let digits = element.strip_prefix('x')?;
            let part = three_digits(digits)?;
            // x000 first would spell the same index a second way.
            if i == 0 && part == 0 {
                return None;
            }
            n = n.checked_mul(1000)?.checked_add(part)?;
        }
        n = n.checked_mul(1000)?.checked_add(three_digits(last)?)?;
        Some(Self {
            level,
            index: n,
            width,
        })
    }

    /// Whether the tile is full.
    pub fn is_full(&self) -> bool {
        self.width == TILE_WIDTH
    }
}

impl fmt::Display for TilePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut groups = vec![self.index % 1000];
        let mut rest = self.index / 1000;
        while rest > 0 {
            groups.push(rest % 1000);
            rest /= 1000;
        }
        write!(f, "tile/{}/", self.level)?;
        for (i, g) in groups.iter().rev().enumerate() {
            if i + 1 < groups.len() {
                write!(f, "x{g:03}/")?;
            } else {
                write!(f, "{g:03}")?;
            }
        }
        if !self.is_full() {
            write!(f, ".p/{}", self.width)?;
        }
        Ok(())
    }
}

/// Exactly three ASCII digits.
fn three_digits(s: &str) -> Option<u64> {
    (s.len() == 3 && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

/// A decimal without sign or leading zeros.
fn canonical_decimal(s: &str) -> Option<u64> {
    let ok = !s.is_empty()
        && s.bytes().all(|b| b.is_ascii_digit())
        && (s == "0" || !s.starts_with('0'))
        && s.len() <= 20;
    ok.then(|| s.parse().ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(level: u8, index: u64, width: u16) -> TilePath {
        TilePath {
            level,
            index,
            width,
        }
    }

    #[test]
    fn paths_are_spelled_as_c2sp_writes_them() {
        for (tile, text) in [
            (path(0, 0, 256), "tile/0/000"),
            (path(0, 1, 256), "tile/0/001"),
            (path(1, 999, 256), "tile/1/999"),
            (path(0, 1000, 256), "tile/0/x001/000"),
            (path(2, 1_234_067, 256), "tile/2/x001/x234/067"),
            (path(0, 5, 1), "tile/0/005.p/1"),
            (path(7, 44, 255), "tile/7/044.p/255"),
            (
                path(0, u64::MAX, 256),
                "tile/0/x018/x446/x744/x073/x709/x551/615",
            ),
        ] {
            assert_eq!(tile.to_string(), text);
            assert_eq!(
                TilePath::parse(&text["tile/".len()..]),
                Some(tile),
                "{text}"
            );
        }
    }

    /// The Go sumdb port we did not write (`tlog_tiles`, height 8) spells every path alike,
    /// but for the height it puts after `tile/`, which C2SP tlog-tiles fixes at 8 and omits.
    #[test]
    fn an_independent_implementation_spells_the_same_paths() {
        for level in 0..TILE_LEVELS {
            for index in [
                0,
                1,
                255,
                256,
                999,
                1000,
                65_535,
                1_000_000,
                123_456_789_012,
            ] {
                for width in [1u16, 2, 128, 255, 256] {
                    let theirs = tlog_tiles::Tile::new(8, level, index, u32::from(width), false)
                        .path()
                        .replacen("tile/8/", "tile/", 1);
                    let ours = path(level, index, width);
                    assert_eq!(ours.to_string(), theirs);
                    assert_eq!(TilePath::parse(&theirs["tile/".len()..]), Some(ours));
                }
            }
        }
    }

    #[test]
    fn every_other_spelling_is_refused() {
        for bad in [
            "",
            "0",
            "0/",
            "/000",
            "00/000",
            "+1/000",
            "8/000",
            "255/000",
            "0/00",
            "0/0000",
            "0/1",
            "0/-01",
            "0/+01",
            "0/x000/001",
            "0/x01/001",
            "0/001/x001",
            "0/x001",
            "0/x001/",
            "0/y001/000",
            "0/000.p/0",
            "0/000.p/256",
            "0/000.p/01",
            "0/000.p/",
            "0/000.p/1/2",
            "0/000.p",
            "0/000.p/-1",
            "0/000/.p/1",
            "0/0 1",
            "entries/000",
            "0/x999/x999/x999/x999/x999/x999/x999/999",
            "0/x018/x446/x744/x073/x709/x551/616",
            "0/%30%30%30",
            "0/../000",
        ] {
            assert_eq!(TilePath::parse(bad), None, "{bad:?}");
        }
    }
}
