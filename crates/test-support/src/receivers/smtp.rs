//! The SMTP sink: a plain-text server that takes mail the way lettre sends
//! it (AUTH PLAIN or LOGIN, then the envelope and DATA) and records each
//! message as a mail client would show it.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use mail_parser::{Message, MessageParser, MimeHeaders, PartType};
use tokio::io::{
    AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

use super::percent_encode;
use super::recording::Log;

/// Guards for one SMTP line and one message: larger than any notification,
/// they only keep a runaway client from eating the test machine's memory.
const MAX_SMTP_LINE: u64 = 1024 * 1024;
const MAX_MAIL: usize = 32 * 1024 * 1024;

/// One message the SMTP sink took, with its envelope and what a mail client
/// would show of it.
#[derive(Debug, Clone)]
pub struct Mail {
    /// The user the client authenticated as on this connection.
    pub auth_user: Option<String>,
    /// The password it gave, so a test can check the configured one was sent.
    pub auth_password: Option<String>,
    /// The envelope sender of `MAIL FROM`.
    pub mail_from: String,
    /// The envelope recipients of `RCPT TO`, who really get the message.
    pub rcpt_to: Vec<String>,
    /// The message as sent, dot-stuffing removed.
    pub raw: Vec<u8>,
    /// The decoded `Subject:` header.
    pub subject: String,
    /// The address of the `From:` header.
    pub from: String,
    /// The addresses of the `To:` header.
    pub to: Vec<String>,
    /// The plain-text body a mail client would show.
    pub text: Option<String>,
    /// The HTML body a mail client would show.
    pub html: Option<String>,
    /// MIME parts whose content type is text/plain.
    pub text_parts: usize,
    /// MIME parts whose content type is text/html.
    pub html_parts: usize,
}

impl Mail {
    fn parse(
        auth: Option<&(String, String)>,
        mail_from: String,
        rcpt_to: Vec<String>,
        raw: Vec<u8>,
    ) -> Self {
        let mut mail = Self {
            auth_user: auth.map(|(user, _)| user.clone()),
            auth_password: auth.map(|(_, password)| password.clone()),
            mail_from,
            rcpt_to,
            raw: Vec::new(),
            subject: String::new(),
            from: String::new(),
            to: Vec::new(),
            text: None,
            html: None,
            text_parts: 0,
            html_parts: 0,
        };
        if let Some(message) = MessageParser::default().parse(&raw) {
            mail.subject = message.subject().unwrap_or_default().to_owned();
            mail.from = message
                .from()
                .and_then(|from| from.first())
                .and_then(|addr| addr.address())
                .unwrap_or_default()
                .to_owned();
            mail.to = message
                .to()
                .map(|to| {
                    to.iter()
                        .filter_map(|addr| addr.address())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default();
            mail.text = message.body_text(0).map(|t| t.into_owned());
            mail.html = message.body_html(0).map(|h| h.into_owned());
            mail.text_parts = count_parts(&message, "plain");
            mail.html_parts = count_parts(&message, "html");
        }
        mail.raw = raw;
        mail
    }
}

/// Counts the MIME parts that really are `text/{subtype}`; the parser's
/// body counts include bodies it converted from the other type.
fn count_parts(message: &Message<'_>, subtype: &str) -> usize {
    message
        .parts
        .iter()
        .filter(|part| matches!(part.body, PartType::Text(_) | PartType::Html(_)))
        .filter(|part| match part.content_type() {
            Some(ct) => {
                ct.ctype().eq_ignore_ascii_case("text")
                    && ct
                        .subtype()
                        .is_some_and(|s| s.eq_ignore_ascii_case(subtype))
            }
            // RFC 2045: no Content-Type means text/plain.
            None => subtype == "plain",
        })
        .count()
}

struct Credentials {
    user: String,
    password: String,
}

/// A plain-text SMTP server on 127.0.0.1:0 (no TLS), as the lettre crate
/// talks to it. Dropping it closes the listener and every connection.
pub struct SmtpSink {
    addr: SocketAddr,
    user: String,
    password: String,
    log: Arc<Log<Mail>>,
    server: JoinHandle<()>,
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl SmtpSink {
    /// Requires AUTH with these credentials before MAIL.
    pub async fn start(user: &str, password: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("smtp sink binds 127.0.0.1:0");
        let addr = listener.local_addr().expect("smtp sink address");
        let log = Arc::new(Log::new());
        let credentials = Arc::new(Credentials {
            user: user.to_owned(),
            password: password.to_owned(),
        });
        let server = tokio::spawn(accept_smtp(listener, credentials, log.clone()));
        Self {
            addr,
            user: user.to_owned(),
            password: password.to_owned(),
            log,
            server,
        }
    }

    /// `smtp://user:password@127.0.0.1:PORT`, user and password
    /// percent-encoded.
    pub fn url(&self) -> String {
        format!(
            "smtp://{}:{}@{}",
            percent_encode(&self.user),
            percent_encode(&self.password),
            self.addr
        )
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every message taken so far, in arrival order.
    pub fn mails(&self) -> Vec<Mail> {
        self.log.snapshot()
    }

    /// Waits until at least `n` messages arrived; returns all of them, or
    /// panics after `deadline` listing what arrived.
    pub async fn wait_mails(&self, n: usize, deadline: Duration) -> Vec<Mail> {
        match self.log.wait(deadline, |mails| mails.len() >= n).await {
            Ok(mails) => mails,
            Err(mails) => {
                let lines: Vec<String> = mails
                    .iter()
                    .map(|m| format!("{} -> {:?}: {}", m.mail_from, m.rcpt_to, m.subject))
                    .collect();
                panic!(
                    "expected {n} mail(s) within {deadline:?}; received {}:\n{}",
                    mails.len(),
                    lines.join("\n")
                );
            }
        }
    }
}

async fn accept_smtp(listener: TcpListener, credentials: Arc<Credentials>, log: Arc<Log<Mail>>) {
    // Sessions live in the set so that stopping the sink ends them too.
    let mut sessions = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                // A failed accept concerns that one connection; keep serving.
                if let Ok((stream, _)) = accepted {
                    sessions.spawn(smtp_session(stream, credentials.clone(), log.clone()));
                }
            }
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
        }
    }
}

/// The envelope being built, and who authenticated on this connection.
#[derive(Default)]
struct Session {
    auth: Option<(String, String)>,
    mail_from: Option<String>,
    rcpt_to: Vec<String>,
}

impl Session {
    fn reset(&mut self) {
        self.mail_from = None;
        self.rcpt_to.clear();
    }
}

async fn reply(write: &mut (impl AsyncWrite + Unpin), lines: &str) -> io::Result<()> {
    write.write_all(lines.as_bytes()).await?;
    write.write_all(b"\r\n").await?;
    write.flush().await
}

/// Reads one line into `line`; false at the end of the stream.
async fn read_line(
    reader: &mut (impl AsyncBufRead + Unpin),
    line: &mut Vec<u8>,
) -> io::Result<bool> {
    line.clear();
    let n = (&mut *reader)
        .take(MAX_SMTP_LINE)
        .read_until(b'\n', line)
        .await?;
    if n as u64 == MAX_SMTP_LINE && line.last() != Some(&b'\n') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "smtp line too long",
        ));
    }
    Ok(n > 0)
}

/// A line the client owes us, as text without its line ending.
async fn read_reply_line(reader: &mut (impl AsyncBufRead + Unpin)) -> io::Result<String> {
    let mut line = Vec::new();
    if !read_line(reader, &mut line).await? {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "smtp client hung up mid-command",
        ));
    }
    Ok(String::from_utf8_lossy(trim_line_end(&line)).into_owned())
}

fn trim_line_end(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// The address in `FROM:<a@b> PARAM=…` (after the `FROM:`/`TO:` keyword).
fn envelope_address(arg: &str, keyword: &str) -> Option<String> {
    let (head, rest) = arg.split_at_checked(keyword.len())?;
    if !head.eq_ignore_ascii_case(keyword) {
        return None;
    }
    let rest = rest.trim_start();
    match rest.strip_prefix('<') {
        Some(inner) => inner.split_once('>').map(|(addr, _)| addr.to_owned()),
        None => rest.split_whitespace().next().map(str::to_owned),
    }
}

fn decode_base64(s: &str) -> Option<Vec<u8>> {
    BASE64.decode(s.trim()).ok()
}

async fn smtp_session(
    stream: TcpStream,
    credentials: Arc<Credentials>,
    log: Arc<Log<Mail>>,
) -> io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let mut session = Session::default();
    let mut line = Vec::new();
    reply(&mut write, "220 sink ESMTP").await?;
    loop {
        if !read_line(&mut reader, &mut line).await? {
            return Ok(());
        }
        let command = String::from_utf8_lossy(trim_line_end(&line)).into_owned();
        let (verb, arg) = command.split_once(' ').unwrap_or((command.as_str(), ""));
        let answer = match verb.to_ascii_uppercase().as_str() {
            "EHLO" => {
                session.reset();
                "250-sink\r\n250-AUTH PLAIN LOGIN\r\n250 8BITMIME"
            }
            "HELO" => {
                session.reset();
                "250 sink"
            }
            "AUTH" if session.auth.is_some() => "503 5.5.1 Already authenticated",
            "AUTH" => match smtp_auth(&mut reader, &mut write, arg.trim()).await? {
                Err(answer) => answer,
                Ok((user, password))
                    if user == credentials.user && password == credentials.password =>
                {
                    session.auth = Some((user, password));
                    "235 2.7.0 Authentication successful"
                }
                Ok(_) => "535 5.7.8 Authentication credentials invalid",
            },
            "MAIL" if session.auth.is_none() => "530 5.7.0 Authentication required",
            "MAIL" => match envelope_address(arg, "FROM:") {
                Some(from) => {
                    session.reset();
                    session.mail_from = Some(from);
                    "250 2.1.0 OK"
                }
                None => "501 5.5.4 Syntax: MAIL FROM:<address>",
            },
            "RCPT" if session.mail_from.is_none() => "503 5.5.1 Bad sequence of commands",
            "RCPT" => match envelope_address(arg, "TO:") {
                Some(to) => {
                    session.rcpt_to.push(to);
                    "250 2.1.5 OK"
                }
                None => "501 5.5.4 Syntax: RCPT TO:<address>",
            },
            "DATA" if session.rcpt_to.is_empty() => "503 5.5.1 Bad sequence of commands",
            "DATA" => {
                reply(&mut write, "354 End data with <CR><LF>.<CR><LF>").await?;
                let Some(raw) = read_data(&mut reader).await? else {
                    return Ok(());
                };
                let mail_from = session.mail_from.take().unwrap_or_default();
                let rcpt_to = std::mem::take(&mut session.rcpt_to);
                match raw {
                    Some(raw) => {
                        log.push(Mail::parse(session.auth.as_ref(), mail_from, rcpt_to, raw));
                        "250 2.0.0 OK: queued"
                    }
                    None => "552 5.3.4 Message too big",
                }
            }
            "RSET" => {
                session.reset();
                "250 2.0.0 OK"
            }
            "NOOP" => "250 2.0.0 OK",
            "QUIT" => {
                reply(&mut write, "221 2.0.0 Bye").await?;
                return Ok(());
            }
            _ => "502 5.5.2 Command not recognized",
        };
        reply(&mut write, answer).await?;
    }
}

/// Reads a message up to the line that is a lone "."; `None` when the client
/// hung up, `Some(None)` when the message was too big to keep.
async fn read_data(
    reader: &mut (impl AsyncBufRead + Unpin),
) -> io::Result<Option<Option<Vec<u8>>>> {
    let mut raw = Vec::new();
    let mut too_big = false;
    let mut line = Vec::new();
    loop {
        if !read_line(reader, &mut line).await? {
            return Ok(None);
        }
        if trim_line_end(&line) == b"." {
            return Ok(Some((!too_big).then_some(raw)));
        }
        // RFC 5321 4.5.2: the client doubled every leading dot.
        let unstuffed = line.strip_prefix(b".").unwrap_or(&line);
        if raw.len() + unstuffed.len() > MAX_MAIL {
            too_big = true;
            raw.clear();
        } else if !too_big {
            raw.extend_from_slice(unstuffed);
        }
    }
}

/// Runs the AUTH exchange; `Ok` with the credentials the client gave, or
/// `Err` with the answer when it gave none that could be read.
async fn smtp_auth(
    reader: &mut (impl AsyncBufRead + Unpin),
    write: &mut (impl AsyncWrite + Unpin),
    arg: &str,
) -> io::Result<Result<(String, String), &'static str>> {
    const CANNOT_DECODE: &str = "501 5.5.2 Cannot decode response";
    const CANCELLED: &str = "501 5.0.0 Authentication cancelled";
    let (mechanism, initial) = match arg.split_once(' ') {
        Some((mechanism, initial)) => (mechanism, Some(initial.trim().to_owned())),
        None => (arg, None),
    };
    match mechanism.to_ascii_uppercase().as_str() {
        "PLAIN" => {
            let response = match initial {
                Some(initial) => initial,
                None => {
                    reply(write, "334 ").await?;
                    read_reply_line(reader).await?
                }
            };
            if response == "*" {
                return Ok(Err(CANCELLED));
            }
            // authzid NUL authcid NUL passwd
            let Some(decoded) = decode_base64(&response) else {
                return Ok(Err(CANNOT_DECODE));
            };
            let fields: Vec<&[u8]> = decoded.split(|b| *b == 0).collect();
            let [_, user, password] = fields.as_slice() else {
                return Ok(Err(CANNOT_DECODE));
            };
            Ok(Ok((
                String::from_utf8_lossy(user).into_owned(),
                String::from_utf8_lossy(password).into_owned(),
            )))
        }
        "LOGIN" => {
            let user = match initial {
                Some(initial) => initial,
                None => {
                    reply(write, "334 VXNlcm5hbWU6").await?;
                    read_reply_line(reader).await?
                }
            };
            if user == "*" {
                return Ok(Err(CANCELLED));
            }
            reply(write, "334 UGFzc3dvcmQ6").await?;
            let password = read_reply_line(reader).await?;
            if password == "*" {
                return Ok(Err(CANCELLED));
            }
            match (decode_base64(&user), decode_base64(&password)) {
                (Some(user), Some(password)) => Ok(Ok((
                    String::from_utf8_lossy(&user).into_owned(),
                    String::from_utf8_lossy(&password).into_owned(),
                ))),
                _ => Ok(Err(CANNOT_DECODE)),
            }
        }
        _ => Ok(Err("504 5.5.4 Unrecognized authentication type")),
    }
}

#[cfg(test)]
mod tests {
    use lettre::message::MultiPart;
    use lettre::transport::smtp::authentication::Mechanism;
    use lettre::{AsyncSmtpTransport, AsyncTransport, Message as Email, Tokio1Executor};

    use super::*;
    use crate::receivers::client::WAIT;

    fn email(subject: &str, text: &str, html: &str) -> Email {
        Email::builder()
            .from("Slipway <ci@example.com>".parse().expect("from"))
            .to("Dev One <dev1@example.com>".parse().expect("to"))
            .to("dev2@example.com".parse().expect("to"))
            .subject(subject)
            .multipart(MultiPart::alternative_plain_html(
                text.to_owned(),
                html.to_owned(),
            ))
            .expect("message builds")
    }

    #[tokio::test]
    async fn smtp_sink_takes_mail_from_lettre() {
        let sink = SmtpSink::start("ci@example.com", "p@ss:w/rd").await;
        assert!(
            sink.url()
                .starts_with("smtp://ci%40example.com:p%40ss%3Aw%2Frd@127.0.0.1:")
        );
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(&sink.url())
            .expect("url parses")
            .build();

        transport
            .send(email(
                "Build #1 failed",
                "line one\n.starts with a dot\n",
                "<p>failed</p>",
            ))
            .await
            .expect("first mail sent");
        transport
            .send(email("Build #2 passed", "all good", "<p>passed</p>"))
            .await
            .expect("second mail sent");

        let mails = sink.wait_mails(2, WAIT).await;
        let first = &mails[0];
        assert_eq!(first.auth_user.as_deref(), Some("ci@example.com"));
        assert_eq!(first.auth_password.as_deref(), Some("p@ss:w/rd"));
        assert_eq!(first.mail_from, "ci@example.com");
        assert_eq!(first.rcpt_to, ["dev1@example.com", "dev2@example.com"]);
        assert_eq!(first.subject, "Build #1 failed");
        assert_eq!(first.from, "ci@example.com");
        assert_eq!(first.to, ["dev1@example.com", "dev2@example.com"]);
        let text = first.text.as_deref().expect("text body");
        assert!(text.contains("\n.starts with a dot"), "{text:?}");
        assert!(
            first
                .html
                .as_deref()
                .expect("html body")
                .contains("<p>failed</p>")
        );
        assert_eq!((first.text_parts, first.html_parts), (1, 1));
        assert_eq!(mails[1].subject, "Build #2 passed");

        let login = AsyncSmtpTransport::<Tokio1Executor>::from_url(&sink.url())
            .expect("url parses")
            .authentication(vec![Mechanism::Login])
            .build();
        login
            .send(email("Build #3", "login", "<b>login</b>"))
            .await
            .expect("mail sent with AUTH LOGIN");
        assert_eq!(sink.wait_mails(3, WAIT).await[2].subject, "Build #3");

        let wrong = sink.url().replace("p%40ss", "nope");
        let refused = AsyncSmtpTransport::<Tokio1Executor>::from_url(&wrong)
            .expect("url parses")
            .build()
            .send(email("never", "x", "<p>x</p>"))
            .await
            .expect_err("wrong password refused");
        assert!(
            refused.to_string().contains("credentials invalid"),
            "{refused}"
        );
        assert_eq!(sink.mails().len(), 3);
    }

    /// Sends `command` and returns the server's full answer.
    async fn say(stream: &mut BufReader<TcpStream>, command: &str) -> String {
        stream
            .get_mut()
            .write_all(format!("{command}\r\n").as_bytes())
            .await
            .expect("command sent");
        answer(stream).await
    }

    async fn answer(stream: &mut BufReader<TcpStream>) -> String {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            stream.read_line(&mut line).await.expect("answer read");
            all.push_str(&line);
            // The last line of a multi-line answer has a space after the code.
            if line.len() < 4 || line.as_bytes()[3] != b'-' {
                return all;
            }
        }
    }

    #[tokio::test]
    async fn smtp_sink_speaks_the_protocol() {
        let sink = SmtpSink::start("user", "secret").await;
        let mut client = BufReader::new(TcpStream::connect(sink.addr()).await.expect("connects"));
        assert_eq!(answer(&mut client).await, "220 sink ESMTP\r\n");
        assert_eq!(
            say(&mut client, "EHLO client").await,
            "250-sink\r\n250-AUTH PLAIN LOGIN\r\n250 8BITMIME\r\n"
        );
        assert!(
            say(&mut client, "MAIL FROM:<a@example.com>")
                .await
                .starts_with("530 ")
        );
        assert!(say(&mut client, "VRFY user").await.starts_with("502 "));
        assert_eq!(say(&mut client, "AUTH PLAIN").await, "334 \r\n");
        let wrong = BASE64.encode("\0user\0guess");
        assert_eq!(
            say(&mut client, &wrong).await,
            "535 5.7.8 Authentication credentials invalid\r\n"
        );
        assert_eq!(say(&mut client, "AUTH PLAIN").await, "334 \r\n");
        assert!(
            say(&mut client, &BASE64.encode("\0user\0secret"))
                .await
                .starts_with("235 ")
        );
        assert!(say(&mut client, "NOOP").await.starts_with("250 "));
        assert!(say(&mut client, "DATA").await.starts_with("503 "));
        assert!(
            say(&mut client, "MAIL FROM:<a@example.com> BODY=8BITMIME")
                .await
                .starts_with("250 ")
        );
        assert!(
            say(&mut client, "RCPT TO:<b@example.com>")
                .await
                .starts_with("250 ")
        );
        assert!(say(&mut client, "DATA").await.starts_with("354 "));
        let message =
            "Subject: plain\r\nFrom: a@example.com\r\nTo: b@example.com\r\n\r\n..dot\r\nbody\r\n.";
        assert!(say(&mut client, message).await.starts_with("250 "));
        assert!(say(&mut client, "RSET").await.starts_with("250 "));
        assert!(say(&mut client, "QUIT").await.starts_with("221 "));

        let mails = sink.wait_mails(1, WAIT).await;
        assert_eq!(mails[0].rcpt_to, ["b@example.com"]);
        assert_eq!(mails[0].subject, "plain");
        assert_eq!(
            mails[0].raw,
            b"Subject: plain\r\nFrom: a@example.com\r\nTo: b@example.com\r\n\r\n.dot\r\nbody\r\n"
        );
        assert_eq!(mails[0].text.as_deref(), Some(".dot\r\nbody\r\n"));
        assert_eq!((mails[0].text_parts, mails[0].html_parts), (1, 0));
    }
}
