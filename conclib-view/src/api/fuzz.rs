//! The query of `/api/systems` (and of `/api/reminders`) as the fuzz target `view_query`
//! parses it (feature `fuzzing`, internal; see [`crate::__fuzz`]).

use super::PageQuery;
use crate::table::Sort;

/// Parses `raw` as the page's query; a query that parses, written back as a query
/// string, parses the same (and a sort's name is the name it parsed from).
pub(crate) fn page_query(raw: &str) {
    // The same bytes as a query of `/api/reminders`: refused with a short reason, or
    // parsed within its bounds.
    match crate::reminders::parse(Some(raw)) {
        Ok(query) => assert!(raw.len() <= crate::reminders::MAX_QUERY_LEN, "{query:?}"),
        Err(e) => assert!(e.to_string().len() < 400, "{e}"),
    }
    if let Some(sort) = Sort::parse(raw) {
        assert_eq!(sort.name(), raw);
    }
    let Ok(page) = PageQuery::parse(Some(raw)) else {
        return;
    };
    let mut out = form_urlencoded::Serializer::new(String::new());
    out.append_pair("q", &page.query)
        .append_pair("sort", page.sort.name())
        .append_pair("order", if page.descending { "desc" } else { "asc" })
        .append_pair("limit", &page.limit.to_string())
        .append_pair("offset", &page.offset.to_string());
    for (system, offset) in &page.offsets {
        out.append_pair(&format!("offset.{system}"), &offset.to_string());
    }
    let written = out.finish();
    let again = PageQuery::parse(Some(&written)).expect("a written query parses");
    assert_eq!(again.query, page.query, "{written}");
    assert_eq!(again.id, page.id);
    assert_eq!(again.sort, page.sort);
    assert_eq!(again.descending, page.descending);
    assert_eq!(again.limit, page.limit);
    assert_eq!(again.offset, page.offset);
    assert_eq!(again.offsets, page.offsets);
}
