//! jemalloc settings applied at start, before the runtime's threads exist (their arenas take
//! the defaults set here): memory a drained queue freed goes back to the OS within seconds,
//! also when the broker is idle afterwards.
//!
//! Without background threads jemalloc purges only while the arena that freed the memory keeps
//! allocating, so an idle broker kept the RSS of its deepest queue for good (103–148 MB after a
//! 1 M-message backlog drained, idle 6 MB; issue 16). With a background thread per arena pool
//! and a short dirty decay, freed pages are returned (`MADV_DONTNEED`, muzzy decay 0: a
//! `MADV_FREE`d page would still count in RSS until the kernel wants it) within ~2 s.

use tikv_jemalloc_ctl::{background_thread, Access, AsName};

/// How long freed dirty pages stay in an arena for reuse before they are purged.
pub const DIRTY_DECAY_MS: isize = 2_000;

/// Applies the settings; returns what failed (the broker runs on jemalloc's defaults then).
pub fn configure() -> Result<(), String> {
    let set = |name: &'static [u8], value: isize| {
        name.name()
            .write(value)
            .map_err(|e| format!("{}: {e}", String::from_utf8_lossy(&name[..name.len() - 1])))
    };
    // Defaults for arenas made from now on, and arena 0, which exists already.
    set(b"arenas.dirty_decay_ms\0", DIRTY_DECAY_MS)?;
    set(b"arenas.muzzy_decay_ms\0", 0)?;
    set(b"arena.0.dirty_decay_ms\0", DIRTY_DECAY_MS)?;
    set(b"arena.0.muzzy_decay_ms\0", 0)?;
    background_thread::write(true).map_err(|e| format!("background_thread: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_settings_take() {
        configure().expect("jemalloc accepts the settings");
        let read = |name: &'static [u8]| -> isize { name.name().read().expect("readable") };
        assert_eq!(read(b"arenas.dirty_decay_ms\0"), DIRTY_DECAY_MS);
        assert_eq!(read(b"arena.0.muzzy_decay_ms\0"), 0);
        assert!(background_thread::read().expect("readable"));
    }
}
