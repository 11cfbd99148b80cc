//! The access model end to end, without sockets: logins, connection.open checks, the
//! per-channel cache's RabbitMQ semantics, topic permissions, limits and definitions.

use super::*;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const REMOTE: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));

fn plain(user: &str, pass: &str) -> Vec<u8> {
    format!("\0{user}\0{pass}").into_bytes()
}

/// `/` with guest (loopback-only, full permissions) and `alice` (restricted) in `/` and `dev`.
fn model() -> AccessControl {
    let ac = AccessControl::default();
    ac.add("guest", "guest", true);
    ac.add_user("alice", "pw", vec!["custom".into()])
        .expect("new user");
    ac.add_vhost(VhostInfo::named("dev")).expect("new vhost");
    ac.set_permissions(
        "alice",
        "/",
        "^alice-",
        "^(alice-|amq\\.default$|x-out$)",
        "^alice-",
    )
    .expect("valid patterns");
    ac
}

fn alice() -> AuthUser {
    AuthUser {
        name: "alice".into(),
        tags: vec![].into(),
    }
}

fn channel(ac: &AccessControl, user: &AuthUser) -> ChannelAccess {
    ac.open_channel(user, "/", None, 0)
        .expect("no channel limit")
}

#[test]
fn login_checks_password_then_loopback() {
    let ac = model();
    let ok = ac
        .login("PLAIN", &plain("guest", "guest"), LOOPBACK, None)
        .expect("guest");
    assert_eq!(&*ok.name, "guest");
    assert!(ok.has_tag(TAG_ADMINISTRATOR));
    assert_eq!(
        ac.login("PLAIN", &plain("guest", "nope"), REMOTE, None),
        Err(AuthError::InvalidCredentials("guest".into())),
        "credentials are checked before the loopback rule"
    );
    assert_eq!(
        ac.login("PLAIN", &plain("guest", "guest"), REMOTE, None),
        Err(AuthError::LoopbackOnly("guest".into()))
    );
    let mapped = IpAddr::V6(Ipv4Addr::LOCALHOST.to_ipv6_mapped());
    assert!(ac
        .login("PLAIN", &plain("guest", "guest"), mapped, None)
        .is_ok());
    assert!(ac
        .login(
            "PLAIN",
            &plain("guest", "guest"),
            IpAddr::V6(Ipv6Addr::LOCALHOST),
            None
        )
        .is_ok());
    assert!(ac
        .login("PLAIN", &plain("alice", "pw"), REMOTE, None)
        .is_ok());
    assert_eq!(
        ac.login("PLAIN", &plain("nobody", "pw"), LOOPBACK, None),
        Err(AuthError::InvalidCredentials("nobody".into()))
    );
    assert_eq!(
        ac.login("PLAIN", &plain("alice", ""), LOOPBACK, None),
        Err(AuthError::InvalidCredentials("alice".into())),
        "blank passwords are refused, as RabbitMQ"
    );
    ac.set_loopback_only("guest", false);
    assert!(ac
        .login("PLAIN", &plain("guest", "guest"), REMOTE, None)
        .is_ok());
}

#[test]
fn the_old_authenticate_call_still_works() {
    let users: Users = Users::default();
    users.add("guest", "guest", true);
    let response = bytes::Bytes::from_static(b"\0guest\0guest");
    assert_eq!(
        users.authenticate("PLAIN", &response, LOOPBACK),
        Ok("guest".into())
    );
    assert_eq!(
        users.authenticate("PLAIN", &response, REMOTE),
        Err(AuthError::LoopbackOnly("guest".into()))
    );
}

#[test]
fn external_needs_an_existing_user_and_no_password() {
    let ac = model();
    ac.add_user("app-1", "unused", vec![]).expect("new");
    ac.clear_password("app-1").expect("exists");
    let u = ac
        .login("EXTERNAL", b"", REMOTE, Some("app-1"))
        .expect("cert login");
    assert_eq!(&*u.name, "app-1");
    assert_eq!(
        ac.login("EXTERNAL", b"", REMOTE, Some("stranger")),
        Err(AuthError::InvalidCredentials("stranger".into()))
    );
    assert_eq!(
        ac.login("EXTERNAL", b"", REMOTE, None),
        Err(AuthError::NoPeerCertificate)
    );
    assert_eq!(
        ac.login("PLAIN", &plain("app-1", "unused"), REMOTE, None),
        Err(AuthError::InvalidCredentials("app-1".into())),
        "a user without a password cannot use PLAIN"
    );
}

#[test]
fn connection_open_checks_limits_then_vhost_access() {
    let ac = model();
    assert_eq!(ac.check_connection_open("alice", "/", 0, 0), Ok(()));
    assert_eq!(
        ac.check_connection_open("alice", "dev", 0, 0)
            .unwrap_err()
            .to_string(),
        "access to vhost 'dev' refused for user 'alice'"
    );
    assert_eq!(
        ac.check_connection_open("alice", "nope", 0, 0)
            .unwrap_err()
            .to_string(),
        "vhost nope not found"
    );
    // An all-empty entry still opens the vhost (it only grants nothing inside).
    ac.set_permissions("alice", "dev", "", "", "")
        .expect("valid");
    assert_eq!(ac.check_connection_open("alice", "dev", 0, 0), Ok(()));

    ac.set_vhost_limits(
        "/",
        VhostLimits {
            max_connections: Some(2),
            max_queues: None,
        },
    )
    .expect("exists");
    assert_eq!(ac.check_connection_open("alice", "/", 1, 0), Ok(()));
    assert_eq!(
        ac.check_connection_open("alice", "/", 2, 0)
            .unwrap_err()
            .to_string(),
        "access to vhost '/' refused for user 'alice': connection limit (2) is reached"
    );
    ac.set_user_limits(
        "alice",
        UserLimits {
            max_connections: Some(0),
            max_channels: None,
        },
    )
    .expect("exists");
    assert_eq!(
        ac.check_connection_open("alice", "/", 0, 0)
            .unwrap_err()
            .to_string(),
        "connection refused for user 'alice': user connection limit (0) is reached"
    );
}

#[test]
fn channel_and_queue_limits() {
    let ac = model();
    ac.set_user_limits(
        "alice",
        UserLimits {
            max_connections: None,
            max_channels: Some(1),
        },
    )
    .expect("exists");
    assert!(ac.open_channel(&alice(), "/", None, 0).is_ok());
    let err = ac
        .open_channel(&alice(), "/", None, 1)
        .err()
        .expect("over the limit");
    assert_eq!(
        err.to_string(),
        "number of channels opened for user 'alice' has reached the maximum allowed user limit of (1)"
    );
    ac.set_vhost_limits(
        "dev",
        VhostLimits {
            max_connections: None,
            max_queues: Some(1),
        },
    )
    .expect("exists");
    assert_eq!(ac.check_queue_limit("dev", "q1", 0), Ok(()));
    assert_eq!(
        ac.check_queue_limit("dev", "q2", 1)
            .unwrap_err()
            .to_string(),
        "cannot declare queue 'q2': queue limit in vhost 'dev' (1) is reached"
    );
    assert_eq!(ac.check_queue_limit("/", "q", 1_000_000), Ok(()));
}

#[test]
fn resource_checks_use_rabbitmq_texts_and_amq_default() {
    let ac = model();
    let mut ch = channel(&ac, &alice());
    assert_eq!(ch.check_queue(Access::Configure, "alice-q"), Ok(()));
    assert_eq!(ch.check_queue(Access::Read, "alice-q"), Ok(()));
    assert_eq!(
        ch.check_queue(Access::Configure, "q")
            .unwrap_err()
            .to_string(),
        "access to queue 'q' in vhost '/' refused for user 'alice'"
    );
    assert_eq!(
        ch.check_exchange(Access::Write, ""),
        Ok(()),
        "\"\" is amq.default"
    );
    assert_eq!(ch.check_exchange(Access::Write, "x-out"), Ok(()));
    assert_eq!(
        ch.check_exchange(Access::Read, "").unwrap_err().to_string(),
        "access to exchange 'amq.default' in vhost '/' refused for user 'alice'"
    );
    assert_eq!(
        ch.check_exchange(Access::Write, "x-out-2")
            .unwrap_err()
            .to_string(),
        "access to exchange 'x-out-2' in vhost '/' refused for user 'alice'"
    );
    // Server-named queues are checked under their generated name.
    assert!(ch.check_queue(Access::Configure, "amq.gen-abc").is_err());
    // Passive declares need any one permission.
    assert_eq!(ch.check_any(ResourceKind::Exchange, "x-out"), Ok(()));
    assert_eq!(
        ch.check_any(ResourceKind::Queue, "other")
            .unwrap_err()
            .to_string(),
        "access to queue 'other' in vhost '/' refused for user 'alice'"
    );
    // guest's .* allows everything, including odd names.
    let guest = AuthUser {
        name: "guest".into(),
        tags: vec![].into(),
    };
    let mut g = channel(&ac, &guest);
    assert_eq!(g.check_queue(Access::Configure, ""), Ok(()));
    assert_eq!(g.check_exchange(Access::Write, "any\u{e9}"), Ok(()));
}

#[test]
fn open_channels_keep_what_they_passed_and_new_channels_see_changes() {
    let ac = model();
    let mut open = channel(&ac, &alice());
    assert_eq!(open.check_exchange(Access::Write, "alice-x"), Ok(()));
    // Revoke everything in `/`.
    ac.set_permissions("alice", "/", "", "", "").expect("valid");
    assert_eq!(
        open.check_exchange(Access::Write, "alice-x"),
        Ok(()),
        "cached pass"
    );
    assert!(
        open.check_exchange(Access::Write, "alice-y").is_err(),
        "a name not used yet is checked against the current permissions"
    );
    let mut fresh = channel(&ac, &alice());
    assert!(
        fresh.check_exchange(Access::Write, "alice-x").is_err(),
        "new channel sees the change"
    );
    // Granting again applies to the open channel's next new name too.
    ac.set_permissions("alice", "/", ".*", ".*", ".*")
        .expect("valid");
    assert_eq!(open.check_exchange(Access::Write, "alice-y"), Ok(()));
    // Clearing the entry refuses everything for new names.
    ac.clear_permissions("alice", "/").expect("ok");
    assert!(open.check_queue(Access::Read, "new-q").is_err());
}

#[test]
fn match_all_shortcut_still_sees_revocations_for_new_names() {
    let ac = model();
    let guest = AuthUser {
        name: "guest".into(),
        tags: vec![].into(),
    };
    let mut ch = channel(&ac, &guest);
    assert_eq!(ch.check_queue(Access::Read, "a"), Ok(()));
    ac.set_permissions("guest", "/", "", "", "").expect("valid");
    assert!(ch.check_queue(Access::Read, "b").is_err());
}

#[test]
fn the_cache_stays_bounded_and_correct() {
    let ac = model();
    let mut ch = channel(&ac, &alice());
    for i in 0..1000 {
        assert_eq!(ch.check_queue(Access::Read, &format!("alice-{i}")), Ok(()));
        assert!(ch.check_queue(Access::Read, &format!("bob-{i}")).is_err());
    }
}

#[test]
fn topic_permissions_apply_per_exchange_with_variables() {
    let ac = model();
    ac.set_permissions("alice", "/", ".*", ".*", ".*")
        .expect("valid");
    ac.set_topic_permissions(
        "alice",
        "/",
        "amq.topic",
        "^{username}\\.",
        "^{vhost}-|^public\\.",
    )
    .expect("valid");
    let mut ch = channel(&ac, &alice());
    assert_eq!(
        ch.check_topic(Access::Write, "amq.topic", "alice.orders"),
        Ok(())
    );
    assert_eq!(
        ch.check_topic(Access::Write, "amq.topic", "bob.orders").unwrap_err().to_string(),
        "access to topic 'bob.orders' in exchange exchange 'amq.topic' in vhost '/' refused for user 'alice'"
    );
    assert_eq!(ch.check_topic(Access::Read, "amq.topic", "/-x"), Ok(()));
    assert_eq!(
        ch.check_topic(Access::Read, "amq.topic", "public.news"),
        Ok(())
    );
    assert!(ch
        .check_topic(Access::Read, "amq.topic", "alice.orders")
        .is_err());
    // Another exchange without an entry allows everything.
    assert_eq!(ch.check_topic(Access::Write, "events", "anything"), Ok(()));
    // Cached passes survive a revocation, new keys do not.
    ac.set_topic_permissions("alice", "/", "amq.topic", "", "")
        .expect("valid");
    assert_eq!(
        ch.check_topic(Access::Write, "amq.topic", "alice.orders"),
        Ok(())
    );
    assert!(ch
        .check_topic(Access::Write, "amq.topic", "alice.other")
        .is_err());
    // "" means ^$: only the empty routing key.
    assert_eq!(ch.check_topic(Access::Write, "amq.topic", ""), Ok(()));
    // Clearing them allows everything again on the next new key.
    ac.clear_topic_permissions("alice", "/", None).expect("ok");
    assert_eq!(ch.check_topic(Access::Write, "amq.topic", "bob.x"), Ok(()));
}

#[test]
fn topic_client_id_variable_uses_the_channels_client_id() {
    let ac = model();
    ac.set_topic_permissions("alice", "/", "t", "^dev\\.{client_id}$", ".*")
        .expect("valid");
    let mut ch = ac.open_channel(&alice(), "/", Some("d7"), 0).expect("ok");
    assert_eq!(ch.check_topic(Access::Write, "t", "dev.d7"), Ok(()));
    assert!(ch.check_topic(Access::Write, "t", "dev.d8").is_err());
}

#[test]
fn user_id_needs_impersonator_to_differ() {
    let ac = model();
    let ch = channel(&ac, &alice());
    assert_eq!(ch.check_user_id("alice"), Ok(()));
    assert_eq!(
        ch.check_user_id("bob").unwrap_err().to_string(),
        "user_id property set to 'bob' but authenticated user was 'alice'"
    );
    let imp = AuthUser {
        name: "svc".into(),
        tags: vec![TAG_IMPERSONATOR.to_owned()].into(),
    };
    ac.add_user("svc", "pw", vec![TAG_IMPERSONATOR.into()])
        .expect("new");
    ac.set_permissions("svc", "/", ".*", ".*", ".*")
        .expect("ok");
    assert_eq!(channel(&ac, &imp).check_user_id("bob"), Ok(()));
}

#[test]
fn management_errors() {
    let ac = model();
    let err = ac
        .set_permissions("nobody", "nowhere", "(", ".*", ".*")
        .unwrap_err();
    assert!(
        matches!(err, ManageError::InvalidPattern(ref p) if p.pattern == "("),
        "the regex is checked first, as RabbitMQ: {err}"
    );
    assert_eq!(
        ac.set_permissions("nobody", "/", ".*", ".*", ".*"),
        Err(ManageError::NoSuchUser("nobody".into()))
    );
    assert_eq!(
        ac.set_permissions("alice", "nowhere", ".*", ".*", ".*"),
        Err(ManageError::NoSuchVhost("nowhere".into()))
    );
    assert!(ac
        .set_topic_permissions("alice", "/", "t", "[", ".*")
        .is_err());
    assert_eq!(
        ac.add_user("alice", "x", vec![]),
        Err(ManageError::UserExists("alice".into()))
    );
    assert_eq!(
        ac.add_vhost(VhostInfo::named("dev")),
        Err(ManageError::VhostExists("dev".into()))
    );
    let mut bad = VhostInfo::named("q");
    bad.default_queue_type = Some("fifo".into());
    assert_eq!(
        ac.add_vhost(bad),
        Err(ManageError::InvalidQueueType(
            "fifo is not a valid queue type".into()
        ))
    );
    assert_eq!(
        ac.delete_user("ghost"),
        Err(ManageError::NoSuchUser("ghost".into()))
    );
}

#[test]
fn deleting_users_and_vhosts_removes_their_permissions() {
    let ac = model();
    ac.set_permissions("alice", "dev", ".*", ".*", ".*")
        .expect("ok");
    ac.set_topic_permissions("alice", "dev", "t", ".*", ".*")
        .expect("ok");
    ac.delete_vhost("dev").expect("exists");
    assert!(ac.permission("alice", "dev").is_none());
    assert!(ac.topic_permissions("alice", "dev").is_none());
    ac.add_vhost(VhostInfo::named("dev")).expect("recreated");
    assert!(
        ac.check_connection_open("alice", "dev", 0, 0).is_err(),
        "nothing came back"
    );
    ac.delete_user("alice").expect("exists");
    assert!(ac.permission("alice", "/").is_none());
    assert!(ac.user("alice").is_none());
    assert_eq!(user_deleted_text("alice"), "user 'alice' is deleted");
}

#[test]
fn every_change_bumps_the_epoch() {
    let ac = model();
    let mut last = ac.epoch();
    let mut bumped = |ac: &AccessControl| {
        let now = ac.epoch();
        let moved = now > last;
        last = now;
        moved
    };
    ac.set_tags("alice", vec!["management".into()]).expect("ok");
    assert!(bumped(&ac));
    ac.change_password("alice", "pw2").expect("ok");
    assert!(bumped(&ac));
    ac.set_topic_permissions("alice", "/", "t", ".*", ".*")
        .expect("ok");
    assert!(bumped(&ac));
    let _ = ac.set_permissions("alice", "/", "(", "", "");
    assert!(!bumped(&ac), "a refused change changes nothing");
    assert!(ac
        .login("PLAIN", &plain("alice", "pw2"), REMOTE, None)
        .is_ok());
}

/// A definitions document as RabbitMQ 3.10–3.13 export it (users with hashes computed by
/// RabbitMQ 3.10.8: `s3cret-päss` in each algorithm, `guest` in SHA-256).
const RABBIT_DEFINITIONS: &str = r#"{
  "rabbit_version": "3.13.7",
  "users": [
    {"name": "guest", "password_hash": "ucMcvIwVbmk3H7bBJ1q4ZbuQIzO2wYNx0wxMZgfrubDxz+oY",
     "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": ["administrator"], "limits": {}},
    {"name": "s512", "password_hash": "00BR9hkZiJvG4o1hj6fhfr+/HQ8l4J4BtnBrDb0SrxSTiPXxbO6uM7pCgECXIoNlJGHn3tY1aFQ65rc+/b0c1rRIP8c=",
     "hashing_algorithm": "rabbit_password_hashing_sha512", "tags": "monitoring,custom", "limits": {"max-channels": 5, "max-connections": -1}},
    {"name": "old", "password_hash": "665dNszTOgmtXX1/vEe4hY/RUdA=",
     "hashing_algorithm": "rabbit_password_hashing_md5", "tags": ""},
    {"name": "certonly", "password_hash": "", "tags": []}
  ],
  "vhosts": [
    {"name": "/", "limits": {}, "metadata": {"description": "Default virtual host", "tags": []}},
    {"name": "prod", "description": "top-level wins", "limits": {"max-queues": 100},
     "metadata": {"description": "from metadata", "tags": ["eu", "critical"], "default_queue_type": "quorum"}}
  ],
  "permissions": [
    {"user": "guest", "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"},
    {"user": "s512", "vhost": "prod", "configure": "", "write": "^out\\.", "read": ".*"}
  ],
  "topic_permissions": [
    {"user": "s512", "vhost": "prod", "exchange": "amq.topic", "write": "^{username}\\.", "read": ".*"}
  ],
  "queues": [], "exchanges": [], "bindings": [], "policies": [], "parameters": []
}"#;

#[test]
fn rabbitmq_definitions_import_with_working_passwords() {
    let defs: AccessDefinitions = serde_json::from_str(RABBIT_DEFINITIONS).expect("parses");
    let ac = AccessControl::empty();
    ac.import(&defs).expect("imports");
    for (user, pass) in [
        ("guest", "guest"),
        ("s512", "s3cret-päss"),
        ("old", "s3cret-päss"),
    ] {
        assert!(
            ac.login("PLAIN", &plain(user, pass), LOOPBACK, None)
                .is_ok(),
            "{user}"
        );
        assert!(
            ac.login("PLAIN", &plain(user, "wrong"), LOOPBACK, None)
                .is_err(),
            "{user}"
        );
    }
    let s512 = ac.user("s512").expect("imported");
    assert_eq!(s512.tags, vec!["monitoring", "custom"]);
    assert_eq!(
        s512.limits,
        UserLimits {
            max_connections: None,
            max_channels: Some(5)
        }
    );
    assert!(ac.user("certonly").expect("imported").password.is_none());
    let prod = ac.vhost("prod").expect("imported");
    assert_eq!(prod.description, "top-level wins");
    assert_eq!(prod.tags, vec!["eu", "critical"]);
    assert_eq!(prod.default_queue_type.as_deref(), Some("quorum"));
    assert_eq!(prod.limits.max_queues, Some(100));
    assert_eq!(ac.check_connection_open("s512", "prod", 0, 0), Ok(()));
    let user = AuthUser {
        name: "s512".into(),
        tags: vec![].into(),
    };
    let mut ch = ac.open_channel(&user, "prod", None, 0).expect("ok");
    assert!(ch.check_queue(Access::Configure, "q").is_err());
    assert_eq!(ch.check_exchange(Access::Write, "out.x"), Ok(()));
    assert_eq!(ch.check_topic(Access::Write, "amq.topic", "s512.a"), Ok(()));
}

#[test]
fn snapshot_round_trips_through_json_in_rabbitmqs_shape() {
    let defs: AccessDefinitions = serde_json::from_str(RABBIT_DEFINITIONS).expect("parses");
    let ac = AccessControl::empty();
    ac.import(&defs).expect("imports");
    let snap = ac.snapshot();
    let json = serde_json::to_value(&snap).expect("serializes");
    let s512 = &json["users"].as_array().expect("list")[3]; // sorted by name
    assert_eq!(s512["name"], "s512");
    assert_eq!(s512["hashing_algorithm"], "rabbit_password_hashing_sha512");
    assert_eq!(s512["tags"], serde_json::json!(["monitoring", "custom"]));
    assert_eq!(s512["limits"], serde_json::json!({"max-channels": 5}));
    let prod = &json["vhosts"][1];
    assert_eq!(prod["metadata"]["default_queue_type"], "quorum");
    assert_eq!(prod["limits"], serde_json::json!({"max-queues": 100}));
    assert_eq!(json["permissions"][1]["write"], "^out\\.");
    assert_eq!(json["topic_permissions"][0]["exchange"], "amq.topic");
    let again = AccessControl::empty();
    again
        .import(&serde_json::from_value(json).expect("reads back"))
        .expect("imports");
    assert_eq!(again.snapshot(), snap);
}

#[test]
fn a_bad_import_changes_nothing() {
    let ac = model();
    let before = ac.snapshot();
    let mut defs: AccessDefinitions = serde_json::from_str(RABBIT_DEFINITIONS).expect("parses");
    defs.permissions[1].read = "(".into();
    assert!(matches!(
        ac.import(&defs),
        Err(ManageError::InvalidPattern(_))
    ));
    let mut defs2: AccessDefinitions = serde_json::from_str(RABBIT_DEFINITIONS).expect("parses");
    defs2.users[0].password_hash = "short".into();
    assert!(matches!(
        ac.import(&defs2),
        Err(ManageError::InvalidPasswordHash { .. })
    ));
    let mut defs3: AccessDefinitions = serde_json::from_str(RABBIT_DEFINITIONS).expect("parses");
    defs3.permissions[0].vhost = "missing".into();
    assert_eq!(
        ac.import(&defs3),
        Err(ManageError::NoSuchVhost("missing".into()))
    );
    assert_eq!(ac.snapshot(), before);
}

#[test]
fn cache_hits_never_touch_the_shared_model() {
    let ac = model();
    ac.set_topic_permissions("alice", "/", "amq.topic", "^alice\\.", ".*")
        .expect("valid");
    let mut ch = channel(&ac, &alice());
    ch.check_exchange(Access::Write, "alice-x")
        .expect("allowed");
    ch.check_topic(Access::Write, "amq.topic", "alice.k")
        .expect("allowed");
    let guard = ac.lock_for_test();
    let (done, finished) = std::sync::mpsc::channel();
    let worker = std::thread::spawn(move || {
        for _ in 0..10_000 {
            assert_eq!(ch.check_exchange(Access::Write, "alice-x"), Ok(()));
            assert_eq!(
                ch.check_topic(Access::Write, "amq.topic", "alice.k"),
                Ok(())
            );
            assert_eq!(ch.check_topic(Access::Write, "events", "any"), Ok(()));
        }
        done.send(()).expect("main thread waits");
    });
    let result = finished.recv_timeout(std::time::Duration::from_secs(10));
    drop(guard);
    worker.join().expect("no panic");
    assert!(result.is_ok(), "a cache hit waited for the model lock");
}

#[test]
fn channel_access_can_move_between_threads() {
    fn is_send<T: Send + 'static>() {}
    fn is_send_sync<T: Send + Sync + 'static>() {}
    is_send::<ChannelAccess>();
    is_send_sync::<AccessControl>();
}
