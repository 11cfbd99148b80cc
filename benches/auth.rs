//! Criterion benchmarks of the per-channel permission cache: what a publish pays for its
//! write check as guest (`.*`), as a restricted user (cache hit), and for a topic permission.
//! Run: `cargo bench --bench auth`.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use warren::auth::{Access, AccessControl, AuthUser};

fn bench_checks(c: &mut Criterion) {
    let ac = AccessControl::default();
    ac.add("guest", "guest", true);
    ac.add_user("app", "pw", vec![]).expect("new user");
    ac.set_permissions("app", "/", "^app-", "^app-", "^app-")
        .expect("valid");
    ac.set_topic_permissions("app", "/", "amq.topic", "^app\\.", ".*")
        .expect("valid");
    let user = |name: &str| AuthUser {
        name: name.into(),
        tags: vec![].into(),
    };
    let mut guest = ac
        .open_channel(&user("guest"), "/", None, 0)
        .expect("channel");
    let mut app = ac
        .open_channel(&user("app"), "/", None, 0)
        .expect("channel");
    let mut group = c.benchmark_group("publish_check");
    group.bench_function("guest_match_all", |b| {
        b.iter(|| guest.check_exchange(Access::Write, black_box("app-orders")))
    });
    group.bench_function("restricted_cache_hit", |b| {
        b.iter(|| app.check_exchange(Access::Write, black_box("app-orders")))
    });
    group.bench_function("restricted_topic_cache_hit", |b| {
        b.iter(|| app.check_topic(Access::Write, "amq.topic", black_box("app.orders.eu")))
    });
    group.bench_function("topic_without_entry", |b| {
        b.iter(|| guest.check_topic(Access::Write, "amq.topic", black_box("any.key")))
    });
    group.finish();
}

criterion_group!(benches, bench_checks);
criterion_main!(benches);
