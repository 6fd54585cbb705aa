//! systemd's notification protocol (`sd_notify`), spoken directly: one datagram of
//! `KEY=value` lines to `$NOTIFY_SOCKET` (a path, or `@name` for an abstract socket).
//!
//! Without `NOTIFY_SOCKET` every call is a no-op, so the daemon runs the same outside systemd. A
//! send that fails is logged once and otherwise ignored: notifications never stop the daemon.
//! Messages carry job names, outcomes and times only.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// One notification field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// `READY=1`: started (or finished reloading).
    Ready,
    /// `RELOADING=1`: reloading the config.
    Reloading,
    /// `STOPPING=1`: stopping.
    Stopping,
    /// `WATCHDOG=1`: alive.
    Watchdog,
    /// `STATUS=…`: one line for `systemctl status`.
    Status(String),
}

/// The datagram for `notices`: one `KEY=value` line each. A status is kept to one line.
pub fn message(notices: &[Notice]) -> String {
    let mut text = String::new();
    for notice in notices {
        match notice {
            Notice::Ready => text.push_str("READY=1\n"),
            Notice::Reloading => text.push_str("RELOADING=1\n"),
            Notice::Stopping => text.push_str("STOPPING=1\n"),
            Notice::Watchdog => text.push_str("WATCHDOG=1\n"),
            Notice::Status(status) => {
                let line: String = status
                    .chars()
                    .map(|c| if c.is_control() { ' ' } else { c })
                    .collect();
                text.push_str("STATUS=");
                text.push_str(line.trim());
                text.push('\n');
            }
        }
    }
    text
}

/// Where notifications go, if anywhere.
#[derive(Debug)]
pub struct Notifier {
    target: Option<(UnixDatagram, SocketAddr)>,
    warned: AtomicBool,
}

impl Notifier {
    /// Reads `$NOTIFY_SOCKET`; without it (or with one that cannot be used, which is logged) the
    /// notifier does nothing.
    pub fn from_env() -> Notifier {
        let target = std::env::var_os("NOTIFY_SOCKET").and_then(|value| {
            let value = value.to_string_lossy().into_owned();
            match Notifier::open(&value) {
                Ok(target) => Some(target),
                Err(error) => {
                    tracing::warn!(socket = %value, error = %error, "cannot use NOTIFY_SOCKET; systemd will not hear from refbridge");
                    None
                }
            }
        });
        Notifier {
            target,
            warned: AtomicBool::new(false),
        }
    }

    fn open(value: &str) -> std::io::Result<(UnixDatagram, SocketAddr)> {
        let address = match value.strip_prefix('@') {
            Some(name) => SocketAddr::from_abstract_name(name.as_bytes())?,
            None if value.starts_with('/') => SocketAddr::from_pathname(value)?,
            None => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "not an absolute path or an @abstract name",
                ));
            }
        };
        Ok((UnixDatagram::unbound()?, address))
    }

    /// Sends `notices` in one datagram.
    pub fn send(&self, notices: &[Notice]) {
        let Some((socket, address)) = &self.target else {
            return;
        };
        if let Err(error) = socket.send_to_addr(message(notices).as_bytes(), address)
            && !self.warned.swap(true, Ordering::Relaxed)
        {
            tracing::warn!(error = %error, "cannot notify systemd; later failures are not logged");
        }
    }
}

/// The watchdog interval systemd asks for (`WATCHDOG_USEC`, for this process when
/// `WATCHDOG_PID` is set): pings go out every half of it.
pub fn watchdog_interval() -> Option<Duration> {
    if let Some(pid) = std::env::var_os("WATCHDOG_PID")
        && pid.to_string_lossy().trim() != std::process::id().to_string()
    {
        return None;
    }
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.trim().parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec) / 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(notices: &[Notice], expected: &str) {
        assert_eq!(message(notices), expected, "{notices:?}");
    }

    #[test]
    fn each_notice_is_one_key_value_line() {
        check(&[Notice::Ready], "READY=1\n");
        check(&[Notice::Stopping], "STOPPING=1\n");
        check(&[Notice::Watchdog], "WATCHDOG=1\n");
        check(
            &[Notice::Reloading, Notice::Status("reloading".into())],
            "RELOADING=1\nSTATUS=reloading\n",
        );
        check(
            &[
                Notice::Ready,
                Notice::Status("import ok 03:30:00Z; evaluate running".into()),
            ],
            "READY=1\nSTATUS=import ok 03:30:00Z; evaluate running\n",
        );
        // A status never spills into a second field.
        check(
            &[Notice::Status("two\nlines\r\n".into())],
            "STATUS=two lines\n",
        );
    }

    #[test]
    fn a_datagram_reaches_a_path_socket_and_an_abstract_one() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("notify.sock");
        let listener = UnixDatagram::bind(&path).unwrap();
        let (socket, address) = Notifier::open(path.to_str().unwrap()).unwrap();
        let notifier = Notifier {
            target: Some((socket, address)),
            warned: AtomicBool::new(false),
        };
        notifier.send(&[Notice::Ready, Notice::Status("up".into())]);
        let mut buffer = [0u8; 256];
        let length = listener.recv(&mut buffer).unwrap();
        assert_eq!(&buffer[..length], b"READY=1\nSTATUS=up\n");

        let name = format!("refbridge-test-{}", std::process::id());
        let abstract_listener =
            UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap())
                .unwrap();
        let (socket, address) = Notifier::open(&format!("@{name}")).unwrap();
        socket
            .send_to_addr(message(&[Notice::Watchdog]).as_bytes(), &address)
            .unwrap();
        let length = abstract_listener.recv(&mut buffer).unwrap();
        assert_eq!(&buffer[..length], b"WATCHDOG=1\n");

        assert!(Notifier::open("relative.sock").is_err());
    }
}
