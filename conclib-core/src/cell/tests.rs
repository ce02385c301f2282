//! The cell: its stop reason, its flags, its layout.

use std::mem::offset_of;

use super::ActorCell;
use super::erased::{CellCore, Stats};

struct Idle;
impl crate::actor::Actor for Idle {}

/// An actor that hands its asks on says so (its asks' timers are armed at the first
/// wait), and the cell keeps its default timeout apart from the flag.
#[test]
fn the_hands_on_flag_and_the_ask_timeout_are_kept_apart() {
    use crate::actor_id::ActorId;
    use std::time::Duration;
    let core = |hands_on| {
        CellCore::new(
            ActorId(1),
            None,
            None,
            std::any::type_name::<()>,
            Duration::from_secs(30),
            hands_on,
        )
    };
    assert!(core(true).hands_on());
    assert!(!core(false).hands_on());
    assert_eq!(core(true).ask_timeout(), Duration::from_secs(30));
}

/// The first reason stays; the two without text point to statics, the others are boxed
/// and freed with the cell.
#[test]
fn a_stop_reason_is_set_once() {
    use super::erased::ReasonCell;
    use crate::error::StopReason;
    let reason = ReasonCell::new();
    assert!(reason.get().is_none());
    reason.set(StopReason::Panicked("boom".into()));
    reason.set(StopReason::Normal);
    assert_eq!(reason.get(), Some(&StopReason::Panicked("boom".into())));
    let killed = ReasonCell::new();
    killed.set(StopReason::Killed);
    killed.set(StopReason::Failed("later".into()));
    assert_eq!(killed.get(), Some(&StopReason::Killed));
}

/// The layout `CellCore` promises: 128 bytes between what the actor's task writes per
/// message and the mailbox, 112 between it and the allocation's start (`Arc`'s 16
/// bytes of counts and malloc's 8 bytes of size come before the cell).
#[test]
fn the_task_line_is_apart() {
    let task_line = offset_of!(CellCore, stats) + offset_of!(Stats, handled);
    let task_line_end = offset_of!(CellCore, stats) + size_of::<Stats>();
    let mailbox = offset_of!(ActorCell<Idle>, mailbox);
    assert_eq!(offset_of!(ActorCell<Idle>, core), 0);
    assert!(
        mailbox - task_line >= 128,
        "the task's line at {task_line}, the mailbox at {mailbox}"
    );
    assert!(task_line_end - task_line <= 16);
    assert!(task_line + 16 + 8 >= 112, "the task's line at {task_line}");
}

/// Two stops set at once and a reader meanwhile, in every interleaving loom finds: the
/// first reason set stays, a reader sees none or that one, and the other (boxed) reason is
/// freed by its setter, never published (`cargo xtask test` runs it: `--cfg conclib_loom`).
#[cfg(conclib_loom)]
#[test]
fn loom_the_first_reason_set_stays_for_every_reader() {
    use super::erased::ReasonCell;
    use crate::error::StopReason;
    loom::model(|| {
        let cell = loom::sync::Arc::new(ReasonCell::new());
        let setters: Vec<_> = [StopReason::Panicked("boom".into()), StopReason::Killed]
            .into_iter()
            .map(|reason| {
                let cell = cell.clone();
                loom::thread::spawn(move || cell.set(reason))
            })
            .collect();
        let reader = {
            let cell = cell.clone();
            loom::thread::spawn(move || cell.get().cloned())
        };
        for setter in setters {
            setter.join().unwrap();
        }
        let seen = reader.join().unwrap();
        let last = cell.get().cloned().expect("a reason once both set one");
        assert!(matches!(last, StopReason::Panicked(_) | StopReason::Killed));
        if let Some(seen) = seen {
            assert_eq!(seen, last, "a reason, once seen, never changes");
        }
    });
}
