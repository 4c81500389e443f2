//! Writing NETCONF messages: our `<hello>` and the RFC 6241 operations netban uses
//! (get-config with a subtree filter, edit-config, lock/unlock, discard-changes, commit and
//! confirmed commit, close-session), each wrapped in an `<rpc message-id>`.
//!
//! Every value that is not a fixed protocol keyword is escaped with quick-xml; the configuration
//! fragments passed in are produced by `area.rs` from parsed prefixes (or are the operator's
//! validated templates). What it is not: it does not read replies (`reply.rs`).

use super::reply::NC_NS;
use quick_xml::escape::escape;

pub const BASE_1_0: &str = "urn:ietf:params:netconf:base:1.0";
pub const BASE_1_1: &str = "urn:ietf:params:netconf:base:1.1";
pub const CANDIDATE: &str = "urn:ietf:params:netconf:capability:candidate:1.0";
pub const CONFIRMED_COMMIT_1_1: &str = "urn:ietf:params:netconf:capability:confirmed-commit:1.1";
pub const CONFIRMED_COMMIT_1_0: &str = "urn:ietf:params:netconf:capability:confirmed-commit:1.0";
pub const ROLLBACK_ON_ERROR: &str = "urn:ietf:params:netconf:capability:rollback-on-error:1.0";

/// A configuration datastore.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Datastore {
    Running,
    Candidate,
}

impl Datastore {
    fn tag(self) -> &'static str {
        match self {
            Datastore::Running => "<running/>",
            Datastore::Candidate => "<candidate/>",
        }
    }
}

/// Our hello: base:1.0 and base:1.1 (the session picks 1.1 when the server has it too).
pub fn hello() -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<hello xmlns=\"{NC_NS}\"><capabilities>\
         <capability>{BASE_1_0}</capability><capability>{BASE_1_1}</capability>\
         </capabilities></hello>"
    )
}

/// Wraps one operation in an `<rpc>` with its message id.
pub fn envelope(message_id: u64, operation: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <rpc message-id=\"{message_id}\" xmlns=\"{NC_NS}\">{operation}</rpc>"
    )
}

/// `<get-config>` of `source`, with a subtree filter when given (`filter` is XML).
pub fn get_config(source: Datastore, filter: Option<&str>) -> String {
    let filter = filter
        .map(|f| format!("<filter type=\"subtree\">{f}</filter>"))
        .unwrap_or_default();
    format!(
        "<get-config><source>{}</source>{filter}</get-config>",
        source.tag()
    )
}

/// `<edit-config>` with default-operation merge; `config` is the content of `<config>`, which
/// declares the `nc` prefix so fragments can say `nc:operation="remove"`.
pub fn edit_config(target: Datastore, config: &str, rollback_on_error: bool) -> String {
    let error_option = if rollback_on_error {
        "<error-option>rollback-on-error</error-option>"
    } else {
        ""
    };
    format!(
        "<edit-config><target>{}</target><default-operation>merge</default-operation>\
         {error_option}<config xmlns:nc=\"{NC_NS}\">{config}</config></edit-config>",
        target.tag()
    )
}

pub fn lock(target: Datastore) -> String {
    format!("<lock><target>{}</target></lock>", target.tag())
}

pub fn unlock(target: Datastore) -> String {
    format!("<unlock><target>{}</target></unlock>", target.tag())
}

pub fn discard_changes() -> String {
    "<discard-changes/>".to_string()
}

/// `<commit/>`, or a confirmed commit that the server rolls back unless confirmed within
/// `confirm_timeout_secs` (with a persist id when the server speaks confirmed-commit:1.1, so
/// the confirmation may come from another session).
pub fn commit(confirmed: Option<(u64, Option<&str>)>) -> String {
    match confirmed {
        None => "<commit/>".to_string(),
        Some((secs, persist)) => {
            let persist = persist
                .map(|p| format!("<persist>{}</persist>", escape(p)))
                .unwrap_or_default();
            format!(
                "<commit><confirmed/><confirm-timeout>{secs}</confirm-timeout>{persist}</commit>"
            )
        }
    }
}

/// The confirming commit of a confirmed commit (with its persist id, if one was given).
pub fn confirm_commit(persist: Option<&str>) -> String {
    match persist {
        None => "<commit/>".to_string(),
        Some(p) => format!("<commit><persist-id>{}</persist-id></commit>", escape(p)),
    }
}

pub fn close_session() -> String {
    "<close-session/>".to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netconf::reply::parse_document;

    #[test]
    fn every_operation_is_well_formed() {
        for op in [
            get_config(Datastore::Running, Some("<config xmlns=\"urn:x\"/>")),
            get_config(Datastore::Candidate, None),
            edit_config(Datastore::Candidate, "<a nc:operation=\"remove\"/>", true),
            lock(Datastore::Candidate),
            unlock(Datastore::Running),
            discard_changes(),
            commit(None),
            commit(Some((60, Some("netban<&>")))),
            confirm_commit(Some("netban<&>")),
            close_session(),
        ] {
            let doc = envelope(7, &op);
            let root = parse_document(doc.as_bytes()).unwrap_or_else(|e| panic!("{doc}: {e}"));
            assert_eq!(
                (root.name.as_str(), root.attr("message-id")),
                ("rpc", Some("7"))
            );
        }
        let doc = envelope(1, &commit(Some((60, Some("a<b")))));
        let root = parse_document(doc.as_bytes()).unwrap();
        assert_eq!(
            root.child("commit").unwrap().child_text("persist"),
            Some("a<b")
        );
        assert!(parse_document(hello().as_bytes()).is_ok());
    }
}
