//! NDJSON line decoder with a hard per-line cap. It owns only byte framing: JSON decoding
//! and what to do about a bad line are the client's business. An oversize line yields one
//! [`FrameError::TooLong`] and the decoder resynchronises at the next newline, never
//! buffering more than the cap.

/// A framing failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("line longer than the {cap}-byte cap")]
    TooLong { cap: usize },
}

/// Splits a byte stream into lines (without the `\n`).
#[derive(Debug)]
pub struct LineDecoder {
    buf: Vec<u8>,
    cap: usize,
    /// Inside an oversize line already reported: drop bytes until the next newline.
    discarding: bool,
}

impl LineDecoder {
    pub fn new(cap: usize) -> Self {
        Self {
            buf: Vec::new(),
            cap,
            discarding: false,
        }
    }

    /// Feeds bytes; complete lines (or errors) are appended to `out` in stream order.
    pub fn push(&mut self, mut data: &[u8], out: &mut Vec<Result<Vec<u8>, FrameError>>) {
        while !data.is_empty() {
            match data.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    let head = &data[..i];
                    if self.discarding {
                        self.discarding = false;
                    } else if self.buf.len() + head.len() > self.cap {
                        self.buf.clear();
                        out.push(Err(FrameError::TooLong { cap: self.cap }));
                    } else {
                        self.buf.extend_from_slice(head);
                        out.push(Ok(std::mem::take(&mut self.buf)));
                    }
                    data = &data[i + 1..];
                }
                None => {
                    if !self.discarding {
                        if self.buf.len() + data.len() > self.cap {
                            self.buf = Vec::new();
                            self.discarding = true;
                            out.push(Err(FrameError::TooLong { cap: self.cap }));
                        } else {
                            self.buf.extend_from_slice(data);
                        }
                    }
                    data = &[];
                }
            }
        }
    }

    /// Bytes of an unfinished line (non-zero at EOF means the peer stopped mid-message).
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// True while skipping the rest of an oversize line.
    pub fn is_discarding(&self) -> bool {
        self.discarding
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn run(dec: &mut LineDecoder, parts: &[&[u8]]) -> Vec<Result<Vec<u8>, FrameError>> {
        let mut out = Vec::new();
        for p in parts {
            dec.push(p, &mut out);
        }
        out
    }

    #[test]
    fn splits_lines_across_reads() {
        let mut d = LineDecoder::new(10);
        let out = run(&mut d, &[b"ab", b"c\nde\n", b"f"]);
        assert_eq!(out, vec![Ok(b"abc".to_vec()), Ok(b"de".to_vec())]);
        assert_eq!(d.pending(), 1);
    }

    #[test]
    fn oversize_line_is_reported_once_then_resyncs() {
        let mut d = LineDecoder::new(4);
        let out = run(&mut d, &[b"1234", b"5678", b"9\nok\n"]);
        assert_eq!(
            out,
            vec![Err(FrameError::TooLong { cap: 4 }), Ok(b"ok".to_vec())]
        );
        assert!(!d.is_discarding());
    }

    proptest! {
        /// Whatever the line lengths and however the stream is cut, the decoder yields each
        /// line within the cap intact and exactly one error per oversize line, in order.
        #[test]
        fn decoder_matches_model(
            lines in proptest::collection::vec(proptest::collection::vec(0u8..=254, 0..40), 0..20),
            cuts in proptest::collection::vec(0usize..200, 0..10),
            cap in 1usize..30,
        ) {
            // 255 stands in for '\n' so generated lines never contain a newline.
            let lines: Vec<Vec<u8>> = lines.into_iter()
                .map(|l| l.into_iter().map(|b| if b == b'\n' { 255 } else { b }).collect())
                .collect();
            let mut stream = Vec::new();
            for l in &lines { stream.extend_from_slice(l); stream.push(b'\n'); }
            let mut points: Vec<usize> = cuts.into_iter().map(|c| c.min(stream.len())).collect();
            points.sort_unstable();
            let mut dec = LineDecoder::new(cap);
            let mut out = Vec::new();
            let mut last = 0;
            for p in points.into_iter().chain([stream.len()]) {
                dec.push(&stream[last..p], &mut out);
                last = p;
            }
            let expected: Vec<Result<Vec<u8>, FrameError>> = lines.iter()
                .map(|l| if l.len() > cap { Err(FrameError::TooLong { cap }) } else { Ok(l.clone()) })
                .collect();
            prop_assert_eq!(out, expected);
            prop_assert_eq!(dec.pending(), 0);
        }
    }
}
