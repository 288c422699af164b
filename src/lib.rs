//! `engine`: a deep-learning engine written from scratch, and the workflow around it.

pub mod tracking;
