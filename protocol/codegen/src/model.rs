//! The spec as data: constants, classes and methods read from the XML, before any code is written.

use std::collections::HashMap;

/// An AMQP wire type, after domains are resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ty {
    Bit,
    Octet,
    Short,
    Long,
    LongLong,
    ShortStr,
    LongStr,
    Timestamp,
    Table,
}

impl Ty {
    pub fn from_spec(name: &str) -> Result<Ty, String> {
        Ok(match name {
            "bit" => Ty::Bit,
            "octet" => Ty::Octet,
            "short" => Ty::Short,
            "long" => Ty::Long,
            "longlong" => Ty::LongLong,
            "shortstr" => Ty::ShortStr,
            "longstr" => Ty::LongStr,
            "timestamp" => Ty::Timestamp,
            "table" => Ty::Table,
            other => return Err(format!("unknown spec type {other:?}")),
        })
    }
}

pub struct Field {
    pub name: String,
    pub ty: Ty,
}

pub struct Method {
    pub class_name: String,
    pub class_id: u16,
    pub name: String,
    pub id: u16,
    pub synchronous: bool,
    pub content: bool,
    /// `<chassis name="server">`: the broker may receive this method.
    pub server_receives: bool,
    /// `<chassis name="client">`: the broker may send this method.
    pub client_receives: bool,
    pub fields: Vec<Field>,
}

pub struct Constant {
    pub name: String,
    pub value: u32,
    /// `soft-error`, `hard-error` or none.
    pub class: Option<String>,
}

pub struct Spec {
    pub constants: Vec<Constant>,
    pub methods: Vec<Method>,
}

/// Reads the spec XML into a [`Spec`], resolving each field's domain to its wire type.
pub fn parse(xml: &str) -> Result<Spec, String> {
    let doc = roxmltree::Document::parse(xml).map_err(|e| e.to_string())?;
    let root = doc.root_element();
    let mut domains = HashMap::new();
    let mut constants = Vec::new();
    let mut methods = Vec::new();
    for node in root.children().filter(|n| n.is_element()) {
        match node.tag_name().name() {
            "domain" => {
                domains.insert(attr(&node, "name")?, Ty::from_spec(&attr(&node, "type")?)?);
            }
            "constant" => constants.push(Constant {
                name: attr(&node, "name")?,
                value: attr(&node, "value")?.parse().map_err(|_| "bad constant")?,
                class: node.attribute("class").map(str::to_owned),
            }),
            _ => {}
        }
    }
    for class in root.children().filter(|n| n.has_tag_name("class")) {
        let class_name = attr(&class, "name")?;
        let class_id: u16 = attr(&class, "index")?
            .parse()
            .map_err(|_| "bad class index")?;
        for m in class.children().filter(|n| n.has_tag_name("method")) {
            let chassis = |side: &str| {
                m.children()
                    .any(|c| c.has_tag_name("chassis") && c.attribute("name") == Some(side))
            };
            let mut fields = Vec::new();
            for f in m.children().filter(|n| n.has_tag_name("field")) {
                let ty = match (f.attribute("type"), f.attribute("domain")) {
                    (Some(t), _) => Ty::from_spec(t)?,
                    (None, Some(d)) => *domains.get(d).ok_or(format!("unknown domain {d}"))?,
                    (None, None) => return Err("field without type".into()),
                };
                fields.push(Field {
                    name: attr(&f, "name")?,
                    ty,
                });
            }
            methods.push(Method {
                class_name: class_name.clone(),
                class_id,
                name: attr(&m, "name")?,
                id: attr(&m, "index")?.parse().map_err(|_| "bad method index")?,
                synchronous: m.attribute("synchronous") == Some("1"),
                content: m.attribute("content") == Some("1"),
                server_receives: chassis("server"),
                client_receives: chassis("client"),
                fields,
            });
        }
    }
    Ok(Spec { constants, methods })
}

fn attr(node: &roxmltree::Node, name: &str) -> Result<String, String> {
    node.attribute(name)
        .map(str::to_owned)
        .ok_or_else(|| format!("<{}> without {name}", node.tag_name().name()))
}
