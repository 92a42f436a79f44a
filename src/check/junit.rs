//! JUnit XML for CI dashboards: one `<testsuite>` per check run, one `<testcase>` per
//! verdict check ("exited within budget", "exit status", ...).
//!
//! Everything from outside (messages, log text, command lines) is escaped (`& < > " '`),
//! ANSI colour sequences are dropped, and characters XML 1.0 cannot carry (NUL and the
//! other C0 controls but tab/newline/CR, U+FFFE, U+FFFF) are removed, so the file always
//! parses.

use std::fmt::Write as _;

/// One test suite: the check run of one command.
#[derive(Debug, Clone, PartialEq)]
pub struct Suite {
    pub name: String,
    pub time_s: f64,
    pub cases: Vec<Case>,
}

/// One verdict check.
#[derive(Debug, Clone, PartialEq)]
pub struct Case {
    pub name: String,
    pub classname: String,
    pub time_s: f64,
    pub outcome: Outcome,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Passed,
    /// `message` goes into the attribute (one line), `text` is the body (evidence).
    Failed {
        message: String,
        text: String,
    },
    Skipped {
        message: String,
    },
}

impl Suite {
    pub fn tests(&self) -> usize {
        self.cases.len()
    }
    pub fn failures(&self) -> usize {
        self.cases
            .iter()
            .filter(|c| matches!(c.outcome, Outcome::Failed { .. }))
            .count()
    }
    pub fn skipped(&self) -> usize {
        self.cases
            .iter()
            .filter(|c| matches!(c.outcome, Outcome::Skipped { .. }))
            .count()
    }

    /// The whole document: `<?xml ...?><testsuites ...><testsuite ...>...</testsuites>`.
    pub fn to_xml(&self) -> String {
        let mut out = String::with_capacity(512);
        let time = seconds(self.time_s);
        let (tests, failures, skipped) = (self.tests(), self.failures(), self.skipped());
        let name = attr(&self.name);
        out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        let _ = writeln!(
            out,
            "<testsuites name=\"{name}\" tests=\"{tests}\" failures=\"{failures}\" skipped=\"{skipped}\" errors=\"0\" time=\"{time}\">"
        );
        let _ = writeln!(
            out,
            "  <testsuite name=\"{name}\" tests=\"{tests}\" failures=\"{failures}\" skipped=\"{skipped}\" errors=\"0\" time=\"{time}\">"
        );
        for case in &self.cases {
            let _ = write!(
                out,
                "    <testcase name=\"{}\" classname=\"{}\" time=\"{}\"",
                attr(&case.name),
                attr(&case.classname),
                seconds(case.time_s)
            );
            match &case.outcome {
                Outcome::Passed => out.push_str("/>\n"),
                Outcome::Failed { message, text } => {
                    let _ = writeln!(
                        out,
                        ">\n      <failure message=\"{}\" type=\"shutdown\">{}</failure>\n    </testcase>",
                        attr(message),
                        text_content(text)
                    );
                }
                Outcome::Skipped { message } => {
                    let _ = writeln!(
                        out,
                        ">\n      <skipped message=\"{}\"/>\n    </testcase>",
                        attr(message)
                    );
                }
            }
        }
        out.push_str("  </testsuite>\n</testsuites>\n");
        out
    }
}

/// Seconds with millisecond precision; negative or non-finite times become 0.
fn seconds(t: f64) -> String {
    let t = if t.is_finite() && t > 0.0 { t } else { 0.0 };
    format!("{t:.3}")
}

/// Characters XML 1.0 allows (Rust `char`s are never surrogates).
fn xml_char_ok(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r') || (c >= ' ' && c != '\u{FFFE}' && c != '\u{FFFF}')
}

/// Drops ANSI escape sequences (CSI `ESC [ ... final`, OSC `ESC ] ... BEL|ST`, and
/// two-byte `ESC x`) so coloured logs read as text.
fn strip_ansi(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.contains('\u{1b}') {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\u{1b}' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('[') => {
                // Parameters and intermediates, then one final byte in @..~.
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
            Some(']') => {
                while let Some(c) = chars.next() {
                    if c == '\u{7}' {
                        break;
                    }
                    if c == '\u{1b}' && chars.peek() == Some(&'\\') {
                        chars.next();
                        break;
                    }
                }
            }
            _ => {}
        }
    }
    std::borrow::Cow::Owned(out)
}

fn escape(s: &str, in_attr: bool) -> String {
    let s = strip_ansi(s);
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Attribute value normalization would turn these into spaces.
            '\n' if in_attr => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            '\t' if in_attr => out.push_str("&#9;"),
            c if xml_char_ok(c) => out.push(c),
            _ => {}
        }
    }
    out
}

/// An attribute value (without the quotes).
pub fn attr(s: &str) -> String {
    escape(s, true)
}

/// Element text content.
pub fn text_content(s: &str) -> String {
    escape(s, false)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn case(name: &str, outcome: Outcome) -> Case {
        Case {
            name: name.into(),
            classname: "lifecycle-top.check".into(),
            time_s: 0.25,
            outcome,
        }
    }

    fn suite() -> Suite {
        Suite {
            name: "check: python3 app.py".into(),
            time_s: 1.5,
            cases: vec![
                case("exited within budget", Outcome::Passed),
                case(
                    "exit status",
                    Outcome::Failed {
                        message: "exited with status 3".into(),
                        text: "Traceback (most recent call last):\n  File \"a.py\"\nValueError: <x> & 'y'".into(),
                    },
                ),
                case(
                    "no lingering non-daemon threads",
                    Outcome::Skipped {
                        message: "no agent".into(),
                    },
                ),
                case("no warnings", Outcome::Passed),
            ],
        }
    }

    #[test]
    fn parses_with_the_right_elements_and_counts() {
        let xml = suite().to_xml();
        let doc = roxmltree::Document::parse(&xml).unwrap();
        let root = doc.root_element();
        assert_eq!(root.tag_name().name(), "testsuites");
        let suites: Vec<_> = root.children().filter(|n| n.is_element()).collect();
        assert_eq!(suites.len(), 1);
        let s = suites[0];
        assert_eq!(s.tag_name().name(), "testsuite");
        assert_eq!(s.attribute("name"), Some("check: python3 app.py"));
        assert_eq!(s.attribute("tests"), Some("4"));
        assert_eq!(s.attribute("failures"), Some("1"));
        assert_eq!(s.attribute("skipped"), Some("1"));
        assert_eq!(s.attribute("errors"), Some("0"));
        assert_eq!(s.attribute("time"), Some("1.500"));
        let cases: Vec<_> = s
            .children()
            .filter(|n| n.has_tag_name("testcase"))
            .collect();
        assert_eq!(cases.len(), 4);
        assert_eq!(cases[0].attribute("name"), Some("exited within budget"));
        assert_eq!(cases[0].attribute("classname"), Some("lifecycle-top.check"));
        assert_eq!(cases[0].children().filter(|n| n.is_element()).count(), 0);
        let failure = cases[1]
            .children()
            .find(|n| n.has_tag_name("failure"))
            .unwrap();
        assert_eq!(failure.attribute("message"), Some("exited with status 3"));
        assert!(failure.text().unwrap().ends_with("ValueError: <x> & 'y'"));
        let skipped = cases[2]
            .children()
            .find(|n| n.has_tag_name("skipped"))
            .unwrap();
        assert_eq!(skipped.attribute("message"), Some("no agent"));
        assert_eq!(
            doc.descendants()
                .filter(|n| n.has_tag_name("failure"))
                .count(),
            1
        );
    }

    #[test]
    fn hostile_text_round_trips_minus_invalid_chars() {
        let nasty = "a&b<c>d\"e'f\u{0}g\u{1}h\u{b}i\u{c}j\u{1b}[31mred\u{1b}[0m\u{fffe}k\u{ffff}l\ttab\nline\r\n]]>é😀";
        let want = "a&b<c>d\"e'fghijredkl\ttab\nline\r\n]]>é😀";
        let s = Suite {
            name: nasty.into(),
            time_s: f64::NAN,
            cases: vec![Case {
                name: nasty.into(),
                classname: nasty.into(),
                time_s: -1.0,
                outcome: Outcome::Failed {
                    message: nasty.into(),
                    text: nasty.into(),
                },
            }],
        };
        let xml = s.to_xml();
        let doc = roxmltree::Document::parse(&xml).unwrap();
        let tc = doc
            .descendants()
            .find(|n| n.has_tag_name("testcase"))
            .unwrap();
        assert_eq!(tc.attribute("name"), Some(want));
        assert_eq!(tc.attribute("classname"), Some(want));
        assert_eq!(tc.attribute("time"), Some("0.000"));
        let f = tc.children().find(|n| n.has_tag_name("failure")).unwrap();
        assert_eq!(f.attribute("message"), Some(want));
        assert_eq!(f.text(), Some(want));
        let suite = doc
            .descendants()
            .find(|n| n.has_tag_name("testsuite"))
            .unwrap();
        assert_eq!(suite.attribute("time"), Some("0.000"));
    }

    #[test]
    fn empty_suite_is_valid() {
        let s = Suite {
            name: String::new(),
            time_s: 0.0,
            cases: vec![],
        };
        let doc_text = s.to_xml();
        let doc = roxmltree::Document::parse(&doc_text).unwrap();
        let ts = doc
            .descendants()
            .find(|n| n.has_tag_name("testsuite"))
            .unwrap();
        assert_eq!(ts.attribute("tests"), Some("0"));
        assert_eq!(
            doc.descendants()
                .filter(|n| n.has_tag_name("testcase"))
                .count(),
            0
        );
    }

    #[test]
    fn osc_sequences_are_dropped() {
        assert_eq!(
            strip_ansi("a\u{1b}]0;title\u{7}b\u{1b}]8;;x\u{1b}\\c"),
            "abc"
        );
    }
}
