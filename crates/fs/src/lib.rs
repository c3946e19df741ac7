//! reprovm's host-side file work, the primitives and mechanisms every other crate stands on:
//! paths resolved beneath directory handles (`beneath`), archive extraction through them
//! (`archive`), the one deterministic archive writer (`archive_write`), hashes (`hash`), ELF
//! facts (`elf`), binary formats' integer fields (`fields`), advisory locks (`lock`), progress
//! output (`progress`) and small helpers (`util`). Nothing here knows about recipes, the store
//! or builds.

pub mod archive;
pub mod archive_write;
pub mod beneath;
pub mod elf;
pub mod fields;
pub mod hash;
pub mod lock;
pub mod parallel;
pub mod progress;
pub mod util;
