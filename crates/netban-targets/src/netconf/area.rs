//! The part of the device configuration netban works in, per preset: the subtree filter that
//! reads it, the edit that adds and removes entries, and reading entries back out of `<data>`.
//!
//! - `ssr`: 128T / Juniper SSR, `t128:config/authy:authority/authy:tenant[name]/
//!   authy:member[neighborhood]/authy:address` (a leaf-list of prefixes).
//! - `generic`: the operator's templates (validated once at start-up).
//!
//! Addresses are rendered only from parsed [`Prefix`] values; tenant and neighborhood names are
//! XML-escaped. What it is not: no I/O, no sessions (see `session.rs`), no retries (`mod.rs`).

use super::config::{GenericConfig, NetconfConfig, Preset};
use super::reply::{parse_document, Element};
use crate::TargetError;
use netban_core::Prefix;
use quick_xml::escape::escape;

pub const T128_NS: &str = "http://128technology.com/t128";
pub const AUTHY_NS: &str = "http://128technology.com/t128/config/authority-config";

/// One entry read back: a prefix netban can represent, or the device's text it cannot parse
/// (left alone, logged).
pub type Entry = Result<Prefix, String>;

#[derive(Clone, Debug)]
pub enum Area {
    Ssr {
        tenant: String,
        neighborhood: String,
    },
    Generic(GenericArea),
}

/// Longest leaf text the SSR model allows for tenant and neighborhood names.
const MAX_NAME: usize = 63;

impl Area {
    /// Checks the preset's settings and builds the area from them.
    pub fn from_config(config: &NetconfConfig) -> Result<Area, TargetError> {
        let bad = |msg: String| Err(TargetError::config(msg));
        let area = match config.preset {
            Preset::Ssr => {
                if config.generic.is_some() {
                    return bad("netconf: a [generic] table needs preset = \"generic\"".into());
                }
                let name = |what: &str, v: &Option<String>| match v {
                    Some(v) if !v.is_empty() && v.chars().count() <= MAX_NAME => Ok(v.clone()),
                    Some(v) => Err(TargetError::config(format!(
                        "netconf {what} {v:?}: use 1-{MAX_NAME} characters"
                    ))),
                    None => Err(TargetError::config(format!(
                        "netconf preset \"ssr\" needs {what} (the blacklist tenant's {what})"
                    ))),
                };
                Area::Ssr {
                    tenant: name("tenant", &config.tenant)?,
                    neighborhood: name("neighborhood", &config.neighborhood)?,
                }
            }
            Preset::Generic => {
                if config.tenant.is_some() || config.neighborhood.is_some() {
                    return bad(
                        "netconf: tenant and neighborhood are for preset = \"ssr\"; the \
                                generic preset takes everything from [generic]"
                            .into(),
                    );
                }
                let Some(g) = &config.generic else {
                    return bad(
                        "netconf preset \"generic\" needs a [generic] table with filter, \
                                path, edit, add_entry and remove_entry"
                            .into(),
                    );
                };
                Area::Generic(GenericArea::new(g).map_err(TargetError::config)?)
            }
        };
        Ok(area)
    }

    /// The subtree filter (inside `<filter type="subtree">`).
    pub fn filter(&self) -> String {
        match self {
            Area::Ssr {
                tenant,
                neighborhood,
            } => format!(
                "<config xmlns=\"{T128_NS}\"><authority xmlns=\"{AUTHY_NS}\"><tenant><name>{}</name>\
                 <member><neighborhood>{}</neighborhood><address/></member></tenant></authority>\
                 </config>",
                escape(tenant.as_str()),
                escape(neighborhood.as_str())
            ),
            Area::Generic(g) => g.filter.clone(),
        }
    }

    /// The `<config>` content that adds `add` and removes `remove` in one edit.
    pub fn edit(&self, add: &[Prefix], remove: &[Prefix]) -> String {
        match self {
            Area::Ssr {
                tenant,
                neighborhood,
            } => {
                let mut entries = String::with_capacity(48 * (add.len() + remove.len()));
                for p in add {
                    entries.push_str(&format!("<address>{p}</address>"));
                }
                for p in remove {
                    entries.push_str(&format!("<address nc:operation=\"remove\">{p}</address>"));
                }
                format!(
                    "<config xmlns=\"{T128_NS}\"><authority xmlns=\"{AUTHY_NS}\"><tenant>\
                     <name>{}</name><member><neighborhood>{}</neighborhood>{entries}</member>\
                     </tenant></authority></config>",
                    escape(tenant.as_str()),
                    escape(neighborhood.as_str())
                )
            }
            Area::Generic(g) => g.render(add, remove),
        }
    }

    /// Every entry in `data` (a get-config `<data>` element).
    pub fn entries(&self, data: &Element) -> Vec<Entry> {
        let mut out = Vec::new();
        match self {
            Area::Ssr {
                tenant,
                neighborhood,
            } => {
                let members = data
                    .children
                    .iter()
                    .filter(|c| c.name == "config" && c.ns.as_deref() == Some(T128_NS))
                    .flat_map(|c| c.children_named("authority"))
                    .filter(|a| a.ns.as_deref() == Some(AUTHY_NS))
                    .flat_map(|a| a.children_named("tenant"))
                    .filter(|t| t.child_text("name") == Some(tenant.as_str()))
                    .flat_map(|t| t.children_named("member"))
                    .filter(|m| m.child_text("neighborhood") == Some(neighborhood.as_str()));
                for member in members {
                    out.extend(member.children_named("address").map(|a| entry(&a.text)));
                }
            }
            Area::Generic(g) => collect(data, &g.path, &mut out),
        }
        out
    }

    /// A short description for messages: `tenant "blacklist" member "internet"`.
    pub fn describe(&self) -> String {
        match self {
            Area::Ssr {
                tenant,
                neighborhood,
            } => format!("tenant {tenant:?} member {neighborhood:?}"),
            Area::Generic(g) => format!("the list at {}", g.path.join("/")),
        }
    }
}

/// Parses one leaf's text: a prefix (`a.b.c.d/len`), or a bare address meaning one host.
fn entry(text: &str) -> Entry {
    let t = text.trim();
    Prefix::parse(t).map_err(|_| t.to_string())
}

fn collect(element: &Element, path: &[String], out: &mut Vec<Entry>) {
    let Some((first, rest)) = path.split_first() else {
        out.push(entry(&element.text));
        return;
    };
    for child in element.children_named(first) {
        collect(child, rest, out);
    }
}

/// The generic preset's validated templates.
#[derive(Clone, Debug)]
pub struct GenericArea {
    filter: String,
    path: Vec<String>,
    edit_head: String,
    edit_tail: String,
    add_entry: String,
    remove_entry: String,
}

const ENTRIES: &str = "{{entries}}";

impl GenericArea {
    /// Checks the templates: well-formed XML once filled with a sample, placeholders in place.
    pub fn new(c: &GenericConfig) -> Result<GenericArea, String> {
        let err = |m: String| Err(format!("netconf [generic]: {m}"));
        if c.path.is_empty()
            || c.path
                .iter()
                .any(|p| p.is_empty() || p.contains(['/', ' ', ':']))
        {
            return err(
                "path: list the local element names from the top of <data> down to \
                        the entry leaves, e.g. [\"prefix-lists\", \"prefix-list\", \"prefix\"]"
                    .into(),
            );
        }
        let Some((head, tail)) = c.edit.split_once(ENTRIES) else {
            return err("edit must contain {{entries}} where the entries go".into());
        };
        if tail.contains(ENTRIES) {
            return err("edit must contain {{entries}} once".into());
        }
        for (name, t) in [
            ("add_entry", &c.add_entry),
            ("remove_entry", &c.remove_entry),
        ] {
            if !(t.contains("{{prefix}}") || t.contains("{{address}}")) {
                return err(format!(
                    "{name} must contain {{{{prefix}}}} or {{{{address}}}}"
                ));
            }
        }
        let area = GenericArea {
            filter: c.filter.clone(),
            path: c.path.clone(),
            edit_head: head.to_string(),
            edit_tail: tail.to_string(),
            add_entry: c.add_entry.clone(),
            remove_entry: c.remove_entry.clone(),
        };
        let nc = super::reply::NC_NS;
        let sample = [Prefix::parse("203.0.113.7").expect("sample")];
        for (name, xml) in [
            ("filter", format!("<f>{}</f>", area.filter)),
            (
                "edit with add_entry and remove_entry",
                format!("<c xmlns:nc=\"{nc}\">{}</c>", area.render(&sample, &sample)),
            ),
        ] {
            parse_document(xml.as_bytes())
                .map_err(|e| format!("netconf [generic]: {name} is not well-formed XML: {e}"))?;
        }
        Ok(area)
    }

    fn render(&self, add: &[Prefix], remove: &[Prefix]) -> String {
        let mut out = self.edit_head.clone();
        for p in add {
            out.push_str(&fill(&self.add_entry, p));
        }
        for p in remove {
            out.push_str(&fill(&self.remove_entry, p));
        }
        out.push_str(&self.edit_tail);
        out
    }
}

/// Fills an entry template from a parsed prefix (digits, dots, colons and hex only).
fn fill(template: &str, p: &Prefix) -> String {
    template
        .replace("{{prefix}}", &p.to_string())
        .replace("{{address}}", &p.addr().to_string())
        .replace("{{length}}", &p.len().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Prefix {
        Prefix::parse(s).unwrap()
    }

    fn ssr() -> Area {
        Area::Ssr {
            tenant: "black<list>&".into(),
            neighborhood: "internet".into(),
        }
    }

    #[test]
    fn ssr_edit_escapes_names_and_renders_prefixes() {
        let edit = ssr().edit(
            &[p("203.0.113.7"), p("2001:db8::/48")],
            &[p("198.51.100.9")],
        );
        assert!(
            edit.contains("<name>black&lt;list&gt;&amp;</name>"),
            "{edit}"
        );
        assert!(edit.contains("<address>203.0.113.7/32</address><address>2001:db8::/48</address>"));
        assert!(edit.contains("<address nc:operation=\"remove\">198.51.100.9/32</address>"));
        let doc = format!("<c xmlns:nc=\"{}\">{edit}</c>", super::super::reply::NC_NS);
        assert!(parse_document(doc.as_bytes()).is_ok());
        assert!(parse_document(ssr().filter().as_bytes()).is_ok());
    }

    #[test]
    fn ssr_reads_only_its_tenant_member() {
        let data = parse_document(
            format!(
                r#"<data xmlns="urn:ietf:params:xml:ns:netconf:base:1.0"><config xmlns="{T128_NS}"><authority xmlns="{AUTHY_NS}">
<tenant><name>black&lt;list&gt;&amp;</name>
  <member><neighborhood>internet</neighborhood><address>203.0.113.7/32</address>
    <address> 2001:DB8::1/128 </address><address>10.0.0.1/24</address></member>
  <member><neighborhood>other</neighborhood><address>203.0.113.8/32</address></member></tenant>
<tenant><name>other</name><member><neighborhood>internet</neighborhood><address>203.0.113.9/32</address></member></tenant>
</authority></config></data>"#
            )
            .as_bytes(),
        )
        .unwrap();
        let got = ssr().entries(&data);
        assert_eq!(
            got,
            vec![
                Ok(p("203.0.113.7")),
                Ok(p("2001:db8::1")),
                Err("10.0.0.1/24".into())
            ]
        );
    }

    fn generic() -> GenericConfig {
        GenericConfig {
            filter: r#"<prefix-lists xmlns="urn:example:pl"><prefix-list><name>netban</name></prefix-list></prefix-lists>"#.into(),
            path: vec!["prefix-lists".into(), "prefix-list".into(), "prefix".into()],
            edit: r#"<prefix-lists xmlns="urn:example:pl"><prefix-list><name>netban</name>{{entries}}</prefix-list></prefix-lists>"#.into(),
            add_entry: "<prefix>{{address}}/{{length}}</prefix>".into(),
            remove_entry: r#"<prefix nc:operation="remove">{{prefix}}</prefix>"#.into(),
        }
    }

    #[test]
    fn generic_templates() {
        let area = Area::Generic(GenericArea::new(&generic()).unwrap());
        let edit = area.edit(&[p("203.0.113.0/24")], &[p("2001:db8::1")]);
        assert_eq!(
            edit,
            r#"<prefix-lists xmlns="urn:example:pl"><prefix-list><name>netban</name><prefix>203.0.113.0/24</prefix><prefix nc:operation="remove">2001:db8::1/128</prefix></prefix-list></prefix-lists>"#
        );
        let data = parse_document(
            br#"<data><prefix-lists xmlns="urn:example:pl"><prefix-list><name>netban</name><prefix>203.0.113.7</prefix><prefix>bad</prefix></prefix-list></prefix-lists></data>"#,
        )
        .unwrap();
        assert_eq!(
            area.entries(&data),
            vec![Ok(p("203.0.113.7")), Err("bad".into())]
        );
    }

    #[test]
    fn generic_templates_are_checked() {
        let with = |f: fn(&mut GenericConfig)| {
            let mut c = generic();
            f(&mut c);
            GenericArea::new(&c)
        };
        assert!(with(|c| c.edit = c.edit.replace("{{entries}}", "")).is_err());
        assert!(
            with(|c| c.edit = c.edit.replace("{{entries}}", "{{entries}}{{entries}}")).is_err()
        );
        assert!(with(|c| c.add_entry = "<prefix>x</prefix>".into()).is_err());
        assert!(with(|c| c.add_entry = "<prefix>{{prefix}}".into()).is_err());
        assert!(with(|c| c.filter = "<a>".into()).is_err());
        assert!(with(|c| c.path.clear()).is_err());
        assert!(with(|_| {}).is_ok());
    }

    #[test]
    fn the_preset_decides_the_area() {
        const SSR: &str = r#"{"host": "127.0.0.1", "username": "root", "private_key": "/k",
            "host_key_fingerprint": "SHA256:abc", "preset": "ssr", "tenant": "blacklist",
            "neighborhood": "internet"}"#;
        let area = |json: &str| {
            let config: NetconfConfig = serde_json::from_str(json).unwrap();
            Area::from_config(&config)
        };
        assert!(matches!(area(SSR), Ok(Area::Ssr { ref tenant, .. }) if tenant == "blacklist"));
        let refused = [
            // ssr without its tenant
            SSR.replace(r#""tenant": "blacklist""#, r#""port": 830"#),
            // generic without its [generic] table
            SSR.replace(r#""preset": "ssr""#, r#""preset": "generic""#),
            // a tenant name the SSR model cannot hold
            SSR.replace("blacklist", &"x".repeat(MAX_NAME + 1)),
        ];
        for json in refused {
            assert!(matches!(area(&json), Err(TargetError::Config(_))), "{json}");
        }
    }
}
