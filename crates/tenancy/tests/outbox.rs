//! Outbox delivery over SMTP against a small SMTP server on a loopback port (it speaks the
//! protocol for real: greeting, EHLO, MAIL, RCPT, DATA, QUIT), including refusals and an
//! unreachable server.

mod common;

use std::sync::{Arc, Mutex};

use common::fixture;
use silo_tenancy::config::SmtpSettings;
use silo_tenancy::outbox::{Delivery, Mailer};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// Starts an SMTP server; returns its port and the messages it accepted. With `refuse`, every
/// recipient is refused (550).
async fn smtp_server(refuse: bool) -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let received = Arc::new(Mutex::new(Vec::new()));
    let store = received.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            let store = store.clone();
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut lines = BufReader::new(read).lines();
                write.write_all(b"220 test.local ESMTP\r\n").await.unwrap();
                let mut data: Option<String> = None;
                while let Ok(Some(line)) = lines.next_line().await {
                    if let Some(message) = data.as_mut() {
                        if line == "." {
                            store.lock().unwrap().push(data.take().unwrap());
                            write.write_all(b"250 2.0.0 queued\r\n").await.unwrap();
                        } else {
                            message.push_str(&line);
                            message.push('\n');
                        }
                        continue;
                    }
                    let verb = line.split_whitespace().next().unwrap_or_default().to_ascii_uppercase();
                    let reply: &[u8] = match verb.as_str() {
                        "EHLO" | "HELO" => b"250-test.local\r\n250 8BITMIME\r\n",
                        "RCPT" if refuse => b"550 5.1.1 no such user\r\n",
                        "DATA" => {
                            data = Some(String::new());
                            b"354 go ahead\r\n"
                        }
                        "QUIT" => {
                            write.write_all(b"221 bye\r\n").await.unwrap();
                            return;
                        }
                        _ => b"250 OK\r\n",
                    };
                    write.write_all(reply).await.unwrap();
                }
            });
        }
    });
    (port, received)
}

fn settings(port: u16) -> SmtpSettings {
    SmtpSettings {
        host: Some("127.0.0.1".into()),
        port,
        tls: "none".into(),
        from: "Silo <silo@example.com>".into(),
        ..SmtpSettings::default()
    }
}

#[tokio::test]
async fn queued_emails_are_delivered_once() {
    let f = fixture().await;
    let (port, received) = smtp_server(false).await;
    let mailer = Mailer::from_settings(&settings(port)).unwrap().unwrap();
    f.tenancy
        .queue_email("ada@example.com", "Join acme on Silo", "Accept: http://x/invitations/1")
        .await
        .unwrap();
    f.tenancy
        .queue_email("bob@example.com", "Reset your Silo password", "Link: http://x/password/reset/2")
        .await
        .unwrap();

    let delivery = f.tenancy.deliver_outbox(&mailer, 50).await.unwrap();
    assert_eq!(delivery, Delivery { sent: 2, failed: 0 });
    let messages = received.lock().unwrap().clone();
    assert_eq!(messages.len(), 2);
    assert!(
        messages[0].contains("Subject: Join acme on Silo") && messages[0].contains("To: ada@example.com")
    );
    assert!(messages[1].contains("http://x/password/reset/2"));
    let outbox = f.tenancy.outbox(None, 10).await.unwrap();
    assert!(outbox.iter().all(|e| e.sent_at.is_some() && e.attempts == 1 && e.error.is_none()));

    assert_eq!(
        f.tenancy.deliver_outbox(&mailer, 50).await.unwrap(),
        Delivery::default(),
        "nothing is sent twice"
    );
}

#[tokio::test]
async fn refusals_and_unreachable_servers_are_recorded_and_retried_later() {
    let f = fixture().await;
    let (port, received) = smtp_server(true).await;
    let refusing = Mailer::from_settings(&settings(port)).unwrap().unwrap();
    f.tenancy.queue_email("nobody@example.com", "Hello", "body").await.unwrap();
    assert_eq!(f.tenancy.deliver_outbox(&refusing, 50).await.unwrap(), Delivery { sent: 0, failed: 1 });
    let email = f.tenancy.outbox(None, 1).await.unwrap().remove(0);
    assert_eq!((email.attempts, email.sent_at.is_none()), (1, true));
    assert!(email.error.as_deref().unwrap_or_default().contains("no such user"), "{:?}", email.error);
    assert!(received.lock().unwrap().is_empty());
    assert_eq!(f.tenancy.deliver_outbox(&refusing, 50).await.unwrap(), Delivery::default(), "backing off");

    // Nothing listens on this port any more.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let unreachable = Mailer::from_settings(&settings(closed)).unwrap().unwrap();
    f.tenancy.queue_email("ada@example.com", "Hello", "body").await.unwrap();
    assert_eq!(f.tenancy.deliver_outbox(&unreachable, 50).await.unwrap(), Delivery { sent: 0, failed: 1 });
    let email = f.tenancy.outbox(Some("ada@example.com"), 1).await.unwrap().remove(0);
    assert!(email.error.is_some() && email.sent_at.is_none());
}

#[test]
fn smtp_settings_are_checked() {
    assert!(Mailer::from_settings(&SmtpSettings::default()).unwrap().is_none(), "no host, no mailer");
    let bad_tls = SmtpSettings { tls: "sometimes".into(), ..settings(25) };
    assert!(Mailer::from_settings(&bad_tls).err().unwrap().to_string().contains("smtp.tls"));
    let bad_from = SmtpSettings { from: "not an address".into(), ..settings(25) };
    assert!(Mailer::from_settings(&bad_from).err().unwrap().to_string().contains("smtp.from"));
    let secret = SmtpSettings { password: Some("hunter2".into()), ..settings(25) };
    assert!(!format!("{secret:?}").contains("hunter2"), "the password is redacted");
}
