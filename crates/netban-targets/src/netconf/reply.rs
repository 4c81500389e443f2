//! Reading what a NETCONF server sends: the `<hello>` (capabilities, session id) and
//! `<rpc-reply>` (`<ok/>`, `<data>`, typed `<rpc-error>`s), parsed with quick-xml into a small
//! namespace-aware element tree.
//!
//! What it is not: it knows nothing of SSR tenants or ban entries (see `area.rs`), and it does
//! not write XML (see `rpc.rs`).

use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use quick_xml::NsReader;
use std::fmt;

/// The deepest nesting accepted. NETCONF replies netban reads are about ten levels deep; a
/// limit keeps a hostile document from exhausting the stack (the tree is dropped
/// recursively) or memory one level at a time.
pub const MAX_DEPTH: usize = 64;
/// The most elements one document may have: a listing of a million ban entries (one element
/// each in the SSR preset) fits twice; a 256 MB document of `<a/>` (64 million elements,
/// about 10 GB as a tree) does not. As a tree, 2 million elements are a few hundred MB.
pub const MAX_ELEMENTS: usize = 2_000_000;

/// The NETCONF base namespace.
pub const NC_NS: &str = "urn:ietf:params:xml:ns:netconf:base:1.0";

/// One element of a parsed document: namespace, local name, attributes (local name, value),
/// text (concatenated, untrimmed) and children.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Element {
    pub ns: Option<String>,
    pub name: String,
    pub attrs: Vec<(String, String)>,
    pub text: String,
    pub children: Vec<Element>,
}

impl Element {
    /// The first child with this local name (any namespace).
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// Every child with this local name (any namespace).
    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> {
        self.children.iter().filter(move |c| c.name == name)
    }

    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The text of the first child of this name, trimmed.
    pub fn child_text(&self, name: &str) -> Option<&str> {
        self.child(name).map(|c| c.text.trim())
    }

    fn is(&self, ns: &str, name: &str) -> bool {
        self.name == name && self.ns.as_deref() == Some(ns)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    #[error("malformed XML from the server: {0}")]
    Xml(String),
    #[error("unexpected message from the server: {0}")]
    Unexpected(String),
    #[error("XML from the server nests deeper than {MAX_DEPTH} elements; netban stops there")]
    TooDeep,
    #[error("XML from the server has more than {MAX_ELEMENTS} elements; netban stops there")]
    TooManyElements,
}

/// Parses one whole XML document into its root element, refusing more than [`MAX_DEPTH`]
/// levels or [`MAX_ELEMENTS`] elements. No DTD is read and no entity but the five predefined
/// ones and character references is expanded (quick-xml's `unescape`), so there is no entity
/// expansion to bound.
pub fn parse_document(bytes: &[u8]) -> Result<Element, ParseError> {
    parse_bounded(bytes, MAX_DEPTH, MAX_ELEMENTS)
}

fn parse_bounded(
    bytes: &[u8],
    max_depth: usize,
    max_elements: usize,
) -> Result<Element, ParseError> {
    let text = std::str::from_utf8(bytes).map_err(|e| ParseError::Xml(e.to_string()))?;
    let mut reader = NsReader::from_str(text);
    let mut stack: Vec<Element> = Vec::new();
    let mut root = None;
    let mut elements = 0usize;
    loop {
        let position = reader.buffer_position();
        let (ns, event) = reader
            .read_resolved_event()
            .map_err(|e| ParseError::Xml(format!("after byte {position}: {e}")))?;
        match event {
            Event::Start(ref start) | Event::Empty(ref start) => {
                elements += 1;
                if elements > max_elements {
                    return Err(ParseError::TooManyElements);
                }
                if stack.len() >= max_depth {
                    return Err(ParseError::TooDeep);
                }
                let mut element = Element {
                    ns: namespace(&ns),
                    name: String::from_utf8_lossy(start.local_name().as_ref()).into_owned(),
                    ..Element::default()
                };
                for attr in start.attributes() {
                    let attr = attr.map_err(|e| ParseError::Xml(e.to_string()))?;
                    let key = attr.key;
                    if key.as_namespace_binding().is_some() {
                        continue;
                    }
                    let value = attr
                        .unescape_value()
                        .map_err(|e| ParseError::Xml(e.to_string()))?;
                    element.attrs.push((
                        String::from_utf8_lossy(key.local_name().as_ref()).into_owned(),
                        value.into_owned(),
                    ));
                }
                if matches!(event, Event::Start(_)) {
                    stack.push(element);
                } else {
                    attach(&mut stack, &mut root, element);
                }
            }
            Event::End(_) => {
                let element = stack
                    .pop()
                    .ok_or_else(|| ParseError::Xml("unbalanced end tag".into()))?;
                attach(&mut stack, &mut root, element);
            }
            Event::Text(t) => {
                if let Some(top) = stack.last_mut() {
                    let s = t.unescape().map_err(|e| ParseError::Xml(e.to_string()))?;
                    top.text.push_str(&s);
                }
            }
            Event::CData(c) => {
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&String::from_utf8_lossy(&c));
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !stack.is_empty() {
        return Err(ParseError::Xml("document ended inside an element".into()));
    }
    root.ok_or_else(|| ParseError::Xml("empty document".into()))
}

fn namespace(ns: &ResolveResult) -> Option<String> {
    match ns {
        ResolveResult::Bound(n) => Some(String::from_utf8_lossy(n.as_ref()).into_owned()),
        _ => None,
    }
}

fn attach(stack: &mut [Element], root: &mut Option<Element>, element: Element) {
    match stack.last_mut() {
        Some(parent) => parent.children.push(element),
        None => *root = Some(element),
    }
}

/// The server's `<hello>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hello {
    pub capabilities: Vec<String>,
    pub session_id: Option<u32>,
}

impl Hello {
    pub fn parse(bytes: &[u8]) -> Result<Hello, ParseError> {
        let root = parse_document(bytes)?;
        if !root.is(NC_NS, "hello") {
            return Err(ParseError::Unexpected(format!(
                "expected <hello>, got <{}>",
                root.name
            )));
        }
        let capabilities = root
            .child("capabilities")
            .map(|c| {
                c.children_named("capability")
                    .map(|c| c.text.trim().to_string())
                    .collect()
            })
            .unwrap_or_default();
        let session_id = root.child_text("session-id").and_then(|s| s.parse().ok());
        Ok(Hello {
            capabilities,
            session_id,
        })
    }

    /// True if a capability with this URI (ignoring `?parameters`) was advertised.
    pub fn has(&self, uri: &str) -> bool {
        self.capabilities
            .iter()
            .any(|c| c.split('?').next() == Some(uri))
    }
}

/// The RFC 6241 error tags (Appendix A); anything else is kept as `Other`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ErrorTag {
    InUse,
    InvalidValue,
    TooBig,
    MissingAttribute,
    BadAttribute,
    UnknownAttribute,
    MissingElement,
    BadElement,
    UnknownElement,
    UnknownNamespace,
    AccessDenied,
    LockDenied,
    ResourceDenied,
    RollbackFailed,
    DataExists,
    DataMissing,
    OperationNotSupported,
    OperationFailed,
    MalformedMessage,
    Other(String),
}

impl ErrorTag {
    fn parse(s: &str) -> ErrorTag {
        match s {
            "in-use" => ErrorTag::InUse,
            "invalid-value" => ErrorTag::InvalidValue,
            "too-big" => ErrorTag::TooBig,
            "missing-attribute" => ErrorTag::MissingAttribute,
            "bad-attribute" => ErrorTag::BadAttribute,
            "unknown-attribute" => ErrorTag::UnknownAttribute,
            "missing-element" => ErrorTag::MissingElement,
            "bad-element" => ErrorTag::BadElement,
            "unknown-element" => ErrorTag::UnknownElement,
            "unknown-namespace" => ErrorTag::UnknownNamespace,
            "access-denied" => ErrorTag::AccessDenied,
            "lock-denied" => ErrorTag::LockDenied,
            "resource-denied" => ErrorTag::ResourceDenied,
            "rollback-failed" => ErrorTag::RollbackFailed,
            "data-exists" => ErrorTag::DataExists,
            "data-missing" => ErrorTag::DataMissing,
            "operation-not-supported" => ErrorTag::OperationNotSupported,
            "operation-failed" => ErrorTag::OperationFailed,
            "malformed-message" => ErrorTag::MalformedMessage,
            other => ErrorTag::Other(other.to_string()),
        }
    }
}

/// One `<rpc-error>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RpcError {
    /// transport, rpc, protocol or application.
    pub error_type: String,
    pub tag: ErrorTag,
    /// The tag as sent.
    pub tag_text: String,
    /// error or warning.
    pub severity: String,
    pub app_tag: Option<String>,
    pub path: Option<String>,
    pub message: Option<String>,
    /// `<error-info>` children as (local name, text), e.g. ("session-id", "7").
    pub info: Vec<(String, String)>,
}

impl RpcError {
    fn parse(e: &Element) -> RpcError {
        let text = |name: &str| e.child_text(name).map(str::to_string);
        let tag_text = text("error-tag").unwrap_or_default();
        RpcError {
            error_type: text("error-type").unwrap_or_default(),
            tag: ErrorTag::parse(&tag_text),
            tag_text,
            severity: text("error-severity").unwrap_or_else(|| "error".into()),
            app_tag: text("error-app-tag"),
            path: text("error-path"),
            message: text("error-message"),
            info: e
                .child("error-info")
                .map(|i| {
                    i.children
                        .iter()
                        .map(|c| (c.name.clone(), c.text.trim().to_string()))
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    /// The session holding a lock (`<error-info><session-id>` of a lock-denied error).
    pub fn session_id(&self) -> Option<u32> {
        self.info
            .iter()
            .find(|(n, _)| n == "session-id")
            .and_then(|(_, v)| v.parse().ok())
    }

    pub fn is_warning(&self) -> bool {
        self.severity == "warning"
    }
}

impl fmt::Display for RpcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({} error", self.tag_text, self.error_type)?;
        if let Some(app) = &self.app_tag {
            write!(f, ", {app}")?;
        }
        f.write_str(")")?;
        if let Some(m) = &self.message {
            write!(f, ": {m}")?;
        }
        if let Some(p) = &self.path {
            write!(f, " at {p}")?;
        }
        if let Some(id) = self.session_id() {
            write!(f, " (session {id})")?;
        }
        Ok(())
    }
}

/// One `<rpc-reply>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub message_id: Option<String>,
    pub ok: bool,
    /// Errors of severity `error` (warnings are in `warnings`).
    pub errors: Vec<RpcError>,
    pub warnings: Vec<RpcError>,
    /// The `<data>` element of a get/get-config reply.
    pub data: Option<Element>,
}

impl Reply {
    /// Parses a message; `Ok(None)` for a `<notification>` (not a reply).
    pub fn parse(bytes: &[u8]) -> Result<Option<Reply>, ParseError> {
        let root = parse_document(bytes)?;
        if root.name == "notification" {
            return Ok(None);
        }
        if !root.is(NC_NS, "rpc-reply") {
            return Err(ParseError::Unexpected(format!(
                "expected <rpc-reply>, got <{}>",
                root.name
            )));
        }
        let message_id = root.attr("message-id").map(str::to_string);
        let ok = root.child("ok").is_some();
        let (warnings, errors): (Vec<RpcError>, Vec<RpcError>) = root
            .children_named("rpc-error")
            .map(RpcError::parse)
            .partition(RpcError::is_warning);
        let mut root = root;
        let data = root
            .children
            .iter()
            .position(|c| c.name == "data")
            .map(|i| root.children.swap_remove(i));
        Ok(Some(Reply {
            message_id,
            ok,
            errors,
            warnings,
            data,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_capabilities_and_session() {
        let h = Hello::parse(
            br#"<?xml version="1.0" encoding="UTF-8"?>
<hello xmlns="urn:ietf:params:xml:ns:netconf:base:1.0"><capabilities>
<capability>urn:ietf:params:netconf:base:1.1</capability>
<capability>urn:ietf:params:netconf:capability:with-defaults:1.0?basic-mode=explicit&amp;x=y</capability>
</capabilities><session-id>7</session-id></hello>"#,
        )
        .unwrap();
        assert!(h.has("urn:ietf:params:netconf:base:1.1"));
        assert!(h.has("urn:ietf:params:netconf:capability:with-defaults:1.0"));
        assert!(!h.has("urn:ietf:params:netconf:base:1.0"));
        assert_eq!(h.session_id, Some(7));
        assert!(
            Hello::parse(b"<hello/>").is_err(),
            "no namespace is not a NETCONF hello"
        );
    }

    #[test]
    fn lock_denied_error_with_holder() {
        let r = Reply::parse(
            br#"<rpc-reply message-id="3" xmlns="urn:ietf:params:xml:ns:netconf:base:1.0">
  <rpc-error>
    <error-type>protocol</error-type><error-tag>lock-denied</error-tag>
    <error-severity>error</error-severity>
    <error-message xml:lang="en">lock denied &amp; held</error-message>
    <error-info><session-id>12</session-id></error-info>
  </rpc-error></rpc-reply>"#,
        )
        .unwrap()
        .unwrap();
        assert_eq!(r.message_id.as_deref(), Some("3"));
        assert!(!r.ok);
        let e = &r.errors[0];
        assert_eq!(e.tag, ErrorTag::LockDenied);
        assert_eq!(e.session_id(), Some(12));
        assert_eq!(e.message.as_deref(), Some("lock denied & held"));
        assert_eq!(
            e.to_string(),
            "lock-denied (protocol error): lock denied & held (session 12)"
        );
    }

    #[test]
    fn data_with_namespaces_and_warnings() {
        let r = Reply::parse(
            br#"<nc:rpc-reply message-id="1" xmlns:nc="urn:ietf:params:xml:ns:netconf:base:1.0">
<nc:rpc-error><nc:error-type>application</nc:error-type><nc:error-tag>operation-failed</nc:error-tag>
<nc:error-severity>warning</nc:error-severity></nc:rpc-error>
<nc:data><config xmlns="http://128technology.com/t128"><a:authority xmlns:a="urn:x"/></config></nc:data>
</nc:rpc-reply>"#,
        )
        .unwrap()
        .unwrap();
        assert!(r.errors.is_empty());
        assert_eq!(r.warnings.len(), 1);
        let data = r.data.unwrap();
        let config = data.child("config").unwrap();
        assert_eq!(config.ns.as_deref(), Some("http://128technology.com/t128"));
        assert_eq!(
            config.child("authority").unwrap().ns.as_deref(),
            Some("urn:x")
        );
    }

    #[test]
    fn notifications_are_not_replies_and_garbage_is_an_error() {
        assert_eq!(
            Reply::parse(
                b"<notification xmlns=\"urn:ietf:params:xml:ns:netconf:notification:1.0\"/>"
            )
            .unwrap(),
            None
        );
        assert!(Reply::parse(b"<rpc-reply><ok/>").is_err());
        assert!(
            Reply::parse(b"<other xmlns=\"urn:ietf:params:xml:ns:netconf:base:1.0\"/>").is_err()
        );
    }

    #[test]
    fn depth_and_size_are_bounded() {
        let nested = |depth: usize| format!("{}{}", "<a>".repeat(depth), "</a>".repeat(depth));
        assert!(parse_document(nested(MAX_DEPTH).as_bytes()).is_ok());
        assert_eq!(
            parse_document(nested(MAX_DEPTH + 1).as_bytes()),
            Err(ParseError::TooDeep)
        );
        // A million levels would overflow the stack when the tree is dropped; refused early.
        assert_eq!(
            parse_document(nested(1_000_000).as_bytes()),
            Err(ParseError::TooDeep)
        );
        // The element limit, with a small limit (the real one builds a few hundred MB).
        let flat = |n: usize| format!("<r>{}</r>", "<a/>".repeat(n));
        assert!(parse_bounded(flat(999).as_bytes(), MAX_DEPTH, 1_000).is_ok());
        assert_eq!(
            parse_bounded(flat(1_000).as_bytes(), MAX_DEPTH, 1_000),
            Err(ParseError::TooManyElements)
        );
    }

    #[test]
    fn entities_are_not_expanded() {
        let bomb = br#"<?xml version="1.0"?>
<!DOCTYPE r [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>
<rpc-reply xmlns="urn:ietf:params:xml:ns:netconf:base:1.0"><data>&b;</data></rpc-reply>"#;
        assert!(matches!(parse_document(bomb), Err(ParseError::Xml(_))));
    }
}
