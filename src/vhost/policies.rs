//! A vhost's policies and operator policies (`src/policy.rs` has the rules): kept here, written
//! to the store, and applied to every matching queue and exchange whenever one is set or
//! cleared, and to each new queue or exchange when it is declared.
//!
//! Lock order: the policy list (`RwLock`) is taken before any queue's state lock and never
//! while holding one; it is held while a change is applied, so a declare that races a policy
//! change cannot leave a queue with the older policy.

use crate::exchange::Exchange;
use crate::queue::policy::{self, Applied, Policy, PolicyKind, Target};
use crate::queue::Queue;
use crate::store::definitions::PolicyDef;
use crate::vhost::VHost;
use std::sync::Arc;
use tracing::warn;

/// The store's name of a policy kind.
pub fn kind_name(kind: PolicyKind) -> &'static str {
    match kind {
        PolicyKind::User => "policy",
        PolicyKind::Operator => "operator_policy",
    }
}

impl VHost {
    /// The policies of `kind`, by name.
    pub fn policies(&self, kind: PolicyKind) -> Vec<Arc<Policy>> {
        let mut out: Vec<Arc<Policy>> = self
            .policies
            .read()
            .iter()
            .filter(|p| p.kind == kind)
            .cloned()
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// Sets a policy (replacing one of the same kind and name), writes it down and applies it.
    /// Returns whether it is new.
    pub fn put_policy(&self, policy: Policy) -> bool {
        if let Some(store) = self.store() {
            store.put_policy(policy_def(&policy));
        }
        self.set_policy(policy)
    }

    /// Clears a policy; returns whether it existed.
    pub fn delete_policy(&self, kind: PolicyKind, name: &str) -> bool {
        let mut list = self.policies.write();
        let before = list.len();
        list.retain(|p| !(p.kind == kind && p.name == name));
        if list.len() == before {
            return false;
        }
        if let Some(store) = self.store() {
            store.remove_policy(&self.name, kind_name(kind), name);
        }
        self.apply_to_all(&list);
        true
    }

    /// A policy read back from the store at startup (before the queues are restored).
    pub(crate) fn restore_policy(&self, def: &PolicyDef) {
        let kind = match def.kind.as_str() {
            "operator_policy" => PolicyKind::Operator,
            _ => PolicyKind::User,
        };
        let definition = serde_json::from_str(&def.definition).unwrap_or_default();
        match Policy::new(
            kind,
            &def.vhost,
            &def.name,
            &def.pattern,
            &def.apply_to,
            def.priority,
            definition,
        ) {
            Ok(p) => {
                self.set_policy(p);
            }
            Err(reason) => warn!(policy = %def.name, reason, "could not restore a policy"),
        }
    }

    fn set_policy(&self, policy: Policy) -> bool {
        let mut list = self.policies.write();
        let existed = list
            .iter()
            .position(|p| p.kind == policy.kind && p.name == policy.name);
        match existed {
            Some(i) => list[i] = Arc::new(policy),
            None => list.push(Arc::new(policy)),
        }
        self.apply_to_all(&list);
        existed.is_none()
    }

    /// Applies the policies now in force to a queue just declared.
    pub(crate) fn apply_policies_to_queue(&self, q: &Arc<Queue>) {
        let list = self.policies.read();
        if !list.is_empty() {
            q.apply_policy(applied_for(
                &list,
                &q.name,
                Target::Queue(q.queue_type().name()),
            ));
        }
    }

    /// Applies the policies now in force to an exchange just declared.
    pub(crate) fn apply_policies_to_exchange(&self, x: &Exchange) {
        let list = self.policies.read();
        if !list.is_empty() {
            x.apply_policy(applied_for(&list, &x.name, Target::Exchange));
        }
    }

    fn apply_to_all(&self, list: &[Arc<Policy>]) {
        let queues: Vec<Arc<Queue>> = self.queues.iter().map(|q| q.value().clone()).collect();
        for q in queues {
            q.apply_policy(applied_for(
                list,
                &q.name,
                Target::Queue(q.queue_type().name()),
            ));
        }
        let exchanges: Vec<Arc<Exchange>> =
            self.exchanges.iter().map(|x| x.value().clone()).collect();
        for x in exchanges.iter().filter(|x| !x.name.is_empty()) {
            x.apply_policy(applied_for(list, &x.name, Target::Exchange));
        }
    }
}

/// What applies to `name`: the best policy merged with the best operator policy.
fn applied_for(list: &[Arc<Policy>], name: &str, target: Target<'_>) -> Applied {
    let of = |kind: PolicyKind| {
        policy::best(
            list.iter().filter(|p| p.kind == kind).map(|p| &**p),
            name,
            target,
        )
    };
    Applied::merge(of(PolicyKind::User), of(PolicyKind::Operator))
}

fn policy_def(p: &Policy) -> PolicyDef {
    PolicyDef {
        vhost: p.vhost.clone(),
        kind: kind_name(p.kind).into(),
        name: p.name.clone(),
        pattern: p.pattern.clone(),
        apply_to: p.apply_to.name().into(),
        priority: p.priority,
        definition: serde_json::Value::Object(p.definition.clone()).to_string(),
    }
}
