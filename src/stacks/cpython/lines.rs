//! Line numbers from a 3.11+ code object's location table (`co_linetable`, the format of
//! CPython's Objects/locations.md): a run of entries, each covering 1-8 code units and
//! moving the line by a delta, some with column data to skip.

/// An unsigned varint: 6 bits a byte, bit 6 says another byte follows.
fn varint(table: &[u8], at: &mut usize) -> u64 {
    let (mut value, mut shift) = (0u64, 0u32);
    while let Some(&b) = table.get(*at) {
        *at += 1;
        value |= u64::from(b & 63).checked_shl(shift).unwrap_or(0);
        shift += 6;
        if b & 64 == 0 {
            break;
        }
    }
    value
}

/// A signed varint: the low bit is the sign.
fn svarint(table: &[u8], at: &mut usize) -> i64 {
    let v = varint(table, at);
    let magnitude = (v >> 1) as i64;
    if v & 1 == 1 { -magnitude } else { magnitude }
}

/// The line of the instruction at byte offset `lasti` into the bytecode: the line of the
/// entry covering it, counted from `first_line`. (An entry without a location keeps the
/// line before it, as py-spy reports it, so both readers name the same line.)
pub fn line_for(table: &[u8], first_line: i32, lasti: i64) -> i32 {
    let (mut line, mut end, mut at) = (i64::from(first_line), 0i64, 0usize);
    while let Some(&b) = table.get(at) {
        at += 1;
        end += (i64::from(b & 7) + 1) * 2;
        let delta = match (b >> 3) & 15 {
            // No location.
            15 => 0,
            // Long form: line delta, end line, start and end columns.
            14 => {
                let d = svarint(table, &mut at);
                for _ in 0..3 {
                    varint(table, &mut at);
                }
                d
            }
            // No columns.
            13 => svarint(table, &mut at),
            // One-line forms: the delta is in the code, two column bytes follow.
            code @ 10..=12 => {
                at += 2;
                i64::from(code - 10)
            }
            // Short forms: same line, one column byte.
            _ => {
                at += 1;
                0
            }
        };
        line += delta;
        if end > lasti {
            break;
        }
    }
    i32::try_from(line).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip() {
        let mut at = 0;
        // 1 + (2 << 6) = 129, then -(5) zigzagged as 11.
        let t = [64 | 1, 2, 11];
        assert_eq!(varint(&t, &mut at), 129);
        assert_eq!(svarint(&t, &mut at), -5);
        assert_eq!(at, 3);
        // A truncated varint stops at the end.
        let mut at = 0;
        assert_eq!(varint(&[64 | 3], &mut at), 3);
    }

    #[test]
    fn entries_move_the_line() {
        // Entry 1: no-column form (13), 2 code units, line +2.
        // Entry 2: one-line form +1 (11), 1 code unit, two column bytes.
        // Entry 3: long form (14), 3 units, line -1, then end line, columns.
        let t = [
            0x80 | (13 << 3) | 1,
            4,
            0x80 | (11 << 3),
            0,
            5,
            0x80 | (14 << 3) | 2,
            3,
            0,
            1,
            2,
        ];
        assert_eq!(line_for(&t, 10, 0), 12);
        assert_eq!(line_for(&t, 10, 2), 12);
        assert_eq!(line_for(&t, 10, 4), 13);
        assert_eq!(line_for(&t, 10, 6), 12);
        assert_eq!(line_for(&t, 10, 10), 12);
        // Before the first instruction (a frame not started yet): the first entry's line.
        assert_eq!(line_for(&t, 10, -2), 12);
        assert_eq!(line_for(&[], 7, 0), 7);
    }
}
