//! Joining a group: the scale-out room enters the member (`scale/group.rs`), the serving
//! room reads its streams (`serve/read.rs`). Here, above both, so that neither calls the
//! other back.

use std::sync::Arc;

use super::scale::group::{self, GroupOf};
use super::serve::read;
use super::shared::Shared;
use crate::error::ServeError;

/// Makes this system (`shared`: its own proxy) a member of a group, and returns once the
/// member reads the group's stream.
pub(super) async fn join_group(shared: &Arc<Shared>, of: GroupOf<'_>) -> Result<(), ServeError> {
    let Some(entered) = group::enter(shared, of).await? else {
        return Ok(());
    };
    // The fast lane first: a request already waiting there goes before the backlog.
    let (fast_reader, fast_writer) = read::start_reading(&entered.fast, entered.block);
    let (reader, writer) = read::start_reading(&entered.member, entered.block);
    group::serve(
        shared,
        entered,
        vec![fast_reader, fast_writer, reader, writer],
    )
    .await;
    Ok(())
}
