//! Empty on the host: the programs are in `main.rs`, built for the BPF target by
//! `agent/build.rs`. This library target only lets the agent declare a build dependency.
#![no_std]
