//! What RabbitMQ's clients use but the extended spec XML lacks, layered on the parsed spec.
//!
//! connection.blocked / unblocked and connection.update-secret(-ok) are documented in RabbitMQ's
//! "connection.blocked" and "update-secret" extension pages; reply code 312 NO_ROUTE is the code
//! of basic.return for an unroutable mandatory message (RabbitMQ's `rabbit_framing` has it).

use crate::model::{Constant, Field, Method, Spec, Ty};

pub fn apply(spec: &mut Spec) {
    spec.constants.push(Constant {
        name: "no-route".into(),
        value: 312,
        class: Some("soft-error".into()),
    });
    let connection = |name: &str, id: u16, server_receives: bool, fields: &[(&str, Ty)]| Method {
        class_name: "connection".into(),
        class_id: 10,
        name: name.into(),
        id,
        synchronous: false,
        content: false,
        server_receives,
        client_receives: !server_receives,
        fields: fields
            .iter()
            .map(|(name, ty)| Field {
                name: (*name).into(),
                ty: *ty,
            })
            .collect(),
    };
    let extra = [
        connection("blocked", 60, false, &[("reason", Ty::ShortStr)]),
        connection("unblocked", 61, false, &[]),
        connection(
            "update-secret",
            70,
            true,
            &[("new-secret", Ty::LongStr), ("reason", Ty::ShortStr)],
        ),
        connection("update-secret-ok", 71, false, &[]),
    ];
    // Keep connection methods together, in id order, after the spec's own.
    let at = spec
        .methods
        .iter()
        .rposition(|m| m.class_id == 10)
        .map_or(0, |i| i + 1);
    spec.methods.splice(at..at, extra);
}
