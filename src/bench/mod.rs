//! `wgtrain bench`: measured figures for each backend (and peers) side by side.

pub mod timed;
