//! (being written: see the issue for this module)

pub mod widgets;
