//! The app's styles: the shared visual language of `crate::style` (the CLI's figures use it too).

pub use crate::style::*;
