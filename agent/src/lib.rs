//! groundtruth-agent: loads the kernel programs, launches the command under test,
//! decodes kernel events and writes the trail.
//!
//! - [`btf`]: kernel structure offsets from the running kernel's BTF.
//! - [`loader`]: load and attach the programs.
//! - [`launch`]: fork the command so it is tracked from its first instruction.
//! - [`decode`]: defensive decoding of ring buffer records into trail events.
//! - [`record`]: the record loop and its summary.

pub mod btf;
pub mod decode;
pub mod launch;
pub mod loader;
pub mod record;
pub mod scope;
