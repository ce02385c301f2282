//! What a namespace and a system id may be: both become parts of Redis key names. Apart
//! from the configuration because a proxy checks the system id it serves under with them
//! too, and that id may not come from the configuration (by default it is the actor
//! system's name).

/// Namespaces and system ids become parts of key names: printable, no whitespace, no `{}`.
pub(super) fn check_name(what: &str, s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 128 {
        return Err(format!("the {what} must be 1 to 128 bytes long, got {s:?}"));
    }
    if let Some(c) = s
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || *c == '{' || *c == '}')
    {
        return Err(format!(
            "the {what} {s:?} contains {c:?}: no whitespace, control characters or braces"
        ));
    }
    Ok(())
}

pub(crate) fn check_system_id(id: &str) -> Result<(), String> {
    check_name("system id", id)?;
    if id.starts_with(crate::protocol::GROUP_MARK) {
        return Err(format!(
            "the system id {id:?} starts with '~': such ids name groups of systems"
        ));
    }
    Ok(())
}
