//! Outbox delivery over SMTP against a small SMTP server on a loopback port (it speaks the
//! protocol for real: greeting, EHLO, MAIL, RCPT, DATA, QUIT), including refusals and an
//! unreachable server.

use silo_accounts::SmtpSettings;
use silo_accounts::outbox::{Delivery, Mailer};
use silo_e2e::TestServer;
use silo_e2e::smtp::{settings, smtp_server};

#[tokio::test]
async fn queued_emails_are_delivered_once() {
    let f = TestServer::start().await.unwrap();
    let (port, received) = smtp_server(false).await;
    let mailer = Mailer::from_settings(&settings(port)).unwrap().unwrap();
    f.accounts
        .outbox()
        .queue("ada@example.com", "Join acme on Silo", "Accept: http://x/invitations/1", Default::default())
        .await
        .unwrap();
    f.accounts
        .outbox()
        .queue(
            "bob@example.com",
            "Reset your Silo password",
            "Link: http://x/password/reset/2",
            Default::default(),
        )
        .await
        .unwrap();

    let delivery = f.accounts.outbox().deliver(&mailer, 50).await.unwrap();
    assert_eq!(delivery, Delivery { sent: 2, failed: 0 });
    let messages = received.lock().unwrap().clone();
    assert_eq!(messages.len(), 2);
    assert!(
        messages[0].contains("Subject: Join acme on Silo") && messages[0].contains("To: ada@example.com")
    );
    assert!(messages[1].contains("http://x/password/reset/2"));
    let outbox = f.accounts.outbox().list(None, 10).await.unwrap();
    assert!(outbox.iter().all(|e| e.sent_at.is_some() && e.attempts == 1 && e.error.is_none()));

    assert_eq!(
        f.accounts.outbox().deliver(&mailer, 50).await.unwrap(),
        Delivery::default(),
        "nothing is sent twice"
    );
}

#[tokio::test]
async fn refusals_and_unreachable_servers_are_recorded_and_retried_later() {
    let f = TestServer::start().await.unwrap();
    let (port, received) = smtp_server(true).await;
    let refusing = Mailer::from_settings(&settings(port)).unwrap().unwrap();
    f.accounts.outbox().queue("nobody@example.com", "Hello", "body", Default::default()).await.unwrap();
    assert_eq!(f.accounts.outbox().deliver(&refusing, 50).await.unwrap(), Delivery { sent: 0, failed: 1 });
    let email = f.accounts.outbox().list(None, 1).await.unwrap().remove(0);
    assert_eq!((email.attempts, email.sent_at.is_none()), (1, true));
    assert!(email.error.as_deref().unwrap_or_default().contains("no such user"), "{:?}", email.error);
    assert!(received.lock().unwrap().is_empty());
    assert_eq!(f.accounts.outbox().deliver(&refusing, 50).await.unwrap(), Delivery::default(), "backing off");

    // Nothing listens on this port any more.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let unreachable = Mailer::from_settings(&settings(closed)).unwrap().unwrap();
    f.accounts.outbox().queue("ada@example.com", "Hello", "body", Default::default()).await.unwrap();
    assert_eq!(f.accounts.outbox().deliver(&unreachable, 50).await.unwrap(), Delivery { sent: 0, failed: 1 });
    let email = f.accounts.outbox().list(Some("ada@example.com"), 1).await.unwrap().remove(0);
    assert!(email.error.is_some() && email.sent_at.is_none());
}

#[test]
fn smtp_settings_are_checked() {
    assert!(Mailer::from_settings(&SmtpSettings::default()).unwrap().is_none(), "no host, no mailer");
    let bad_tls = SmtpSettings { tls: "sometimes".into(), ..settings(25) };
    assert!(Mailer::from_settings(&bad_tls).err().unwrap().to_string().contains("smtp.tls"));
    let bad_from = SmtpSettings { from: "not an address".into(), ..settings(25) };
    assert!(Mailer::from_settings(&bad_from).err().unwrap().to_string().contains("smtp.from"));
    let secret = SmtpSettings { password: Some(silo_web::settings::Secret::new("hunter2")), ..settings(25) };
    assert!(!format!("{secret:?}").contains("hunter2"), "the password is redacted");
}
