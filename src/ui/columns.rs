//! Column priorities for the tables: which columns a width keeps and how wide each gets.
//! Columns that carry the meaning (names, WAITING ON, AWAITING AT, NOTE) are never dropped
//! and get the room; numeric columns go first when space is short. Widths are computed here
//! (not left to the table) so cells can be cut to them with `…`, paths from the left.

use ratatui::layout::Constraint;

/// One column of a table.
#[derive(Debug, Clone, Copy)]
pub struct Col {
    pub header: &'static str,
    /// Narrowest useful width.
    pub min: u16,
    /// What the content on screen would like (a flexible column grows up to it).
    pub want: u16,
    /// 0: never dropped; otherwise the highest number is dropped first.
    pub drop: u8,
    /// Grows with the room left (names, wait points, paths).
    pub flex: bool,
}

impl Col {
    /// A fixed-width column (as wide as its header at least).
    pub fn fixed(header: &'static str, width: u16, drop: u8) -> Self {
        let w = width.max(header.chars().count() as u16);
        Col {
            header,
            min: w,
            want: w,
            drop,
            flex: false,
        }
    }

    /// A flexible column wanting `want` (its widest cell on screen), at least `min` wide
    /// (or less when its content is narrower: the room goes where it is needed).
    pub fn flex(header: &'static str, min: u16, want: usize, drop: u8) -> Self {
        let h = header.chars().count() as u16;
        let want = u16::try_from(want).unwrap_or(u16::MAX).max(h);
        Col {
            header,
            min: min.min(want).max(h),
            want,
            drop,
            flex: true,
        }
    }
}

/// Space between columns (the table's column spacing).
pub const SPACING: u16 = 1;

/// The width of each column in `width` cells, `None` for the dropped ones.
pub fn fit(width: u16, cols: &[Col]) -> Vec<Option<u16>> {
    let mut shown: Vec<bool> = vec![true; cols.len()];
    let needed = |shown: &[bool]| -> u32 {
        let n = shown.iter().filter(|s| **s).count() as u32;
        let mins: u32 = cols
            .iter()
            .zip(shown)
            .filter(|(_, s)| **s)
            .map(|(c, _)| u32::from(c.min))
            .sum();
        mins + n.saturating_sub(1) * u32::from(SPACING)
    };
    while needed(&shown) > u32::from(width) {
        let victim = cols
            .iter()
            .enumerate()
            .filter(|(i, c)| shown[*i] && c.drop > 0)
            .max_by_key(|(i, c)| (c.drop, *i));
        match victim {
            Some((i, _)) => shown[i] = false,
            None => break,
        }
    }
    let mut widths: Vec<u16> = cols.iter().map(|c| c.min).collect();
    let mut extra = u32::from(width).saturating_sub(needed(&shown));
    // Grow the flexible columns towards what their content wants, evenly.
    loop {
        let growing: Vec<usize> = (0..cols.len())
            .filter(|&i| shown[i] && cols[i].flex && widths[i] < cols[i].want)
            .collect();
        if extra == 0 || growing.is_empty() {
            break;
        }
        let share = (extra / growing.len() as u32).max(1);
        for i in growing {
            let room = u32::from(cols[i].want - widths[i]);
            let add = share.min(room).min(extra);
            widths[i] += add as u16;
            extra -= add;
        }
    }
    // What is left goes to the last flexible column: the table fills its panel.
    if let Some(last) = (0..cols.len()).rev().find(|&i| shown[i] && cols[i].flex) {
        widths[last] = widths[last].saturating_add(u16::try_from(extra).unwrap_or(u16::MAX));
    }
    widths
        .into_iter()
        .zip(shown)
        .map(|(w, s)| s.then_some(w))
        .collect()
}

/// The constraints of the shown columns, for `Table::new`.
pub fn constraints(widths: &[Option<u16>]) -> Vec<Constraint> {
    widths
        .iter()
        .flatten()
        .map(|w| Constraint::Length(*w))
        .collect()
}

/// Keeps the shown items of a row (same order as the columns).
pub fn pick<T>(widths: &[Option<u16>], items: Vec<T>) -> Vec<T> {
    items
        .into_iter()
        .zip(widths)
        .filter_map(|(x, w)| w.map(|_| x))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cols() -> Vec<Col> {
        vec![
            Col::fixed("TID", 7, 0),
            Col::flex("NAME", 8, 30, 0),
            Col::fixed("S", 1, 2),
            Col::flex("WAITING ON", 10, 40, 0),
            Col::fixed("CPU%", 5, 4),
            Col::fixed("TIME", 8, 5),
        ]
    }

    #[test]
    fn numeric_columns_go_first_and_names_get_the_room() {
        let w = fit(35, &cols());
        assert_eq!(w[5], None, "TIME dropped first: {w:?}");
        assert_eq!(w[4], Some(5), "CPU% kept while it fits");
        let w = fit(30, &cols());
        assert_eq!(w[4], None, "then CPU%");
        assert_eq!(w[2], Some(1), "S kept while it fits");
        let total: u16 = w.iter().flatten().sum::<u16>() + 3;
        assert_eq!(total, 30, "the table fills its width: {w:?}");
        let w = fit(60, &cols());
        assert!(w.iter().all(Option::is_some), "{w:?}");
        assert!(w[1] >= Some(12) && w[3] >= Some(12), "{w:?}");
    }

    #[test]
    fn wide_tables_keep_everything_and_stop_at_what_content_wants() {
        let w = fit(200, &cols());
        assert!(w.iter().all(Option::is_some));
        assert_eq!(w[1], Some(30));
        // The rest of the width goes to the last flexible column.
        assert_eq!(w[3], Some(200 - 7 - 30 - 1 - 5 - 8 - 5));
    }

    #[test]
    fn never_dropped_columns_stay_even_when_nothing_fits() {
        let w = fit(10, &cols());
        assert_eq!(w.iter().flatten().count(), 3);
    }
}
