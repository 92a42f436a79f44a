//! One file per panel. Each `render` draws borrowed state into an area.

pub mod stacks;
